package harness

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hagate/hagate/internal/echo"
	"github.com/hagate/hagate/internal/lab"
)

// EchoPort is where StartEchoServer listens on the server.
const EchoPort = 7100

// StartEchoServer runs the echo server in the server namespace.
func (c *Cluster) StartEchoServer() error {
	_, err := c.Lab.Start(lab.Server, nil, EchoBin(c.Bin), "serve", fmt.Sprintf(":%d", EchoPort))
	return err
}

// Session is a long-lived TCP echo session from the client to the server
// through the cluster's virtual IP (source NAT on the gateways).
type Session struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

// StartSession opens a session that sends a message every interval.
func (c *Cluster) StartSession(interval time.Duration) (*Session, error) {
	s := &Session{done: make(chan struct{})}
	addr := netip.AddrPortFrom(lab.ServerAddr.Addr(), EchoPort).String()
	cmd, err := c.Lab.Start(lab.Client, lockedWriter{s}, EchoBin(c.Bin), "client", "-interval", interval.String(), "-progress", "100ms", addr)
	if err != nil {
		return nil, err
	}
	s.cmd = cmd
	go func() { cmd.Wait(); close(s.done) }()
	return s, nil
}

type lockedWriter struct{ s *Session }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	return w.s.out.Write(p)
}

// Progress returns the latest report the client printed.
func (s *Session) Progress() (echo.Report, error) {
	s.mu.Lock()
	out := s.out.String()
	s.mu.Unlock()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var r echo.Report
	if len(lines) == 0 || lines[len(lines)-1] == "" {
		return r, fmt.Errorf("no report yet")
	}
	err := json.Unmarshal([]byte(lines[len(lines)-1]), &r)
	return r, err
}

// Alive reports whether the client is still running (it exits on error).
func (s *Session) Alive() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// Stop ends the session and returns the client's final report.
func (s *Session) Stop() (echo.Report, error) {
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
	return s.Progress()
}

// OpenSession starts a session and waits until it has exchanged a few
// messages, starting it again while the cluster settles (a connection
// attempt before the primary forwards fails), for up to timeout.
func (c *Cluster) OpenSession(interval, timeout time.Duration) (*Session, error) {
	var s *Session
	err := lab.WaitFor(timeout, 200*time.Millisecond, func() (bool, error) {
		var err error
		if s, err = c.StartSession(interval); err != nil {
			return false, err
		}
		time.Sleep(500 * time.Millisecond)
		if r, err := s.Progress(); err == nil && r.Received > 3 && s.Alive() {
			return true, nil
		}
		s.Stop()
		return false, nil
	})
	return s, err
}
