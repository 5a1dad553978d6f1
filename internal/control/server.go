package control

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Timeouts of one connection. A caller that is slower than this is stuck or
// hostile; the handler itself is bounded by its context, not by these.
const (
	readTimeout  = 5 * time.Second
	writeTimeout = 10 * time.Second
	// probeTimeout bounds the check for a live daemon on an existing socket.
	probeTimeout = time.Second
)

// Handler answers one request. It runs with the Serve context (cancelled on
// shutdown) carrying the caller's Peer; unknown commands are its to refuse.
type Handler func(ctx context.Context, req Request) Response

// Listen creates the control socket at path: it creates the parent directory
// if missing, replaces a stale socket file that nobody answers on, and
// leaves the socket mode 0660, owned by root and group when group is set.
func Listen(path string, group string) (net.Listener, error) {
	gid := -1
	if group != "" {
		g, err := lookupGroup(group)
		if err != nil {
			return nil, err
		}
		gid = int(g)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("control socket directory: %w", err)
	}
	if err := safeDir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	// The socket is briefly open to the umask's mode before this chmod; the
	// per-connection credential check in Serve is what actually guards it.
	// The directory is ours alone (safeDir), so the socket cannot have
	// been replaced by a link to another file since; Lchown never follows.
	if fi, err := os.Lstat(path); err != nil || fi.Mode().Type() != fs.ModeSocket {
		ln.Close()
		return nil, fmt.Errorf("control socket %s: not the socket just created", path)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if gid >= 0 {
		if err := os.Lchown(path, 0, gid); err != nil {
			ln.Close()
			return nil, fmt.Errorf("control socket %s: chown to root:%s: %w", path, group, err)
		}
	}
	return ln, nil
}

// safeDir refuses a control socket directory that another user could
// write to: whoever can, can swap the socket for a link between its
// creation and the chmod and chown that follow, and have them applied to
// a file of their choice.
func safeDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("control socket directory: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("control socket directory %s: owned by uid %d, not by this user (uid %d)", dir, st.Uid, os.Geteuid())
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("control socket directory %s: writable by group or others (mode %#o); run chmod go-w %s", dir, fi.Mode().Perm(), dir)
	}
	return nil
}

// removeStale removes a socket file left by a daemon that died, and refuses
// to touch a socket some process still answers on, or a file that is not a
// socket.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("control socket %s exists and is not a socket", path)
	}
	c, err := net.DialTimeout("unix", path, probeTimeout)
	if err == nil {
		c.Close()
		return fmt.Errorf("another hagate is running on %s", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("control socket %s: probe for a running daemon: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale control socket: %w", err)
	}
	return nil
}

// Option configures Serve.
type Option func(*server) error

// WithGroup lets members of the named group (or numeric gid) use the socket,
// besides root.
func WithGroup(name string) Option {
	return func(s *server) error {
		if name == "" {
			return nil
		}
		gid, err := lookupGroup(name)
		if err != nil {
			return err
		}
		s.auth.group, s.auth.gid = true, gid
		return nil
	}
}

// WithGID is WithGroup by numeric id.
func WithGID(gid uint32) Option {
	return func(s *server) error {
		s.auth.group, s.auth.gid = true, gid
		return nil
	}
}

// OnDenied is called, from the connection's goroutine, for every caller
// refused; the daemon logs it and counts it.
func OnDenied(f func(p Peer, reason error)) Option {
	return func(s *server) error {
		s.onDenied = f
		return nil
	}
}

type server struct {
	handler  Handler
	auth     authorizer
	onDenied func(Peer, error)
}

// Serve answers requests on ln with h until ctx ends, then closes ln and
// returns nil once every in-flight connection is done. Only root, the
// daemon's own user and members of the group given by WithGroup may send
// requests; anyone else gets a "permission denied" response. An option that
// fails (an unknown group) closes ln and is returned.
func Serve(ctx context.Context, ln net.Listener, h Handler, opts ...Option) error {
	s := &server{
		handler: h,
		auth: authorizer{
			selfUID:    uint32(os.Geteuid()),
			procRoot:   "/proc",
			userGroups: lookupUserGroups,
		},
	}
	for _, o := range opts {
		if err := o(s); err != nil {
			ln.Close()
			return err
		}
	}

	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()

	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// Out of descriptors and the like: wait and retry rather than
			// take the control socket down for good.
			var ne net.Error
			if errors.As(err, &ne) && !errors.Is(err, net.ErrClosed) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				t := time.NewTimer(backoff)
				select {
				case <-ctx.Done():
					t.Stop()
					return nil
				case <-t.C:
				}
				continue
			}
			ln.Close()
			return fmt.Errorf("control socket accept: %w", err)
		}
		backoff = 0
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serveConn(ctx, c)
		}()
	}
}

// serveConn answers the one request of a connection.
func (s *server) serveConn(ctx context.Context, c net.Conn) {
	defer c.Close()
	resp := s.answer(ctx, c)
	b, err := encodeMessage(resp, MaxResponseSize)
	if errors.Is(err, ErrTooLarge) {
		b, err = encodeMessage(Errorf("response of command larger than %d bytes", MaxResponseSize), MaxResponseSize)
	}
	if err != nil {
		b, _ = encodeMessage(Errorf("encode response: %v", err), MaxResponseSize)
	}
	// The response is written even when shutting down: a handler that
	// finished (say, "leave the cluster") should be heard.
	_ = c.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, _ = c.Write(b)
}

func (s *server) answer(ctx context.Context, c net.Conn) Response {
	p, err := peerCred(c)
	if err != nil {
		return Errorf("permission denied: %v", err)
	}
	if err := s.auth.allow(p); err != nil {
		if s.onDenied != nil {
			s.onDenied(p, err)
		}
		return Errorf("permission denied")
	}

	_ = c.SetReadDeadline(time.Now().Add(readTimeout))
	// A shutdown unblocks a read in progress at once (a deadline in the past).
	stop := context.AfterFunc(ctx, func() { _ = c.SetReadDeadline(time.Unix(1, 0)) })
	line, err := readMessage(c, MaxRequestSize)
	stop()
	if errors.Is(err, ErrTooLarge) {
		return Errorf("request larger than %d bytes", MaxRequestSize)
	}
	if err != nil {
		return Errorf("read request: %v", err)
	}
	req, err := ParseRequest(line)
	if err != nil {
		return Errorf("%v", err)
	}
	if ctx.Err() != nil {
		return Errorf("hagate is shutting down")
	}
	return s.handler(context.WithValue(ctx, peerKey{}, p), req)
}
