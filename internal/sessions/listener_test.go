package sessions

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/hagate/hagate/internal/sessions/session"
)

// slowApply makes a subordinate's installs take delay per batch, so that a
// bulk lasts long enough for a test to act during it.
type slowApply struct {
	*Memory
	delay time.Duration
}

func (s slowApply) Apply(ctx context.Context, cs []session.Change) error {
	time.Sleep(s.delay)
	return s.Memory.Apply(ctx, cs)
}

// helloRecorder accepts the primary's connections and keeps the first frame
// of each (its hello), as someone on the HA segment sees them.
func helloRecorder(t *testing.T) (netip.AddrPort, <-chan []byte) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	hellos := make(chan []byte, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			var hdr [4]byte
			if _, err := io.ReadFull(c, hdr[:]); err == nil {
				frame := make([]byte, 4+binary.BigEndian.Uint32(hdr[:]))
				copy(frame, hdr[:])
				if _, err := io.ReadFull(c, frame[4:]); err == nil {
					select {
					case hellos <- frame:
					default:
					}
				}
			}
			c.Close()
		}
	}()
	return netip.MustParseAddrPort(l.Addr().String()), hellos
}

// A hello the primary sent to another member, replayed to a subordinate
// while a bulk of 100,000 sessions streams to it, does not cut the
// primary's connection: the replay cannot answer the challenge, and only a
// connection that has answered replaces the current one. The bulk completes
// at the first attempt.
func TestReplayedHelloDuringBulk(t *testing.T) {
	const n = 100_000
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	p := startNode(t, ctx, "gw1", nil)
	s := startNodeOn(t, ctx, "gw2", func(m *Memory) Backend { return slowApply{m, 100 * time.Millisecond} }, nil)
	for i := range n {
		p.mem.Inject(session.Change{Op: session.Upsert, Session: synthSession(i)})
	}
	if err := s.e.BecomeSubordinate(ctx, "gw1"); err != nil {
		t.Fatal(err)
	}
	if err := p.e.becomePrimaryMirrored(ctx); err != nil {
		t.Fatal(err)
	}
	rec, hellos := helloRecorder(t)
	p.e.SetPeers([]netip.AddrPort{rec, s.addr(t)})
	var hello []byte
	select {
	case hello = <-hellos:
	case <-time.After(10 * time.Second):
		t.Fatal("the primary sent no hello to the recorder")
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.mem.Len() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the bulk did not start")
		}
		time.Sleep(5 * time.Millisecond)
	}

	c, err := net.Dial("tcp", s.addr(t).String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(hello); err != nil {
		t.Fatal(err)
	}
	during := s.mem.Len()
	// The subordinate challenges the replay and, unanswered, drops it.
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Fatalf("the replayed connection was not closed: %v", err)
	}
	t.Logf("hello replayed with %d of %d sessions installed", during, n)

	deadline = time.Now().Add(30 * time.Second)
	for s.e.Stats().LastBulk.Sessions != n {
		if time.Now().After(deadline) {
			t.Fatalf("the bulk did not complete: %d of %d sessions", s.mem.Len(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, ps := range p.e.Stats().Peers {
		if ps.Addr == s.addr(t).String() && (ps.Bulks != 1 || ps.Resyncs != 0) {
			t.Errorf("the primary sent %d bulks (%d resyncs) to the subordinate: the replayed hello cut its connection", ps.Bulks, ps.Resyncs)
		}
	}
	if got := s.mem.Len(); got != n {
		t.Errorf("subordinate holds %d sessions, want %d", got, n)
	}
}

// flood opens conns connections to addr from the loopback sources given,
// in turn, writing nothing, and returns them.
func flood(t *testing.T, addr netip.AddrPort, sources []netip.Addr, conns int) (open []net.Conn) {
	t.Helper()
	t.Cleanup(func() {
		for _, c := range open {
			c.Close()
		}
	})
	stop := time.Now().Add(20 * time.Second)
	for i := 0; i < conns && time.Now().Before(stop); i++ {
		d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(sources[i%len(sources)], 0)), Timeout: time.Second}
		c, err := d.Dial("tcp", addr.String())
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
	}
	return open
}

// closedAtOnce returns how many of conns the other end has closed within a
// short while.
func closedAtOnce(conns []net.Conn) (closed int) {
	time.Sleep(300 * time.Millisecond)
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(5 * time.Millisecond))
		var ne net.Error
		if _, err := c.Read(make([]byte, 1)); errors.As(err, &ne) && ne.Timeout() {
			continue // still open: in its handshake
		}
		closed++
	}
	return closed
}

// A flood of connections to the sync port costs the engine nothing beyond
// a few handshakes: from an address that is not a peer, every connection is
// closed at accept; from peer addresses, at most maxHandshakes wait for a
// hello, each at most HandshakeTimeout. A genuine primary still connects.
func TestSyncFlood(t *testing.T) {
	const conns = 500
	loopback := func(n int) []netip.Addr {
		var out []netip.Addr
		for i := range n {
			out = append(out, netip.AddrFrom4([4]byte{127, 0, 0, byte(1 + i)}))
		}
		return out
	}
	for _, tc := range []struct {
		name      string
		peers     []netip.Addr
		maxOpen   int
		closedMin int
	}{
		{"stranger", []netip.Addr{netip.MustParseAddr("192.0.2.99")}, 0, conns},
		{"peer", loopback(8), maxHandshakes, conns - maxHandshakes},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			t.Cleanup(cancel)
			s := startNode(t, ctx, "gw2", func(c *EngineConfig) {
				c.Peers = tc.peers
				c.HandshakeTimeout = 2 * time.Second
			})
			if err := s.e.BecomeSubordinate(ctx, "gw1"); err != nil {
				t.Fatal(err)
			}
			var m0, m1 runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&m0)
			g0 := runtime.NumGoroutine()
			start := time.Now()
			open := flood(t, s.addr(t), loopback(8), conns)
			g1 := runtime.NumGoroutine()
			runtime.ReadMemStats(&m1)
			closed := closedAtOnce(open)
			t.Logf("%d connections in %v: %d closed at once, goroutines %d -> %d, heap in use %+d KiB",
				len(open), time.Since(start).Round(time.Millisecond), closed, g0, g1, (int64(m1.HeapInuse)-int64(m0.HeapInuse))>>10)
			if closed < tc.closedMin {
				t.Errorf("%d of %d connections closed at once, want at least %d", closed, len(open), tc.closedMin)
			}
			if g1-g0 > tc.maxOpen+8 {
				t.Errorf("goroutines grew by %d with %d connections, want at most %d", g1-g0, len(open), tc.maxOpen+8)
			}
			if st := s.e.Stats(); st.Refused < uint64(tc.closedMin) {
				t.Errorf("%d refused connections counted, want at least %d", st.Refused, tc.closedMin)
			}
			if tc.maxOpen == 0 {
				return
			}
			// The flood ends; the primary, on a peer address, syncs.
			for _, c := range open {
				c.Close()
			}
			p := startNode(t, ctx, "gw1", nil)
			p.mem.Inject(session.Change{Op: session.Upsert, Session: synthSession(1)})
			if err := p.e.becomePrimaryMirrored(ctx); err != nil {
				t.Fatal(err)
			}
			p.e.SetPeers([]netip.AddrPort{s.addr(t)})
			converge(t, p, s)
		})
	}
}
