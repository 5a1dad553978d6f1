package cli

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/hagate/hagate/internal/seal"
)

func TestGenkey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cluster.key")
	// A permissive umask must not loosen the file.
	old := syscall.Umask(0)
	defer syscall.Umask(old)

	code, _, stderr := runCLI(t, "genkey", "--output", path)
	if code != 0 {
		t.Fatalf("genkey: exit %d %q", code, stderr)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %#o, want 0600", st.Mode().Perm())
	}
	// The daemon reads it.
	kr, err := seal.LoadKeyFile(path)
	if err != nil {
		t.Fatalf("the daemon refuses the generated key: %v", err)
	}
	if n := len(kr.IDs()); n != 1 {
		t.Fatalf("%d keys, want 1", n)
	}
	first, _ := os.ReadFile(path)
	secret := lastLine(string(first))
	if len(secret) != 2*keyBytes || strings.Trim(secret, "0123456789abcdef") != "" {
		t.Fatalf("secret %q is not %d hex-encoded bytes", secret, keyBytes)
	}

	// An existing key is kept: every member needs the same one.
	code, _, stderr = runCLI(t, "genkey", "--output", path)
	if code != 1 || !strings.Contains(stderr, "exists") {
		t.Fatalf("over an existing key: exit %d %q", code, stderr)
	}
	if now, _ := os.ReadFile(path); string(now) != string(first) {
		t.Fatal("the existing key was changed")
	}
	// --force replaces it, with a new secret and mode 0600 even over a
	// looser file.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runCLI(t, "genkey", "--output", path, "--force"); code != 0 {
		t.Fatalf("--force: exit %d %q", code, stderr)
	}
	second, _ := os.ReadFile(path)
	if lastLine(string(second)) == secret {
		t.Fatal("--force wrote the same secret")
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("after --force: mode %#o", st.Mode().Perm())
	}
	// No temporary file is left behind.
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("directory holds %d files, want the key only", len(ents))
	}

	// Without --output: stdout, parseable.
	code, out, _ := runCLI(t, "genkey")
	if code != 0 {
		t.Fatalf("genkey to stdout: exit %d", code)
	}
	if _, err := seal.ParseKeys([]byte(out)); err != nil {
		t.Fatalf("stdout key: %v", err)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
