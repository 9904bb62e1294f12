//go:build unix && !linux

package chaos

import "syscall"

// procAttr puts a child in its own process group, so that kill -9 of the
// group reaches it whole.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
