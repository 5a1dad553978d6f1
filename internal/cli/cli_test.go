package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hagate/hagate/internal/version"
)

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(args, &out, &errb)
	return code, out.String(), errb.String()
}

// writeConfig writes body as a configuration file, with a valid key file
// beside it in place of the /etc/hagate/cluster.key it names.
func writeConfig(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	key := filepath.Join(dir, "cluster.key")
	if err := os.WriteFile(key, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "hagate.yaml")
	if err := os.WriteFile(p, []byte(strings.ReplaceAll(body, "/etc/hagate/cluster.key", key)), 0o600); err != nil {
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

// check-config also checks what the file names on this host: a key file
// that was never copied fails here, not at the first heartbeat.
func TestCheckConfigHost(t *testing.T) {
	p := writeConfig(t, good)
	if err := os.Remove(filepath.Join(filepath.Dir(p), "cluster.key")); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI(t, "check-config", "--config", p)
	if code != 2 || !strings.Contains(stderr, "key_file: ") || !strings.Contains(stderr, "hagate genkey") {
		t.Fatalf("missing key file: exit %d, %q", code, stderr)
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

// An unknown command, flag or argument is reported before the configuration
// is read: the message is about the mistake, not about the file.
func TestUsageErrorsBeforeConfig(t *testing.T) {
	for _, args := range [][]string{
		{"frobnicate", "--config", "/nonexistent/hagate.yaml"},
		{"status", "--frobnicate", "--config", "/nonexistent/hagate.yaml"},
		{"check-config", "extra", "--config", "/nonexistent/hagate.yaml"},
		{"history", "--count", "many", "--config", "/nonexistent/hagate.yaml"},
	} {
		code, _, stderr := runCLI(t, args...)
		if code != 2 || strings.Contains(stderr, "nonexistent") || !strings.Contains(stderr, args[1]) && !strings.Contains(stderr, args[0]) {
			t.Errorf("%q: exit %d, %q", args, code, stderr)
		}
	}
}

// --config is accepted before or after the command, long or short.
func TestConfigAnywhere(t *testing.T) {
	p := writeConfig(t, good)
	for _, args := range [][]string{
		{"check-config", "--config", p},
		{"--config", p, "check-config"},
		{"--config=" + p, "check-config"},
		{"-c", p, "check-config"},
	} {
		if code, out, stderr := runCLI(t, args...); code != 0 || !strings.Contains(out, "OK") {
			t.Errorf("%q: exit %d, %q %q", args, code, out, stderr)
		}
	}
}

// Every command has its own help, listing its own flags.
func TestCommandHelp(t *testing.T) {
	for cmd, flags := range map[string][]string{
		"status":       {"--socket", "--json", "--config", "exit code", "monitoring"},
		"history":      {"--count", "--state-dir", "--socket"},
		"failover":     {"--unset"},
		"genkey":       {"--output", "--force"},
		"check-config": {"the key\nfile"},
	} {
		code, out, _ := runCLI(t, cmd, "--help")
		if code != 0 {
			t.Errorf("%s --help: exit %d", cmd, code)
		}
		for _, f := range flags {
			if !strings.Contains(out, f) {
				t.Errorf("%s --help lacks %q:\n%s", cmd, f, out)
			}
		}
	}
	// Flags belong to their command: --unset is not a status flag.
	if code, _, _ := runCLI(t, "status", "--unset"); code != 2 {
		t.Errorf("status --unset: exit %d, want 2", code)
	}
}

func TestVersion(t *testing.T) {
	defer func(v string) { version.Version = v }(version.Version)
	version.Version = "v0.2.0-1-g0123456"
	for _, args := range [][]string{{"version"}, {"--version"}, {"-v"}} {
		code, out, _ := runCLI(t, args...)
		if code != 0 || out != "hagate v0.2.0-1-g0123456\n" {
			t.Errorf("%q: exit %d, %q", args, code, out)
		}
	}
}
