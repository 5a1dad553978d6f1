package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// hostConfig returns a valid configuration whose key file, group and notify
// command exist on this host, and the directory holding them.
func hostConfig(t *testing.T) (*Config, string) {
	t.Helper()
	dir := t.TempDir()
	key := filepath.Join(dir, "cluster.key")
	if err := os.WriteFile(key, []byte("# test\n0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	notify := filepath.Join(dir, "notify.sh")
	if err := os.WriteFile(notify, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	c, err := Parse([]byte(strings.Replace(minimal, "key_file: /etc/hagate/cluster.key", "key_file: "+key, 1) + "notify: " + notify + "\ncontrol_group: root\n"))
	if err != nil {
		t.Fatal(err)
	}
	return c, dir
}

func TestCheckHost(t *testing.T) {
	if os.Geteuid() == 0 {
		// root reads a mode 000 file anyway; the other cases still run.
		t.Log("running as root: the unreadable key file case is skipped")
	}
	tests := []struct {
		name   string
		change func(t *testing.T, c *Config, dir string)
		key    string // "" means no problem
		want   string
	}{
		{"all present", func(*testing.T, *Config, string) {}, "", ""},
		{"key file missing", func(_ *testing.T, c *Config, dir string) { c.KeyFile = filepath.Join(dir, "none.key") }, "key_file", "does not exist: create it with hagate genkey"},
		{"key file readable by group", func(t *testing.T, c *Config, _ string) { chmod(t, c.KeyFile, 0o640) }, "key_file", "readable by group or others (mode 0640)"},
		{"key file unreadable", func(t *testing.T, c *Config, _ string) {
			if os.Geteuid() == 0 {
				t.Skip("root reads any file")
			}
			chmod(t, c.KeyFile, 0o000)
		}, "key_file", "permission denied"},
		{"key too short", func(t *testing.T, c *Config, _ string) { write(t, c.KeyFile, "short\n", 0o600) }, "key_file", "want at least 16"},
		{"key file is a directory", func(_ *testing.T, c *Config, dir string) { c.KeyFile = dir }, "key_file", "is a directory"},
		{"no key needed without authentication", func(_ *testing.T, c *Config, dir string) {
			c.KeyFile = filepath.Join(dir, "none.key")
			c.Security.Authentication = ptr(false)
		}, "", ""},
		{"unknown group", func(_ *testing.T, c *Config, _ string) { c.ControlGroup = "hagate-no-such-group" }, "control_group", `group "hagate-no-such-group" does not exist`},
		{"numeric group", func(_ *testing.T, c *Config, _ string) { c.ControlGroup = "4242" }, "", ""},
		{"notify missing", func(_ *testing.T, c *Config, dir string) { c.Notify = filepath.Join(dir, "none.sh") }, "notify", "does not exist"},
		{"notify not executable", func(t *testing.T, c *Config, _ string) { chmod(t, c.Notify, 0o644) }, "notify", "is not executable (mode 0644)"},
		{"check command missing", func(_ *testing.T, c *Config, dir string) {
			c.Checks = []Check{{Name: "a", Command: []string{filepath.Join(dir, "none")}}}
		}, "checks[0].command", "does not exist"},
		{"check command not executable", func(t *testing.T, c *Config, dir string) {
			write(t, filepath.Join(dir, "check.sh"), "#!/bin/sh\n", 0o644)
			c.Checks = []Check{{Name: "a", Command: []string{filepath.Join(dir, "check.sh")}}}
		}, "checks[0].command", "is not executable"},
		{"notify is a directory", func(_ *testing.T, c *Config, dir string) { c.Notify = dir }, "notify", "not a regular file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, dir := hostConfig(t)
			tc.change(t, c, dir)
			err := c.CheckHost()
			if tc.key == "" {
				if err != nil {
					t.Fatalf("unexpected problem: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no problem reported, want %s: %s", tc.key, tc.want)
			}
			if !strings.HasPrefix(err.Error(), tc.key+": ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %q, want %s: ...%s...", err, tc.key, tc.want)
			}
		})
	}
}

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, path, body string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
}
