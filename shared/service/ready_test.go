package service

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/darklaunch/darklaunch/internal/testenv"
)

// TestReadinessAcrossAReconnect: a part is not ready until it is up; a
// reconnect makes it not ready again until it says it is up on the new
// connection, since a NATS restart may have taken it away; while NATS is
// down nothing is ready. A nil Readiness is always ready.
func TestReadinessAcrossAReconnect(t *testing.T) {
	srv := testenv.StartNATS(t)
	nc := srv.Conn(t)
	r := NewReadiness(nc, "watch", "consumer")
	want := func(substr string) {
		t.Helper()
		err := r.Ready()
		switch {
		case substr == "" && err != nil:
			t.Errorf("Ready() = %v, want nil", err)
		case substr != "" && (err == nil || !strings.Contains(err.Error(), substr)):
			t.Errorf("Ready() = %v, want an error with %q", err, substr)
		}
	}
	want("watch: starting")
	r.Up("watch")
	want("consumer: starting")
	r.Up("consumer")
	want("")

	srv.Stop()
	testenv.Eventually(t, "not ready while NATS is down", func() (bool, string) {
		err := r.Ready()
		return err != nil && strings.Contains(err.Error(), "NATS connection is"), fmt.Sprint(err)
	})
	srv.Start()
	testenv.Eventually(t, "reconnected", func() (bool, string) { return nc.Status() == nats.CONNECTED, nc.Status().String() })
	want("watch: being set up again after a reconnect")
	r.Up("watch")
	want("consumer: being set up again after a reconnect")
	r.Up("consumer")
	want("")
	r.Down("consumer", errors.New("consumer deleted"))
	want("consumer: consumer deleted")

	var none *Readiness
	none.Up("watch")
	none.Down("watch", errors.New("x"))
	if err := none.Ready(); err != nil {
		t.Errorf("a nil Readiness: %v", err)
	}
}
