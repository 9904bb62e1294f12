package bus

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestStartEmbeddedFailsFast: a busy port or a store directory that cannot
// be created is reported at once, with its cause, not after nats-server's
// 15-second start-up wait as "is the port in use?".
func TestStartEmbeddedFailsFast(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		cfg  EmbeddedConfig
		want string
	}{
		"busy port":     {EmbeddedConfig{Addr: busy.Addr().String(), StoreDir: t.TempDir()}, "address already in use"},
		"store in file": {EmbeddedConfig{Addr: "127.0.0.1:-1", StoreDir: filepath.Join(file, "store")}, "JetStream store directory"},
	} {
		start := time.Now()
		e, err := StartEmbedded(tc.cfg)
		if err == nil {
			e.Shutdown()
			t.Errorf("%s: started", name)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s: took %v, want at once", name, d)
		}
	}
}
