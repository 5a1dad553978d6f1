package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hagate/hagate/internal/cluster"
	"github.com/hagate/hagate/internal/control"
	"github.com/hagate/hagate/internal/daemon"
	"github.com/hagate/hagate/internal/history"
)

// fakeDaemon answers status and history on a control socket in a temporary
// directory, as the daemon would.
func fakeDaemon(t *testing.T, st daemon.Status, hist []history.Entry) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "hagate.sock")
	ln, err := control.Listen(sock, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		control.Serve(ctx, ln, func(_ context.Context, req control.Request) control.Response {
			switch req.Command {
			case "status":
				return control.OK(st)
			case "history":
				return control.OK(hist)
			}
			return control.Errorf("unknown command %q", req.Command)
		}, control.WithGID(uint32(os.Getgid())))
	}()
	t.Cleanup(func() {
		cancel()
		ln.Close()
		<-done
	})
	return sock
}

func member(id string, self, alive bool) cluster.Member {
	return cluster.Member{NodeID: id, Self: self, Alive: alive, Role: "subordinate"}
}

// status works with --socket while the configuration cannot be read, and
// its exit code says the health: 0 in a healthy cluster, 3 on a warning,
// 4 alone.
func TestStatusExitCodes(t *testing.T) {
	for _, tc := range []struct {
		name     string
		members  []cluster.Member
		warnings []string
		code     int
	}{
		{"healthy", []cluster.Member{member("gw1", true, true), member("gw2", false, true)}, nil, 0},
		{"warning", []cluster.Member{member("gw1", true, true), member("gw2", false, true)}, []string{"heartbeat link ha2 is down"}, 3},
		{"alone", []cluster.Member{member("gw1", true, true), member("gw2", false, false)}, []string{"member gw2 not heard for 5s"}, 4},
		{"never heard anyone", []cluster.Member{member("gw1", true, true)}, nil, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := daemon.Status{Status: cluster.Status{NodeID: "gw1", Role: "primary", RoleSince: time.Now(), Members: tc.members, Warnings: tc.warnings}}
			sock := fakeDaemon(t, st, nil)
			for _, args := range [][]string{
				{"status", "--socket", sock, "--config", "/nonexistent/hagate.yaml"},
				{"status", "--socket", sock, "--json", "--config", "/nonexistent/hagate.yaml"},
			} {
				code, out, stderr := runCLI(t, args...)
				if code != tc.code || !strings.Contains(out, "gw1") {
					t.Errorf("%q: exit %d, want %d; %q %q", args, code, tc.code, out, stderr)
				}
			}
		})
	}
	// Without --socket the unreadable configuration is what fails.
	if code, _, stderr := runCLI(t, "status", "--config", "/nonexistent/hagate.yaml"); code != 2 || !strings.Contains(stderr, "nonexistent") {
		t.Errorf("status without --socket: exit %d %q", code, stderr)
	}
}

func TestHistory(t *testing.T) {
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	entries := []history.Entry{
		{Time: at, Node: "gw1", Event: "role", Role: "primary", Reason: "elected"},
		{Time: at.Add(time.Second), Node: "gw1", Event: "role", Role: "subordinate", Reason: "failover set"},
	}
	dir := t.TempDir()
	l, err := history.Open(dir, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := l.Append(e); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	cfg := writeConfig(t, good+"state_dir: "+dir+"\ncontrol_socket: "+filepath.Join(dir, "none.sock")+"\n")

	t.Run("from the daemon", func(t *testing.T) {
		sock := fakeDaemon(t, daemon.Status{}, entries[:1])
		code, out, stderr := runCLI(t, "history", "--socket", sock, "--config", cfg)
		if code != 0 || !strings.Contains(out, "became primary: elected") || strings.Contains(out, "failover set") || strings.Contains(stderr, "read from") {
			t.Fatalf("exit %d, %q %q", code, out, stderr)
		}
	})
	t.Run("from the file when the daemon is down", func(t *testing.T) {
		code, out, stderr := runCLI(t, "history", "--config", cfg)
		if code != 0 || !strings.Contains(out, "became primary: elected") || !strings.Contains(out, "became subordinate: failover set") ||
			!strings.Contains(stderr, filepath.Join(dir, history.FileName)) {
			t.Fatalf("exit %d, %q %q", code, out, stderr)
		}
		// Newest first, as from the daemon.
		if strings.Index(out, "subordinate") > strings.Index(out, "primary") {
			t.Fatalf("not newest first:\n%s", out)
		}
	})
	t.Run("count", func(t *testing.T) {
		code, out, _ := runCLI(t, "history", "--count", "1", "--config", cfg)
		if code != 0 || strings.Contains(out, "became primary") || !strings.Contains(out, "subordinate") {
			t.Fatalf("exit %d, %q", code, out)
		}
	})
	t.Run("state-dir without a configuration", func(t *testing.T) {
		code, out, _ := runCLI(t, "history", "--state-dir", dir, "--config", "/nonexistent/hagate.yaml")
		if code != 0 || !strings.Contains(out, "failover set") {
			t.Fatalf("exit %d, %q", code, out)
		}
	})
	t.Run("no file", func(t *testing.T) {
		code, _, stderr := runCLI(t, "history", "--state-dir", t.TempDir())
		if code != 1 || !strings.Contains(stderr, "no such file") {
			t.Fatalf("exit %d, %q", code, stderr)
		}
	})
}

// history --clear asks the daemon to clear, or clears the file when the
// daemon is not running; without --clear nothing is deleted.
func TestHistoryClear(t *testing.T) {
	dir := t.TempDir()
	l, err := history.Open(dir, 100)
	if err != nil {
		t.Fatal(err)
	}
	l.Append(history.Entry{Time: time.Now(), Node: "gw1", Event: "role", Role: "primary", Reason: "elected"})
	l.Close()
	cfg := writeConfig(t, good+"state_dir: "+dir+"\ncontrol_socket: "+filepath.Join(dir, "none.sock")+"\n")

	if code, out, _ := runCLI(t, "history", "--config", cfg); code != 0 || !strings.Contains(out, "elected") {
		t.Fatalf("before --clear: exit %d %q", code, out)
	}
	if code, _, stderr := runCLI(t, "history", "--clear", "--config", cfg); code != 0 || !strings.Contains(stderr, "cleared") {
		t.Fatalf("--clear: exit %d %q", code, stderr)
	}
	if code, out, _ := runCLI(t, "history", "--config", cfg); code != 0 || strings.Contains(out, "elected") {
		t.Fatalf("after --clear: exit %d %q", code, out)
	}

	// Through the daemon: the request says clear.
	sock := filepath.Join(t.TempDir(), "hagate.sock")
	ln, err := control.Listen(sock, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	asked := make(chan map[string]string, 1)
	go control.Serve(ctx, ln, func(_ context.Context, req control.Request) control.Response {
		asked <- req.Args
		return control.OK([]history.Entry{{Time: time.Now(), Node: "gw1", Event: "event", Reason: "history cleared by operator"}})
	}, control.WithGID(uint32(os.Getgid())))
	code, out, stderr := runCLI(t, "history", "--clear", "--socket", sock, "--config", cfg)
	if code != 0 || !strings.Contains(out, "history cleared") {
		t.Fatalf("--clear via the daemon: exit %d %q %q", code, out, stderr)
	}
	if args := <-asked; args["clear"] != "true" {
		t.Fatalf("the daemon was asked %v", args)
	}
}
