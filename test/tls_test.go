package e2e

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/darklaunch/darklaunch/internal/cli"
	"github.com/darklaunch/darklaunch/internal/stack"
	"github.com/darklaunch/darklaunch/internal/testenv"
	"github.com/darklaunch/darklaunch/shared/bus"
)

// TestTLSEndToEnd: on a NATS server that accepts only TLS with a client
// certificate, the four services and the CLI connect with --tls-ca,
// --tls-cert and --tls-key, and the seed's experiment passes end to end;
// without the client certificate the CLI is refused with the reason.
func TestTLSEndToEnd(t *testing.T) {
	t.Parallel()
	p := testenv.NewPKI(t)
	srv := testenv.StartNATSWithTLS(t, p)
	e := startStack(t, stack.Config{NATS: bus.ConnConfig{URL: srv.URL(), TLSCA: p.CAFile, TLSCert: p.ClientCert, TLSKey: p.ClientKey}})
	x := e.run("tls", nil)
	e.checkCompleted(x)
	if !x.Passed() {
		t.Errorf("over TLS the healthy dark version did not pass: %+v", x.Status.Analysis.Objectives)
	}

	flags := []string{"--server", srv.URL(), "--tls-ca", p.CAFile, "--tls-cert", p.ClientCert, "--tls-key", p.ClientKey}
	var out, errOut bytes.Buffer
	if code := cli.Run(context.Background(), append([]string{"get", "tls"}, flags...), strings.NewReader(""), &out, &errOut); code != 0 || !strings.Contains(out.String(), "Completed") {
		t.Errorf("darklaunch get over TLS: exit %d, %q %q", code, out.String(), errOut.String())
	}
	out.Reset()
	errOut.Reset()
	if code := cli.Run(context.Background(), append([]string{"get", "tls"}, flags[:4]...), strings.NewReader(""), &out, &errOut); code != cli.ExitInvalid || !strings.Contains(errOut.String(), "--tls-cert and --tls-key") {
		t.Errorf("without a client certificate: exit %d, stderr %q; want %d and the hint", code, errOut.String(), cli.ExitInvalid)
	}
}
