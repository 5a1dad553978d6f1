package heartbeat

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hagate/hagate/internal/cluster"
	"github.com/hagate/hagate/internal/seal"
)

// Link is one HA interface and the peers reached over it.
type Link struct {
	Interface string
	Peers     []netip.Addr
}

// Counters receives what the transport counts; the daemon wires it to
// metrics. Every method must be safe for concurrent use.
type Counters interface {
	Sent(link string)
	Received(link, peer string)
	Dropped(link, reason string)
}

// Transport sends heartbeats on every HA link and receives them. Received
// heartbeats arrive on Packets in the order they were read.
type Transport struct {
	port     int
	links    []*linkConn
	sealer   *seal.Sealer
	opener   *seal.Opener
	counters Counters
	packets  chan cluster.Received
	now      func() time.Time
	wg       sync.WaitGroup
}

type linkConn struct {
	Link
	index int
	conn  *net.UDPConn
	peers map[netip.Addr]bool
}

// Open binds one UDP socket per link to its interface (SO_BINDTODEVICE), so
// a heartbeat is known to have come in on the link it names. now stamps the
// frames (wall clock: frames carry their send time for the freshness check).
func Open(links []Link, port int, sealer *seal.Sealer, opener *seal.Opener, counters Counters, now func() time.Time) (*Transport, error) {
	t := &Transport{port: port, sealer: sealer, opener: opener, counters: counters,
		packets: make(chan cluster.Received, 256), now: now}
	for i, l := range links {
		c, err := listen(l.Interface, port)
		if err != nil {
			t.Close()
			return nil, fmt.Errorf("heartbeat link %s: %w", l.Interface, err)
		}
		lc := &linkConn{Link: l, index: i, conn: c, peers: map[netip.Addr]bool{}}
		for _, p := range l.Peers {
			lc.peers[p.Unmap()] = true
		}
		t.links = append(t.links, lc)
	}
	return t, nil
}

func listen(ifname string, port int) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); serr != nil {
				return
			}
			serr = unix.BindToDevice(int(fd), ifname)
			if serr == nil {
				// Heartbeats are small and urgent: ask for the
				// network-control traffic class (DSCP CS6).
				_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_TOS, 0xc0)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp", fmt.Sprintf(":%d", port))
	if err != nil {
		return nil, err
	}
	return pc.(*net.UDPConn), nil
}

// Packets delivers authenticated, well-formed heartbeats.
func (t *Transport) Packets() <-chan cluster.Received { return t.packets }

// Run reads every link until ctx ends, then closes the sockets.
func (t *Transport) Run(ctx context.Context) {
	for _, l := range t.links {
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			t.read(ctx, l)
		}()
	}
	<-ctx.Done()
	t.Close()
	t.wg.Wait()
}

// Close closes the sockets.
func (t *Transport) Close() {
	for _, l := range t.links {
		l.conn.Close()
	}
}

// Send seals hb and sends it to every peer on every link. A link that fails
// (down, no route) does not stop the others; the first error is returned.
func (t *Transport) Send(hb cluster.Heartbeat) error {
	payload := Encode(make([]byte, 0, MaxLen), hb)
	now := t.now()
	var first error
	buf := make([]byte, 0, MaxLen+seal.Overhead)
	for _, l := range t.links {
		frame := t.sealer.Seal(buf[:0], uint32(l.index), now, payload)
		for _, p := range l.Peers {
			_, err := l.conn.WriteToUDPAddrPort(frame, netip.AddrPortFrom(p, uint16(t.port)))
			if err != nil {
				t.counters.Dropped(l.Interface, "send-error")
				if first == nil {
					first = fmt.Errorf("heartbeat link %s to %s: %w", l.Interface, p, err)
				}
				continue
			}
		}
		t.counters.Sent(l.Interface)
	}
	return first
}

func (t *Transport) read(ctx context.Context, l *linkConn) {
	buf := make([]byte, 2048)
	for {
		n, from, err := l.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			t.counters.Dropped(l.Interface, "read-error")
			continue
		}
		rx, reason := t.accept(l, from.Addr().Unmap(), buf[:n])
		if reason != "" {
			t.counters.Dropped(l.Interface, reason)
			continue
		}
		select {
		case t.packets <- rx:
			t.counters.Received(l.Interface, rx.From)
		default:
			t.counters.Dropped(l.Interface, "queue-full")
		}
	}
}

// accept checks one datagram; it returns the reason when it drops it.
// The cheap checks (source, size) come before any cryptography.
func (t *Transport) accept(l *linkConn, from netip.Addr, b []byte) (cluster.Received, string) {
	if !l.peers[from] {
		return cluster.Received{}, "unknown-source"
	}
	if len(b) > MaxLen+seal.Overhead {
		return cluster.Received{}, "oversize"
	}
	now := t.now()
	h, payload, err := t.opener.Open(b, now)
	if err != nil {
		var d *seal.DropError
		if errors.As(err, &d) {
			return cluster.Received{}, d.Reason
		}
		return cluster.Received{}, "malformed"
	}
	hb, err := Decode(payload)
	if err != nil {
		return cluster.Received{}, "malformed"
	}
	return cluster.Received{From: h.Sender, Link: l.Interface, Seq: h.Seq, Epoch: h.Epoch, HB: hb}, ""
}
