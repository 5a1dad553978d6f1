package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(args, &out, &errb)
	return code, out.String(), errb.String()
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "hagate.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const good = `node_id: gw1
key_file: /etc/hagate/cluster.key
heartbeat:
  links:
    - interface: ha
      peers: [198.51.100.2]
`

func TestCheckConfig(t *testing.T) {
	code, out, _ := runCLI(t, "check-config", "--config", writeConfig(t, good))
	if code != 0 || !strings.Contains(out, "OK") {
		t.Fatalf("good config: exit %d, %q", code, out)
	}
}

// A bad configuration exits 2 with the key named, for every command.
func TestBadConfigExit2(t *testing.T) {
	bad := writeConfig(t, strings.Replace(good, "node_id: gw1", "node_id: gw1\npriority: 300\nheartbeet: {}", 1))
	for _, cmd := range []string{"check-config", "run", "status"} {
		code, _, stderr := runCLI(t, cmd, "--config", bad)
		if code != 2 {
			t.Fatalf("%s: exit %d", cmd, code)
		}
		for _, want := range []string{"priority", "heartbeet"} {
			if !strings.Contains(stderr, want) {
				t.Fatalf("%s: error does not name %q: %s", cmd, want, stderr)
			}
		}
	}
	if code, _, _ := runCLI(t, "check-config", "--config", "/nonexistent/hagate.yaml"); code != 2 {
		t.Fatalf("missing file: exit %d", code)
	}
}

func TestUsage(t *testing.T) {
	if code, _, _ := runCLI(t); code != 2 {
		t.Fatalf("no command: exit %d", code)
	}
	if code, _, _ := runCLI(t, "frobnicate", "--config", writeConfig(t, good)); code != 2 {
		t.Fatalf("unknown command: exit %d", code)
	}
	if code, _, stderr := runCLI(t, "status", "--config", writeConfig(t, strings.Replace(good, "node_id: gw1", "node_id: gw1\ncontrol_socket: /nonexistent/x.sock", 1))); code != 1 || !strings.Contains(stderr, "not running") {
		t.Fatalf("status without daemon: exit %d %q", code, stderr)
	}
}
