package pinger

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"time"
)

// fakeNet stands in for the network in tests run under testing/synctest:
// every target answers or not as the test says, after a delay, and can be
// made to deliver junk before each reply.
type fakeNet struct {
	mu       sync.Mutex
	silent   map[netip.Addr]bool // targets that do not answer
	delay    time.Duration       // before a reply arrives
	junk     bool                // deliver unrelated datagrams before each reply
	dialErrs int                 // dials to fail before one succeeds
	opened   int
	closed   int
}

func newFakeNet() *fakeNet { return &fakeNet{silent: map[netip.Addr]bool{}} }

func (n *fakeNet) setSilent(a netip.Addr, silent bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.silent[a] = silent
}

func (n *fakeNet) dial(t Target) (conn, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.dialErrs > 0 {
		n.dialErrs--
		return nil, fmt.Errorf("bind ICMP socket to %s: no such device", t.Interface)
	}
	n.opened++
	return &fakeConn{net: n, ident: uint16(0x4000 + n.opened), in: make(chan datagram, 16), done: make(chan struct{})}, nil
}

func (n *fakeNet) counts() (opened, closed int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.opened, n.closed
}

type datagram struct {
	b   []byte
	src netip.Addr
}

// fakeConn is a raw socket: IPv4 replies come with an IP header.
type fakeConn struct {
	net   *fakeNet
	ident uint16
	in    chan datagram
	once  sync.Once
	done  chan struct{}
}

func (c *fakeConn) id() uint16     { return c.ident }
func (c *fakeConn) kind() sockKind { return sockRaw }
func (c *fakeConn) ipHeader() bool { return true }

func (c *fakeConn) close() error {
	c.once.Do(func() {
		close(c.done)
		c.net.mu.Lock()
		c.net.closed++
		c.net.mu.Unlock()
	})
	return nil
}

func (c *fakeConn) writeTo(b []byte, dst netip.Addr) error {
	select {
	case <-c.done:
		return os.ErrClosed
	default:
	}
	v6 := dst.Is6()
	// Requests carry the request type; parse them as replies would be
	// parsed by flipping the type.
	req := append([]byte(nil), b...)
	req[0] = typeEchoReply4
	if v6 {
		req[0] = typeEchoReply6
	}
	if !v6 {
		binary.BigEndian.PutUint16(req[2:], 0)
		binary.BigEndian.PutUint16(req[2:], checksum(req))
	}
	e, why := parseEchoReply(req, v6, false)
	if why != dropNone {
		return fmt.Errorf("fake: bad request: %v", why)
	}
	c.net.mu.Lock()
	silent, delay, junk := c.net.silent[dst], c.net.delay, c.net.junk
	c.net.mu.Unlock()
	if junk {
		other := netip.MustParseAddr("192.0.2.99")
		if v6 {
			other = netip.MustParseAddr("2001:db8::99")
		}
		c.deliver(0, dst, []byte{1, 2, 3})                                                    // short
		c.deliver(0, dst, marshalEcho(typeEchoReply4+3, v6, e))                               // type
		c.deliver(0, dst, marshalEcho(replyType(v6), v6, echo{e.id + 1, e.seq, e.payload}))   // other-id
		c.deliver(0, dst, marshalEcho(replyType(v6), v6, echo{e.id, e.seq - 1, e.payload}))   // stale-seq
		c.deliver(0, dst, marshalEcho(replyType(v6), v6, echo{e.id, e.seq, []byte("other")})) // payload
		c.deliver(0, other, marshalEcho(replyType(v6), v6, e))                                // source
		if !v6 {
			c.in <- datagram{b: []byte{0x65, 0, 0, 0}, src: dst} // ip-header
		}
	}
	if !silent {
		c.deliver(delay, dst, marshalEcho(replyType(v6), v6, e))
	}
	return nil
}

func replyType(v6 bool) uint8 {
	if v6 {
		return typeEchoReply6
	}
	return typeEchoReply4
}

// deliver queues a reply after delay, with an IPv4 header for IPv4.
func (c *fakeConn) deliver(delay time.Duration, src netip.Addr, msg []byte) {
	b := msg
	if src.Is4() {
		b = append(ipv4Header(src, len(msg)), msg...)
	}
	d := datagram{b: b, src: src}
	push := func() {
		select {
		case c.in <- d:
		default: // a full socket buffer drops, as the kernel's does
		}
	}
	if delay == 0 {
		push()
		return
	}
	time.AfterFunc(delay, push)
}

func ipv4Header(src netip.Addr, payload int) []byte {
	h := make([]byte, ipv4MinHead)
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:], uint16(ipv4MinHead+payload))
	h[8] = 64
	h[9] = protoICMP4
	a := src.As4()
	copy(h[12:], a[:])
	return h
}

func (c *fakeConn) readFrom(b []byte, deadline time.Time) (int, netip.Addr, error) {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case d := <-c.in:
		return copy(b, d.b), d.src, nil
	case <-timer.C:
		return 0, netip.Addr{}, os.ErrDeadlineExceeded
	case <-c.done:
		return 0, netip.Addr{}, fmt.Errorf("fake read: %w", os.ErrClosed)
	}
}
