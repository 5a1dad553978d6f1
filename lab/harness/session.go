package harness

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hagate/hagate/lab/echo"
	"github.com/hagate/hagate/lab/netlab"
)

// EchoPort is where StartEchoServer listens on the server (TCP and UDP).
const EchoPort = 7100

// StartEchoServer runs the echo server in the server namespace; what it
// logs (the UDP flows it saw, and from where) goes to EchoServerLog.
func (c *Cluster) StartEchoServer() error {
	f, err := os.OpenFile(c.echoServerLog(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd, err := c.Lab.Start(netlab.Server, f, EchoBin(c.Bin), "serve", fmt.Sprintf(":%d", EchoPort))
	if err != nil {
		f.Close()
		return err
	}
	go func() { cmd.Wait(); f.Close() }()
	return nil
}

func (c *Cluster) echoServerLog() string { return filepath.Join(c.Dir, "echo-server.log") }

// EchoServerLog returns what the echo server logged.
func (c *Cluster) EchoServerLog() string {
	b, _ := os.ReadFile(c.echoServerLog())
	return string(b)
}

// Session is a long-lived echo session from the client to the server
// through the cluster's virtual IP (source NAT on the gateways): one TCP
// connection, or one UDP flow.
type Session struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

// StartSession opens a TCP session that sends a message every interval.
func (c *Cluster) StartSession(interval time.Duration) (*Session, error) {
	return c.startSession(interval, false)
}

// StartUDPSession opens a UDP flow that sends a datagram every interval
// from one socket; the server echoes it while it comes from the address
// (after source NAT) it first came from.
func (c *Cluster) StartUDPSession(interval time.Duration) (*Session, error) {
	return c.startSession(interval, true)
}

func (c *Cluster) startSession(interval time.Duration, udp bool) (*Session, error) {
	s := &Session{done: make(chan struct{})}
	args := []string{EchoBin(c.Bin), "client", "-interval", interval.String(), "-progress", "100ms"}
	if udp {
		args = append(args, "-udp")
	}
	args = append(args, netip.AddrPortFrom(c.Lab.ServerAddress().Addr(), EchoPort).String())
	cmd, err := c.Lab.Start(netlab.Client, lockedWriter{s}, args...)
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

// OpenSession starts a TCP session and waits until it has exchanged a few
// messages, starting it again while the cluster settles (a connection
// attempt before the primary forwards fails), for up to timeout.
func (c *Cluster) OpenSession(interval, timeout time.Duration) (*Session, error) {
	return c.openSession(interval, timeout, false)
}

// OpenUDPSession is OpenSession for a UDP flow: it starts the flow again
// until one has a few echoes and lost nothing on the way.
func (c *Cluster) OpenUDPSession(interval, timeout time.Duration) (*Session, error) {
	return c.openSession(interval, timeout, true)
}

// errRetry: a session attempt failed and is worth starting again.
var errRetry = errors.New("session attempt failed")

func (c *Cluster) openSession(interval, timeout time.Duration, udp bool) (*Session, error) {
	var s *Session
	err := netlab.WaitFor(timeout, 200*time.Millisecond, func() (bool, error) {
		var err error
		if s, err = c.startSession(interval, udp); err != nil {
			return false, err
		}
		// A few echoes, nothing lost, while the client lives (it exits
		// when its connection fails). Polled rather than checked once:
		// on a busy machine the client may take a while to start.
		werr := netlab.WaitFor(2*time.Second, 50*time.Millisecond, func() (bool, error) {
			r, err := s.Progress()
			if !s.Alive() || (err == nil && r.Lost > 0) {
				return false, errRetry
			}
			return err == nil && r.Received > 3, nil
		})
		if werr == nil && s.Alive() {
			return true, nil
		}
		s.Stop()
		return false, nil
	})
	return s, err
}
