// Package echo is the lab's long-lived TCP session: a client that sends a
// numbered 8-byte message every interval over one connection to an echo
// server and checks that every number comes back once, in order. It is how
// the tests and the demo see whether a session survived a failover and how
// long it stalled.
package echo

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Report is what the client saw.
type Report struct {
	Sent     uint64        `json:"sent"`
	Received uint64        `json:"received"`
	MaxGap   time.Duration `json:"max_gap_ns"` // the longest time between two echoes
	GapAt    time.Time     `json:"gap_at"`     // when that gap ended
	Err      string        `json:"error,omitempty"`
	// Survived: the connection lived to the end and every echo came back
	// once, in order.
	Survived bool `json:"survived"`
}

func (r Report) String() string {
	s := fmt.Sprintf("sent %d, echoed %d, longest gap %s", r.Sent, r.Received, r.MaxGap.Round(time.Millisecond))
	if r.Err != "" {
		s += ", error: " + r.Err
	}
	return s
}

// Client runs one session to addr until ctx ends, then waits up to grace
// for the last echoes.
type Client struct {
	mu       sync.Mutex
	rep      Report
	lastEcho time.Time
}

// Snapshot returns the report so far.
func (c *Client) Snapshot() Report {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.rep
	if gap := time.Since(c.lastEcho); r.Err == "" && gap > r.MaxGap && !c.lastEcho.IsZero() {
		r.MaxGap = gap // a stall still going on counts
	}
	return r
}

func (c *Client) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rep.Err == "" {
		c.rep.Err = err.Error()
	}
}

// Run dials addr and exchanges messages every interval until ctx ends.
func (c *Client) Run(ctx context.Context, addr string, interval time.Duration) Report {
	d := net.Dialer{Timeout: 3 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		c.fail(err)
		return c.Snapshot()
	}
	defer conn.Close()
	c.mu.Lock()
	c.lastEcho = time.Now()
	c.mu.Unlock()

	done := make(chan struct{})
	go func() {
		defer close(done)
		c.read(conn)
	}()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var seq uint64
	var buf [8]byte
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-done:
			break loop
		case <-tick.C:
		}
		binary.BigEndian.PutUint64(buf[:], seq)
		conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if _, err := conn.Write(buf[:]); err != nil {
			c.fail(fmt.Errorf("write: %w", err))
			break
		}
		seq++
		c.mu.Lock()
		c.rep.Sent = seq
		c.mu.Unlock()
	}
	// Give the last echoes a moment, then stop the reader.
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); {
		c.mu.Lock()
		all := c.rep.Received == c.rep.Sent
		c.mu.Unlock()
		if all {
			break
		}
		select {
		case <-done:
		case <-time.After(10 * time.Millisecond):
			continue
		}
		break
	}
	conn.Close()
	<-done
	r := c.Snapshot()
	c.mu.Lock()
	r.Survived = c.rep.Err == "" && r.Received == r.Sent && r.Sent > 0
	c.rep.Survived = r.Survived
	c.mu.Unlock()
	return r
}

func (c *Client) read(conn net.Conn) {
	var buf [8]byte
	var want uint64
	for {
		if _, err := io.ReadFull(conn, buf[:]); err != nil {
			if !errors.Is(err, net.ErrClosed) {
				c.fail(fmt.Errorf("read: %w", err))
			}
			return
		}
		got := binary.BigEndian.Uint64(buf[:])
		now := time.Now()
		c.mu.Lock()
		if got != want {
			c.mu.Unlock()
			c.fail(fmt.Errorf("echo %d out of order, want %d (lost or duplicated bytes)", got, want))
			return
		}
		want++
		c.rep.Received = want
		if gap := now.Sub(c.lastEcho); gap > c.rep.MaxGap {
			c.rep.MaxGap, c.rep.GapAt = gap, now
		}
		c.lastEcho = now
		c.mu.Unlock()
	}
}

// Serve echoes every connection on ln until ctx ends.
func Serve(ctx context.Context, ln net.Listener) error {
	context.AfterFunc(ctx, func() { ln.Close() })
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		go func() {
			defer conn.Close()
			io.Copy(conn, conn)
		}()
	}
}
