package router

import (
	"strings"
	"testing"

	"github.com/darklaunch/darklaunch/services/router/istio"
	"github.com/darklaunch/darklaunch/services/router/mirroring"
	"github.com/darklaunch/darklaunch/services/router/proxy"
)

// TestConfigValidatesTheBackendInUse: the shared settings are always
// checked, a backend's own only when it is the one in use, and every
// problem names its field as it is reached from Config.
func TestConfigValidatesTheBackendInUse(t *testing.T) {
	badIstio := istio.Config{Gateways: []string{"a/b/c"}}
	badProxy := proxy.Config{MirrorInflight: -1}
	for _, tc := range []struct {
		name string
		cfg  Config
		want []string // each in the error; none: valid
	}{
		{"proxy ignores istio's", Config{Istio: badIstio}, nil},
		{"istio ignores the proxy's", Config{Backend: BackendIstio, Proxy: badProxy}, nil},
		{"proxy", Config{Proxy: badProxy}, []string{"config Proxy.MirrorInflight=-1: must not be negative"}},
		{"istio", Config{Backend: BackendIstio, Istio: badIstio}, []string{"config Istio.Gateways=a/b/c"}},
		{"proxy TLS", Config{Proxy: proxy.Config{TLSCert: "/nonexistent/cert.pem"}}, []string{"config Proxy.TLSKey=: --proxy-tls-key: missing"}},
		{"shared and the backend's", Config{Settings: mirroring.Settings{DefaultPercent: 150}, Proxy: badProxy},
			[]string{"config DefaultPercent=150: must be greater than 0 and at most 100", "Proxy.MirrorInflight"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.cfg
			c.Default()
			err := c.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Errorf("Validate: %v, want nil", err)
				}
				return
			}
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("Validate: %v, want it to say %q", err, w)
				}
			}
		})
	}
}
