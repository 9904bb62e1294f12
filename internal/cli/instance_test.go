package cli

import (
	"testing"

	"github.com/darklaunch/darklaunch/services"
)

// TestServeInstanceFlag: every service takes --instance, and DARKLAUNCH_INSTANCE
// when the flag is not given (the chart sets it to the pod's name through the
// downward API); the flag wins over the environment.
func TestServeInstanceFlag(t *testing.T) {
	t.Setenv("DARKLAUNCH_INSTANCE", "darklaunch-judge-5c7d9-abcde")
	for _, name := range services.Names() {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{nil, "darklaunch-judge-5c7d9-abcde"},
			{[]string{"--instance", "by-flag"}, "by-flag"},
			{[]string{"--instance=by-flag"}, "by-flag"},
		} {
			serve := newServeCmd(&globals{})
			sub, _, err := serve.Find([]string{name})
			if err != nil || sub.Name() != name {
				t.Fatalf("serve %s: %v", name, err)
			}
			if err := sub.ParseFlags(tc.args); err != nil {
				t.Fatalf("serve %s %q: %v", name, tc.args, err)
			}
			if err := envFallback(sub); err != nil {
				t.Fatalf("serve %s: %v", name, err)
			}
			f := sub.Flags().Lookup("instance")
			if f == nil {
				t.Fatalf("serve %s has no --instance", name)
			}
			if got := f.Value.String(); got != tc.want {
				t.Errorf("serve %s %q: --instance %q, want %q", name, tc.args, got, tc.want)
			}
		}
	}
}
