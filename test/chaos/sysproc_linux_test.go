package chaos

import "syscall"

// procAttr puts a child in its own process group, so that kill -9 of the
// group reaches it whole, and kills it if the test process dies first.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
