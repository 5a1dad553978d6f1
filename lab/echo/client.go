package echo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Config shapes a client run.
type Config struct {
	// Network is "tcp" (the default: one long-lived connection) or "udp"
	// (one flow of datagrams from one socket).
	Network string
	Addr    string
	// Interval is the time between records; default 50 ms.
	Interval time.Duration
	// Duration is the sending time; 0: until the context ends. Either
	// way the client then waits up to Drain for the last echoes.
	Duration time.Duration
	// Drain bounds the wait for outstanding echoes; default 1 s.
	Drain time.Duration
	// Stall (TCP): a connection with records outstanding and no echo for
	// this long is given up, as a session the network dropped silently.
	// 0: never (TCP retransmits on, and the run ends when Duration or the
	// context does).
	Stall time.Duration
	// Reconnect (TCP): after a connection broke or stalled, open a new one
	// and go on (the run then did not survive); a dial that fails is tried
	// again at the next interval. Off: the run ends with the connection.
	Reconnect bool
	// Samples keeps a Sample per record for the final report.
	Samples bool
	// Ready, if set, is called once, at the first echo.
	Ready func()
}

func (c Config) withDefaults() (Config, error) {
	if c.Network == "" {
		c.Network = "tcp"
	}
	if c.Network != "tcp" && c.Network != "udp" {
		return c, fmt.Errorf("echo: network %q, want tcp or udp", c.Network)
	}
	if c.Interval <= 0 {
		c.Interval = 50 * time.Millisecond
	}
	if c.Drain <= 0 {
		c.Drain = time.Second
	}
	return c, nil
}

// ReadyLine is what `hagate-echo client -ready` prints at the first echo,
// so that a caller in another process knows the session works.
const ReadyLine = "READY"

// Bounds of the client's blocking calls: a dial, and a write, which only
// blocks once the socket buffer is full, minutes into an outage.
const (
	dialTimeout  = 2 * time.Second
	writeTimeout = time.Second
)

// Client runs one session: Run once, and Snapshot from other goroutines
// while it runs. The zero value is ready to use.
type Client struct {
	mu    sync.Mutex
	tr    tracker
	ready func()
}

// Snapshot returns the report so far.
func (c *Client) Snapshot() Report {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tr.report(time.Now())
}

// Run sends a record every cfg.Interval to the echo server at cfg.Addr and
// checks the echoes, until cfg.Duration has passed or ctx ends, then
// waits up to cfg.Drain for the last echoes and returns the final report.
// Bounded: it returns within Duration (or the context) + Drain + a dial
// and a write timeout.
func (c *Client) Run(ctx context.Context, cfg Config) Report {
	start := time.Now()
	cfg, err := cfg.withDefaults()
	c.mu.Lock()
	c.tr = newTracker(cfg.Network, cfg.Samples, start)
	c.ready = cfg.Ready
	if err != nil {
		c.tr.fail(start, 0, err.Error())
	}
	c.mu.Unlock()
	if err == nil {
		if cfg.Duration > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, start.Add(cfg.Duration))
			defer cancel()
		}
		if cfg.Network == "udp" {
			c.runUDP(ctx, cfg)
		} else {
			c.runTCP(ctx, cfg)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tr.finish()
	return c.tr.report(time.Now())
}

// echoed records the echo of seq; the caller holds c.mu and, if first
// is true, calls c.ready (if set) once it has let go of the mutex.
func (c *Client) echoed(seq uint64, at time.Time) (first bool, err error) {
	fresh, err := c.tr.echo(seq, at)
	return fresh && c.tr.received == 1 && c.ready != nil, err
}

func (c *Client) fail(conn int, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tr.fail(time.Now(), conn, err.Error())
}

// tcpConn is one connection of a TCP run and what it owes; its fields
// are guarded by the client's mutex.
type tcpConn struct {
	c        net.Conn
	idx      int
	next     uint64 // the record it must echo next
	sent     uint64 // 1 + the last record written on it
	lastEcho time.Time
	err      error
	dead     chan struct{} // closed when its reader returns
}

func (c *Client) runTCP(ctx context.Context, cfg Config) {
	var cur *tcpConn
	tick := time.NewTicker(cfg.Interval)
	defer tick.Stop()
	var rec []byte
loop:
	for {
		if cur == nil {
			c.mu.Lock()
			conns := c.tr.conns
			c.mu.Unlock()
			if conns > 0 && !cfg.Reconnect {
				break
			}
			cc, err := c.dial(ctx, cfg.Addr)
			switch {
			case err == nil:
				cur = cc
			case !cfg.Reconnect:
				c.fail(0, fmt.Errorf("dial: %w", err))
				break loop
			}
		}
		if cur != nil {
			if why := c.broken(cur, cfg.Stall); why != nil {
				c.fail(cur.idx, why)
				cur.close()
				cur = nil
				continue
			}
			c.mu.Lock()
			seq := c.tr.send(time.Now(), cur.idx)
			cur.sent = seq + 1
			c.mu.Unlock()
			rec = AppendRecord(rec[:0], seq)
			cur.c.SetWriteDeadline(time.Now().Add(writeTimeout))
			if _, err := cur.c.Write(rec); err != nil {
				c.fail(cur.idx, fmt.Errorf("write: %w", err))
				cur.close()
				cur = nil
				continue
			}
		}
		var dead chan struct{}
		if cur != nil {
			dead = cur.dead
		}
		select {
		case <-ctx.Done():
			break loop
		case <-dead: // checked by broken at the top
		case <-tick.C:
		}
	}
	if cur == nil {
		return
	}
	// Give the last echoes a moment.
	for deadline := time.Now().Add(cfg.Drain); time.Now().Before(deadline); {
		c.mu.Lock()
		done := cur.next >= cur.sent || cur.err != nil
		c.mu.Unlock()
		if done {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if why := c.broken(cur, 0); why != nil {
		c.fail(cur.idx, why)
	}
	cur.close()
}

// dial opens the next connection and starts its reader.
func (c *Client) dial(ctx context.Context, addr string) (*tcpConn, error) {
	d := net.Dialer{Timeout: dialTimeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	cc := &tcpConn{c: nc, idx: c.tr.conns, next: c.tr.sent, sent: c.tr.sent, lastEcho: time.Now(), dead: make(chan struct{})}
	c.tr.conns++
	c.tr.local = nc.LocalAddr().String()
	c.mu.Unlock()
	go func() {
		defer close(cc.dead)
		c.read(cc)
	}()
	return cc, nil
}

// broken says why cc is no longer usable: its reader failed, or (stall >
// 0) records are outstanding and none came back for stall.
func (c *Client) broken(cc *tcpConn, stall time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cc.err != nil {
		return cc.err
	}
	if stall > 0 && cc.next < cc.sent && time.Since(cc.lastEcho) > stall {
		return fmt.Errorf("no echo for %s", stall)
	}
	return nil
}

func (cc *tcpConn) close() {
	cc.c.Close()
	<-cc.dead
}

// read checks that cc echoes every record it carried, once and in order.
func (c *Client) read(cc *tcpConn) {
	buf := make([]byte, RecordSize)
	for {
		_, err := io.ReadFull(cc.c, buf)
		now := time.Now()
		var seq uint64
		if err == nil {
			seq, err = ParseRecord(buf)
		}
		c.mu.Lock()
		if err == nil && seq != cc.next {
			err = fmt.Errorf("got record %d, want %d (lost, duplicated or reordered bytes)", seq, cc.next)
		}
		first := false
		if err == nil {
			cc.next++
			cc.lastEcho = now
			first, err = c.echoed(seq, now)
		}
		if err != nil {
			// Our own Close ends the reader; that is no error.
			if cc.err == nil && !errors.Is(err, net.ErrClosed) {
				cc.err = fmt.Errorf("read: %w", err)
			}
			c.mu.Unlock()
			cc.c.Close()
			return
		}
		c.mu.Unlock()
		if first {
			c.ready()
		}
	}
}
