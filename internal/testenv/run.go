package testenv

import (
	"bytes"
	"context"
	"net"
	"sync"
	"testing"
	"time"
)

// Runner is a darklaunch service: Run until the context ends, nil on a
// clean shutdown.
type Runner interface {
	Run(ctx context.Context) error
}

// StopWithin bounds how long a stopped service may take to return: the
// router's proxy may take 5s to shut its HTTP server down and 5s more for
// its last flush.
const StopWithin = 15 * time.Second

// Run runs r until the test ends or stop is called, whichever comes first,
// and fails the test if Run returns an error, returns before it is stopped,
// or takes longer than StopWithin to stop. stop may be called more than
// once.
func Run(t testing.TB, r Runner) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run returned %v, want nil on shutdown", err)
				}
			case <-time.After(StopWithin):
				t.Errorf("Run did not return within %v after its context ended", StopWithin)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// Within is how long Eventually waits by default: long enough for a loaded
// CI machine, short enough that a broken test fails quickly.
const Within = 5 * time.Second

// Eventually polls cond every 10ms until it holds, and fails the test
// after Within, with what it waited for and the last state cond reported.
func Eventually(t testing.TB, what string, cond func() (ok bool, state string)) {
	t.Helper()
	EventuallyWithin(t, Within, what, cond)
}

// EventuallyWithin is Eventually with its own deadline.
func EventuallyWithin(t testing.TB, within time.Duration, what string, cond func() (ok bool, state string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; last: %s", within, what, state)
		}
		<-tick.C
	}
}

// Until is Eventually for a condition without a state to report.
func Until(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	EventuallyWithin(t, within, what, func() (bool, string) { return cond(), "not yet" })
}

// FreeAddr is a loopback address nothing listens on now ("127.0.0.1:port"),
// for a server a test starts later, or not at all.
func FreeAddr(t testing.TB) string {
	t.Helper()
	// The kernel may give a port it gave a moment ago once its listener is
	// closed: two services of one test then got the same address (the
	// chaos test's collector once found its health port taken by the
	// router's). An address is handed out once per test process.
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		freeMu.Lock()
		_, dup := handedOut[addr]
		handedOut[addr] = struct{}{}
		freeMu.Unlock()
		if !dup {
			return addr
		}
	}
	t.Fatal("no free loopback port not handed out already in 100 tries")
	return ""
}

var (
	freeMu    sync.Mutex
	handedOut = map[string]struct{}{}
)

// Buffer is a bytes.Buffer that a program under test may write while the
// test reads it (a service's log).
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
