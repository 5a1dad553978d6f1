package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestAuthorizer(t *testing.T) {
	proc := t.TempDir()
	writeStatus := func(pid int, groups string) {
		dir := filepath.Join(proc, strconv.Itoa(pid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		body := "Name:\tx\nGroups:\t" + groups + "\n"
		if err := os.WriteFile(filepath.Join(dir, "status"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeStatus(100, "5 700")
	writeStatus(101, "5")
	userGroups := func(uid uint32) ([]uint32, error) {
		if uid == 2000 {
			return []uint32{700}, nil
		}
		return nil, errors.New("no such user")
	}
	const gid = 700
	tests := []struct {
		name  string
		group bool
		peer  Peer
		allow bool
	}{
		{name: "root", peer: Peer{PID: 1, UID: 0, GID: 0}, allow: true},
		{name: "daemon's own user", peer: Peer{PID: 1, UID: 4242, GID: 9}, allow: true},
		{name: "other user, no group configured", peer: Peer{PID: 100, UID: 1000, GID: 700}},
		{name: "primary gid", group: true, peer: Peer{PID: 999, UID: 1000, GID: 700}, allow: true},
		{name: "supplementary group in /proc", group: true, peer: Peer{PID: 100, UID: 1000, GID: 5}, allow: true},
		{name: "not in group per /proc", group: true, peer: Peer{PID: 101, UID: 1000, GID: 5}},
		// /proc wins over the user database: the process dropped the group.
		{name: "/proc wins over user database", group: true, peer: Peer{PID: 101, UID: 2000, GID: 5}},
		{name: "process gone, user database", group: true, peer: Peer{PID: 555, UID: 2000, GID: 5}, allow: true},
		{name: "process gone, unknown user", group: true, peer: Peer{PID: 555, UID: 3000, GID: 5}},
		{name: "no pid", group: true, peer: Peer{UID: 3000, GID: 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := authorizer{selfUID: 4242, group: tt.group, gid: gid, procRoot: proc, userGroups: userGroups}
			err := a.allow(tt.peer)
			if tt.allow && err != nil {
				t.Errorf("allow(%v) = %v, want allowed", tt.peer, err)
			}
			if !tt.allow && !errors.Is(err, errDenied) {
				t.Errorf("allow(%v) = %v, want denied", tt.peer, err)
			}
		})
	}
}

// existingGroup returns the name and id of the group nobody belongs to on
// Debian-like systems (nogroup, gid 65534), without creating anything.
func existingGroup(t *testing.T) (string, uint32) {
	t.Helper()
	g, err := user.LookupGroupId("65534")
	if err != nil {
		t.Skipf("no group with gid 65534: %v", err)
	}
	return g.Name, 65534
}

const helperEnv = "HAGATE_CONTROL_TEST_HELPER"

// TestHelperProcess is not a test: it is the client half of the permission
// tests, run as another user in a child process.
func TestHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		t.Skip("helper process only")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := Call(ctx, os.Getenv("HAGATE_CONTROL_TEST_SOCKET"), Request{Command: "status"})
	if err != nil {
		fmt.Fprintf(os.Stdout, "ERR %v\n", err)
		os.Exit(0)
	}
	b, _ := json.Marshal(resp)
	fmt.Fprintf(os.Stdout, "%s\n", b)
	os.Exit(0)
}

// permEnv is a directory every user can traverse, holding a copy of the test
// binary (the go build directory is private to root) and the socket.
type permEnv struct {
	dir, bin string
}

func newPermEnv(t *testing.T) permEnv {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a client as another user")
	}
	dir, err := os.MkdirTemp("", "hagate-control-perm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	bin := filepath.Join(dir, "control.test")
	dst, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return permEnv{dir: dir, bin: bin}
}

// callAs runs one Call from a child process with the given credentials and
// returns what it printed: a response as JSON, or "ERR ...".
func (e permEnv) callAs(t *testing.T, sock string, cred *syscall.Credential) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.bin, "-test.run=^TestHelperProcess$")
	cmd.Dir = e.dir
	cmd.Env = []string{helperEnv + "=1", "HAGATE_CONTROL_TEST_SOCKET=" + sock}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper process: %v (output %q)", err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestPermission(t *testing.T) {
	env := newPermEnv(t)
	groupName, gid := existingGroup(t)
	nobody := &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}
	// Primary group elsewhere, the allowed group only as a supplementary one.
	nobodySupplementary := &syscall.Credential{Uid: 65534, Gid: 1, Groups: []uint32{gid}}

	serve := func(t *testing.T, name string, mode os.FileMode, opts ...Option) (string, *deniedLog) {
		sock := filepath.Join(env.dir, name)
		ln, err := Listen(sock, "")
		if err != nil {
			t.Fatal(err)
		}
		// Open the file to everyone so that the daemon's own check, not the
		// file mode, is what refuses.
		if err := os.Chmod(sock, mode); err != nil {
			t.Fatal(err)
		}
		denied := &deniedLog{}
		opts = append(opts, OnDenied(denied.add))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- Serve(ctx, ln, func(ctx context.Context, req Request) Response { return OK("hello") }, opts...)
		}()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
		})
		return sock, denied
	}

	t.Run("non-member denied by the daemon", func(t *testing.T) {
		sock, denied := serve(t, "open.sock", 0o666)
		out := env.callAs(t, sock, nobody)
		if out != `{"ok":false,"error":"permission denied"}` {
			t.Errorf("nobody got %s, want permission denied", out)
		}
		if got := denied.peers(); len(got) != 1 || got[0].UID != 65534 {
			t.Errorf("denied callback saw %v, want one call from uid 65534", got)
		}
	})

	t.Run("non-member stopped by the file mode", func(t *testing.T) {
		sock, _ := serve(t, "closed.sock", 0o660)
		out := env.callAs(t, sock, nobody)
		if !strings.HasPrefix(out, "ERR ") || !strings.Contains(out, "permission denied") {
			t.Errorf("nobody got %s, want a permission error", out)
		}
	})

	t.Run("member by primary group", func(t *testing.T) {
		sock, denied := serve(t, "member.sock", 0o666, WithGroup(groupName))
		if out := env.callAs(t, sock, nobody); out != `{"ok":true,"data":"hello"}` {
			t.Errorf("group member got %s, want OK", out)
		}
		if got := denied.peers(); len(got) != 0 {
			t.Errorf("denied %v", got)
		}
	})

	t.Run("member by supplementary group", func(t *testing.T) {
		sock, _ := serve(t, "supp.sock", 0o666, WithGID(gid))
		if out := env.callAs(t, sock, nobodySupplementary); out != `{"ok":true,"data":"hello"}` {
			t.Errorf("supplementary group member got %s, want OK", out)
		}
	})

	t.Run("member through the group-owned socket", func(t *testing.T) {
		sock := filepath.Join(env.dir, "owned.sock")
		ln, err := Listen(sock, groupName)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- Serve(ctx, ln, func(ctx context.Context, req Request) Response { return OK("hello") }, WithGroup(groupName))
		}()
		defer func() { cancel(); <-done }()
		if out := env.callAs(t, sock, nobody); out != `{"ok":true,"data":"hello"}` {
			t.Errorf("group member got %s, want OK", out)
		}
	})
}

type deniedLog struct {
	mu sync.Mutex
	p  []Peer
}

func (d *deniedLog) add(p Peer, reason error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.p = append(d.p, p)
}

func (d *deniedLog) peers() []Peer {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Peer(nil), d.p...)
}
