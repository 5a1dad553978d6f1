package echo

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"syscall"
	"time"
)

// runUDP sends one flow of datagrams from one socket: a sequence-numbered
// datagram every interval, and counts what comes back. Datagrams lost,
// duplicated or reordered do not end the flow; the server telling it that
// the flow arrived from another source address (KindMoved) is an error,
// and so are echoes that stop.
func (c *Client) runUDP(ctx context.Context, cfg Config) {
	d := net.Dialer{Timeout: dialTimeout}
	nc, err := d.DialContext(ctx, "udp", cfg.Addr)
	if err != nil {
		c.fail(0, fmt.Errorf("dial: %w", err))
		return
	}
	c.mu.Lock()
	c.tr.conns = 1
	c.tr.local = nc.LocalAddr().String()
	c.mu.Unlock()
	flow := rand.Uint64()
	dead := make(chan struct{})
	go func() {
		defer close(dead)
		c.readUDP(nc, flow)
	}()
	tick := time.NewTicker(cfg.Interval)
	defer tick.Stop()
	var buf []byte
loop:
	for {
		c.mu.Lock()
		seq := c.tr.send(time.Now(), 0)
		c.mu.Unlock()
		buf = AppendDatagram(buf[:0], Datagram{Kind: KindEcho, Flow: flow, Seq: seq})
		nc.SetWriteDeadline(time.Now().Add(writeTimeout))
		// A write may fail with the ICMP error a previous datagram drew
		// (no route, port unreachable while a gateway takes over): the
		// datagram is lost, which the count shows; the flow goes on.
		nc.Write(buf)
		select {
		case <-ctx.Done():
			break loop
		case <-dead:
			break loop
		case <-tick.C:
		}
	}
	for deadline := time.Now().Add(cfg.Drain); time.Now().Before(deadline); {
		c.mu.Lock()
		done := c.tr.highest >= c.tr.sent
		c.mu.Unlock()
		if done {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	nc.Close()
	<-dead
}

// readUDP reads the server's answers for flow until nc is closed.
func (c *Client) readUDP(nc net.Conn, flow uint64) {
	buf := make([]byte, 512)
	moved := false
	for {
		n, err := nc.Read(buf)
		now := time.Now()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) {
				continue // an ICMP error for one datagram: it was lost
			}
			c.fail(0, fmt.Errorf("read: %w", err))
			return
		}
		d, err := ParseDatagram(buf[:n])
		if err == nil && d.Flow != flow {
			err = fmt.Errorf("datagram of flow %016x, want %016x", d.Flow, flow)
		}
		if err != nil {
			c.fail(0, fmt.Errorf("bad answer: %w", err))
			continue
		}
		if d.Kind == KindMoved {
			if !moved {
				moved = true
				c.fail(0, fmt.Errorf("the server saw datagram %d of the flow come from another source address than the flow's first (a new NAT mapping: the flow broke)", d.Seq))
			}
			continue
		}
		c.mu.Lock()
		first, err := c.echoed(d.Seq, now)
		c.mu.Unlock()
		if err != nil {
			c.fail(0, err)
		}
		if first {
			c.ready()
		}
	}
}

// maxFlows bounds the flows a UDP server remembers; past it, it forgets
// an arbitrary one.
const maxFlows = 4096

// ServeUDP echoes the datagrams on pc until ctx ends. It keeps state per
// flow, as a UDP service with per-client state does: the source address
// (after any NAT) of the flow's first datagram. A datagram of the flow
// from any other address is not echoed; the server answers it with
// KindMoved, and logs the first such datagram of each flow to logf (if
// set). Datagrams it cannot parse are dropped.
func ServeUDP(ctx context.Context, pc net.PacketConn, logf func(format string, args ...any)) error {
	stop := context.AfterFunc(ctx, func() { pc.Close() })
	defer stop()
	if logf == nil {
		logf = func(string, ...any) {}
	}
	peers := map[uint64]netip.AddrPort{}
	moved := map[uint64]bool{}
	buf := make([]byte, 512)
	var out []byte
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("echo server: %w", err)
		}
		d, err := ParseDatagram(buf[:n])
		if err != nil || d.Kind != KindEcho {
			continue
		}
		ua, ok := from.(*net.UDPAddr)
		if !ok {
			continue
		}
		src := ua.AddrPort()
		first, known := peers[d.Flow]
		switch {
		case !known:
			if len(peers) >= maxFlows {
				for f := range peers {
					delete(peers, f)
					delete(moved, f)
					break
				}
			}
			peers[d.Flow] = src
			logf("flow %016x: first datagram %d from %s", d.Flow, d.Seq, src)
		case first != src:
			d.Kind = KindMoved
			if !moved[d.Flow] {
				moved[d.Flow] = true
				logf("flow %016x: datagram %d from %s, but the flow came from %s: not echoed (a new NAT mapping)", d.Flow, d.Seq, src, first)
			}
		}
		out = AppendDatagram(out[:0], d)
		pc.WriteTo(out, from)
	}
}
