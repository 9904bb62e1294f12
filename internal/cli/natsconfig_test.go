package cli

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/darklaunch/darklaunch/internal/testenv"
	"github.com/darklaunch/darklaunch/shared/bus"
)

// TestNATSConfigSecuresTheBus: nats-config's block configures a real
// nats-server; the judge runs there with its own key, a viewer may list
// but not create (said at once, exit 2), an operator may create, and a
// second run of nats-config keeps the keys and prints the same block.
func TestNATSConfigSecuresTheBus(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	code, block, stderr := run(t, "", "nats-config", "--dir", dir)
	if code != 0 || strings.Count(stderr, "made ") != len(bus.Roles) {
		t.Fatalf("nats-config: exit %d, stderr %q", code, stderr)
	}
	if code, again, stderr := run(t, "", "nats-config", "--dir", dir); code != 0 || again != block || strings.Count(stderr, "kept ") != len(bus.Roles) {
		t.Errorf("a second nats-config: exit %d, same block %v, stderr %q; want the keys kept", code, again == block, stderr)
	}

	conf := filepath.Join(t.TempDir(), "nats.conf")
	js := filepath.Join(t.TempDir(), "js")
	if err := os.WriteFile(conf, []byte("listen: 127.0.0.1:-1\njetstream { store_dir: \""+js+"\" }\n"+block), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	opts.NoSigs, opts.NoLog = true, true
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	url := ns.ClientURL()
	key := func(role string) string { return filepath.Join(dir, role+".nk") }

	// The judge's own key would let a request aim the API's answers at the
	// state: the API signs in with its own, and serve says so without it.
	if code, _, stderr := run(t, "", "serve", "judge", "--server", url, "--nkey", key("judge"), "--connect-wait", "0"); code != ExitInvalid || !strings.Contains(stderr, "--api-nkey") {
		t.Errorf("serve judge --nkey without --api-nkey: exit %d, stderr %q; want %d and --api-nkey named", code, stderr, ExitInvalid)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errOut := &testenv.Buffer{}
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, []string{"serve", "judge", "--server", url, "--nkey", key("judge"), "--api-nkey", key("api")}, strings.NewReader(""), io.Discard, errOut)
	}()
	testenv.EventuallyWithin(t, 15*time.Second, "the judge to answer a viewer", func() (bool, string) {
		code, out, stderr := run(t, "", "list", "--server", url, "--nkey", key("viewer"))
		return code == 0 && strings.Contains(out, "No experiments"), stderr + errOut.String()
	})
	start := time.Now()
	code, _, stderr = run(t, readExample(t, "experiment-local.yaml"), "submit", "-", "--server", url, "--nkey", key("viewer"))
	if code != ExitInvalid || !strings.Contains(stderr, "refused") {
		t.Errorf("submit as a viewer: exit %d, stderr %q; want %d and the refusal", code, stderr, ExitInvalid)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the refusal took %v", d)
	}
	if code, _, stderr := run(t, readExample(t, "experiment-local.yaml"), "submit", "-", "--server", url, "--nkey", key("operator")); code != 0 {
		t.Errorf("submit as an operator: exit %d, %s", code, stderr)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("serve judge: exit %d: %s", code, errOut.String())
	}
}

// TestDevAuth: dev --auth runs every service as its own NATS user and
// gives people their keys; plain dev refuses to listen beyond loopback.
func TestDevAuth(t *testing.T) {
	if code, _, stderr := run(t, "", "dev", "--nats-addr", "0.0.0.0:"+strings.Split(testenv.FreeAddr(t), ":")[1], "--proxy-addr", testenv.FreeAddr(t)); code != ExitInvalid || !strings.Contains(stderr, "--auth") {
		t.Errorf("open dev beyond loopback: exit %d, stderr %q; want %d and a pointer to --auth", code, stderr, ExitInvalid)
	}

	store := t.TempDir()
	natsAddr := testenv.FreeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, errOut := &testenv.Buffer{}, &testenv.Buffer{}
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, []string{"dev", "--auth", "--nats-addr", natsAddr, "--proxy-addr", testenv.FreeAddr(t), "--store-dir", store}, strings.NewReader(""), out, errOut)
	}()
	testenv.EventuallyWithin(t, 30*time.Second, "dev to be up", func() (bool, string) {
		return strings.Contains(out.String(), "dev is up"), out.String() + errOut.String()
	})
	for _, role := range []string{"operator", "viewer"} {
		if !strings.Contains(out.String(), filepath.Join(store, "keys", role+".nk")) {
			t.Errorf("dev --auth does not say where the %s's key is:\n%s", role, out.String())
		}
	}
	server := "nats://" + natsAddr
	key := func(role string) string { return filepath.Join(store, "keys", role+".nk") }
	if want := "nats --nkey " + key("operator") + " req darklaunch.experiments.create"; !strings.Contains(out.String(), want) {
		t.Errorf("dev --auth's Try lines do not sign in as the operator (want %q):\n%s", want, out.String())
	}
	if code, _, stderr := run(t, "", "list", "--server", server); code != ExitInvalid || !strings.Contains(stderr, "uthorization") {
		t.Errorf("list without a key: exit %d, stderr %q; want the server's refusal", code, stderr)
	}
	if code, _, stderr := run(t, readExample(t, "experiment-local.yaml"), "submit", "-", "--server", server, "--nkey", key("viewer")); code != ExitInvalid || !strings.Contains(stderr, "refused") {
		t.Errorf("submit as a viewer: exit %d, stderr %q", code, stderr)
	}
	if code, _, stderr := run(t, readExample(t, "experiment-local.yaml"), "submit", "-", "--server", server, "--nkey", key("operator")); code != 0 {
		t.Errorf("submit as an operator: exit %d, %s", code, stderr)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("dev: exit %d: %s", code, errOut.String())
	}
}
