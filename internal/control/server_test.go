package control

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startServer listens on a fresh socket and serves h until the test ends.
func startServer(t *testing.T, h Handler, opts ...Option) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "run", "hagate.sock")
	ln, err := Listen(path, "")
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, h, opts...) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after its context ended")
		}
	})
	return path
}

func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestRoundTrip(t *testing.T) {
	type status struct {
		Role string `json:"role"`
	}
	var gotPeer Peer
	path := startServer(t, func(ctx context.Context, req Request) Response {
		gotPeer, _ = PeerFromContext(ctx)
		if req.Command != "status" || req.Args["verbose"] != "yes" {
			return Errorf("unexpected request %+v", req)
		}
		return OK(status{Role: "primary"})
	})
	resp, err := Call(callCtx(t), path, Request{Command: "status", Args: map[string]string{"verbose": "yes"}})
	if err != nil {
		t.Fatalf("Call: %v", err)
	}
	if !resp.OK || resp.Error != "" {
		t.Fatalf("response %+v, want OK", resp)
	}
	var st status
	if err := resp.Decode(&st); err != nil {
		t.Fatal(err)
	}
	if st.Role != "primary" {
		t.Errorf("role %q, want primary", st.Role)
	}
	if gotPeer.UID != uint32(os.Geteuid()) || gotPeer.PID != int32(os.Getpid()) {
		t.Errorf("peer %v, want uid %d pid %d", gotPeer, os.Geteuid(), os.Getpid())
	}
}

func TestUnknownCommandReachesHandler(t *testing.T) {
	path := startServer(t, func(ctx context.Context, req Request) Response {
		return Errorf("unknown command %q", req.Command)
	})
	resp, err := Call(callCtx(t), path, Request{Command: "no-such-thing"})
	if err != nil {
		t.Fatalf("Call: %v", err)
	}
	if resp.OK || resp.Error != `unknown command "no-such-thing"` {
		t.Errorf("response %+v, want the handler's refusal", resp)
	}
}

// rawExchange writes msg on a fresh connection and returns the response,
// reading while writing (the server may answer before reading everything).
func rawExchange(t *testing.T, path string, msg []byte, closeWrite bool) Response {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	go func() {
		_, _ = c.Write(msg)
		if closeWrite {
			_ = c.(*net.UnixConn).CloseWrite()
		}
	}()
	line, err := readMessage(c, MaxResponseSize)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	var resp Response
	if err := json.Unmarshal(line, &resp); err != nil {
		t.Fatalf("decode response %q: %v", line, err)
	}
	return resp
}

func TestServerRefusesBadRequests(t *testing.T) {
	called := make(chan Request, 10)
	path := startServer(t, func(ctx context.Context, req Request) Response {
		called <- req
		return OK(nil)
	})
	big := `{"command":"status","args":{"x":"` + strings.Repeat("a", MaxRequestSize) + `"}}` + "\n"
	tests := []struct {
		name, msg, wantErr string
	}{
		{name: "oversize", msg: big, wantErr: "request larger than 65536 bytes"},
		{name: "oversize without newline", msg: strings.Repeat("{", 2*MaxRequestSize), wantErr: "request larger than"},
		{name: "unknown field", msg: `{"command":"status","x":1}` + "\n", wantErr: "unknown field"},
		{name: "bad command", msg: `{"command":"rm -rf"}` + "\n", wantErr: "command"},
		{name: "not json", msg: "status\n", wantErr: "bad request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := rawExchange(t, path, []byte(tt.msg), false)
			if resp.OK || !strings.Contains(resp.Error, tt.wantErr) {
				t.Errorf("response %+v, want error containing %q", resp, tt.wantErr)
			}
		})
	}
	select {
	case req := <-called:
		t.Errorf("handler called with %+v for a refused request", req)
	default:
	}
	// A request without newline, closed by the caller, is still served.
	if resp := rawExchange(t, path, []byte(`{"command":"status"}`), true); !resp.OK {
		t.Errorf("request without newline: %+v", resp)
	}
}

func TestCallRefusesOversizeRequest(t *testing.T) {
	path := startServer(t, func(ctx context.Context, req Request) Response { return OK(nil) })
	_, err := Call(callCtx(t), path, Request{Command: "status", Args: map[string]string{"x": strings.Repeat("a", MaxRequestSize)}})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Call error = %v, want ErrTooLarge", err)
	}
}

func TestOversizeResponse(t *testing.T) {
	path := startServer(t, func(ctx context.Context, req Request) Response {
		return Response{OK: true, Data: json.RawMessage(`"` + strings.Repeat("a", MaxResponseSize) + `"`)}
	})
	resp, err := Call(callCtx(t), path, Request{Command: "dump"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.OK || !strings.Contains(resp.Error, "larger than") {
		t.Errorf("response OK=%v error=%q, want a size error", resp.OK, resp.Error)
	}
}

func TestCallNotRunning(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "hagate.sock")
	_, err := Call(callCtx(t), path, Request{Command: "status"})
	if !errors.Is(err, ErrNotRunning) || err.Error() != "hagate is not running (no control socket at "+path+")" {
		t.Errorf("Call on a missing socket: %v", err)
	}

	// A socket file nobody listens on any more.
	stale := filepath.Join(dir, "stale.sock")
	makeStaleSocket(t, stale)
	if _, err := Call(callCtx(t), stale, Request{Command: "status"}); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Call on a stale socket: %v", err)
	}
}

func makeStaleSocket(t *testing.T, path string) {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("stale socket not left behind: %v", err)
	}
}

func TestListen(t *testing.T) {
	dir := t.TempDir()

	t.Run("creates directory and sets mode", func(t *testing.T) {
		path := filepath.Join(dir, "a", "b", "hagate.sock")
		ln, err := Listen(path, "")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o660 {
			t.Errorf("socket mode %v, want socket 0660", fi.Mode())
		}
		di, err := os.Stat(filepath.Dir(path))
		if err != nil || di.Mode().Perm() != 0o755 {
			t.Errorf("directory: %v, %v; want mode 0755", di.Mode(), err)
		}
	})

	t.Run("replaces a stale socket", func(t *testing.T) {
		path := filepath.Join(dir, "stale.sock")
		makeStaleSocket(t, path)
		ln, err := Listen(path, "")
		if err != nil {
			t.Fatalf("Listen over a stale socket: %v", err)
		}
		ln.Close()
	})

	t.Run("refuses a live daemon's socket", func(t *testing.T) {
		path := filepath.Join(dir, "live.sock")
		ln, err := Listen(path, "")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		_, err = Listen(path, "")
		if err == nil || err.Error() != "another hagate is running on "+path {
			t.Fatalf("second Listen: %v", err)
		}
		// The live socket is untouched.
		if c, err := net.Dial("unix", path); err != nil {
			t.Errorf("live socket gone: %v", err)
		} else {
			c.Close()
		}
	})

	t.Run("refuses to remove a regular file", func(t *testing.T) {
		path := filepath.Join(dir, "file")
		if err := os.WriteFile(path, []byte("keep"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Listen(path, ""); err == nil || !strings.Contains(err.Error(), "not a socket") {
			t.Fatalf("Listen on a regular file: %v", err)
		}
	})

	t.Run("unknown group", func(t *testing.T) {
		_, err := Listen(filepath.Join(dir, "g.sock"), "hagate-no-such-group")
		if err == nil || !strings.Contains(err.Error(), `"hagate-no-such-group"`) {
			t.Fatalf("Listen with an unknown group: %v", err)
		}
	})

	t.Run("group ownership", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("chown needs root")
		}
		name, gid := existingGroup(t)
		path := filepath.Join(dir, "grp.sock")
		ln, err := Listen(path, name)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Uid != 0 || st.Gid != gid || fi.Mode().Perm() != 0o660 {
			t.Errorf("socket %d:%d %v, want 0:%d 0660", st.Uid, st.Gid, fi.Mode().Perm(), gid)
		}
	})
}

// TestServeStopsAndWaits checks that Serve returns when its context ends,
// only after the handlers in flight have returned, and leaves no goroutine
// behind.
func TestServeStopsAndWaits(t *testing.T) {
	before := runtime.NumGoroutine()
	path := filepath.Join(t.TempDir(), "hagate.sock")
	ln, err := Listen(path, "")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	release := make(chan struct{})
	handlerDone := make(chan struct{})
	h := func(ctx context.Context, req Request) Response {
		defer close(handlerDone)
		close(started)
		<-ctx.Done() // shutdown reaches the handler
		<-release
		return OK("bye")
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, ln, h) }()

	// One connection in a handler, one idle before sending its request.
	called := make(chan Response, 1)
	go func() {
		resp, _ := Call(context.Background(), path, Request{Command: "leave"})
		called <- resp
	}()
	idle, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("handler not called")
	}

	cancel()
	select {
	case err := <-served:
		t.Fatalf("Serve returned (%v) while a handler was running", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after shutdown")
	}
	select {
	case <-handlerDone:
	default:
		t.Fatal("Serve returned before its handler")
	}
	// The handler that finished during shutdown was still heard.
	if resp := <-called; !resp.OK || string(resp.Data) != `"bye"` {
		t.Errorf("response during shutdown: %+v", resp)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket file left after shutdown: %v", err)
	}
	idle.Close()

	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Fatalf("%d goroutines after shutdown, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}

func TestServeRefusesUnknownGroup(t *testing.T) {
	ln, err := Listen(filepath.Join(t.TempDir(), "hagate.sock"), "")
	if err != nil {
		t.Fatal(err)
	}
	err = Serve(context.Background(), ln, nil, WithGroup("hagate-no-such-group"))
	if err == nil || !strings.Contains(err.Error(), "hagate-no-such-group") {
		t.Fatalf("Serve with unknown group: %v", err)
	}
}

// A directory another user can write to is refused: whoever can write to
// it can swap the socket for a link before the chmod and chown.
func TestListenRefusesWritableDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	if err := os.Mkdir(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil { // past the umask
		t.Fatal(err)
	}
	if ln, err := Listen(filepath.Join(dir, "hagate.sock"), ""); err == nil {
		ln.Close()
		t.Fatal("control socket created in a world-writable directory")
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ln, err := Listen(filepath.Join(dir, "hagate.sock"), "")
	if err != nil {
		t.Fatalf("a directory of our own refused: %v", err)
	}
	ln.Close()
}
