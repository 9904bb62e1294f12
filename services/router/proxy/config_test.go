package proxy

import (
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// TestMirrorMemoryFlag: --mirror-memory takes a quantity, refuses what is
// not one or is negative, naming the value, and defaults to 64 MiB.
func TestMirrorMemoryFlag(t *testing.T) {
	for _, tc := range []struct {
		arg     string
		want    int64
		wantErr string
	}{
		{"", DefaultMirrorMemory, ""},
		{"--mirror-memory=1Gi", 1 << 30, ""},
		{"--mirror-memory=500M", 500_000_000, ""},
		{"--mirror-memory=lots", 0, `"lots" is not a size such as 64Mi or 1Gi`},
		{"--mirror-memory=-1Mi", 0, `"-1Mi" must not be negative`},
	} {
		var c Config
		fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		c.AddFlags(fs)
		var args []string
		if tc.arg != "" {
			args = []string{tc.arg}
		}
		err := fs.Parse(args)
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "mirror-memory") {
				t.Errorf("%s: err %v, want one naming --mirror-memory and saying %s", tc.arg, err, tc.wantErr)
			}
		case err != nil:
			t.Errorf("%s: %v", tc.arg, err)
		default:
			c.Default()
			if c.MirrorMemory != tc.want {
				t.Errorf("%s: MirrorMemory %d, want %d", tc.arg, c.MirrorMemory, tc.want)
			}
		}
	}
	if err := (Config{MirrorMemory: -1}).Validate(); err == nil || !strings.Contains(err.Error(), "MirrorMemory") {
		t.Errorf("Validate of a negative MirrorMemory: %v", err)
	}
}
