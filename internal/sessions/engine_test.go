package sessions

import (
	"context"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hagate/hagate/internal/seal"
	"github.com/hagate/hagate/internal/sessions/session"
)

func testKeys(t testing.TB) *seal.Keyring {
	kr, err := seal.ParseKeys([]byte("session sync test key 0123456789\n"))
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

// connTap records the primary's connections so tests can cut or corrupt them.
type connTap struct {
	mu      sync.Mutex
	conns   []net.Conn
	corrupt int // corrupt the n-th write from now (0: none)
}

type tappedConn struct {
	net.Conn
	tap *connTap
}

func (c *tappedConn) Write(b []byte) (int, error) {
	c.tap.mu.Lock()
	if c.tap.corrupt > 0 {
		c.tap.corrupt--
		if c.tap.corrupt == 0 && len(b) > 60 {
			b = append([]byte(nil), b...)
			b[len(b)-20] ^= 0xff // inside the payload or tag: authentication fails
		}
	}
	c.tap.mu.Unlock()
	return c.Conn.Write(b)
}

func (t *connTap) dial(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	t.conns = append(t.conns, c)
	t.mu.Unlock()
	return &tappedConn{Conn: c, tap: t}, nil
}

func (t *connTap) cutAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.conns {
		c.Close()
	}
	t.conns = nil
}

type node struct {
	e   *Engine
	mem *Memory
	tap *connTap
}

func startNode(t *testing.T, ctx context.Context, id string, mod func(*EngineConfig)) *node {
	t.Helper()
	return startNodeOn(t, ctx, id, nil, mod)
}

// startNodeOn is startNode with the engine's backend wrapping the memory
// table (wrap nil: the table itself).
func startNodeOn(t *testing.T, ctx context.Context, id string, wrap func(*Memory) Backend, mod func(*EngineConfig)) *node {
	t.Helper()
	n := &node{mem: NewMemory(1 << 16), tap: &connTap{}}
	cfg := EngineConfig{
		NodeID: id, Group: 1, Keyring: testKeys(t), Mode: seal.Authenticate,
		ListenAddrs: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")},
		Dial:        n.tap.dial,
		Filter:      Filter{Connectionless: true, NAT: true},
		Heartbeat:   50 * time.Millisecond, IdleTimeout: time.Second, IOTimeout: time.Second,
		Refresh: time.Hour,
	}
	if mod != nil {
		mod(&cfg)
	}
	var be Backend = n.mem
	if wrap != nil {
		be = wrap(n.mem)
	}
	e, err := NewEngine(cfg, be)
	if err != nil {
		t.Fatal(err)
	}
	nctx, cancel := context.WithCancel(ctx)
	if err := e.Start(nctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); e.Wait() })
	n.e = e
	return n
}

func (n *node) addr(t *testing.T) netip.AddrPort {
	return netip.MustParseAddrPort(n.e.Addrs()[0].String())
}

// pair starts a primary and a subordinate connected to each other.
func pair(t *testing.T, mod func(*EngineConfig)) (context.Context, *node, *node) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	p := startNode(t, ctx, "gw1", mod)
	s := startNode(t, ctx, "gw2", mod)
	if err := s.e.BecomeSubordinate(ctx, "gw1"); err != nil {
		t.Fatal(err)
	}
	p.e.SetPeers([]netip.AddrPort{s.addr(t)})
	return ctx, p, s
}

func randSession(r *rand.Rand, i int) session.Session {
	s := synthSession(i)
	switch r.IntN(4) {
	case 0:
		s.Proto = session.ProtoUDP
		s.TCP = session.TCPInfo{}
		s.Reply = s.Orig.Invert(s.Proto)
	case 1:
		s.Reply.Dst = session.Addr16(netip.MustParseAddr("203.0.113.7"))
		s.Reply.DstPort = uint16(r.IntN(60000))
	}
	// Within the kernel's defaults, as a primary's kernel reports them: a
	// subordinate caps longer ones.
	s.Timeout = min(uint32(30+r.IntN(1000)), maxTimeout(s.Proto, s.TCP.State))
	s.Mark = uint32(r.IntN(3))
	return s
}

// churn applies n random creates, updates and deletes to the memory table.
func churn(r *rand.Rand, m *Memory, live map[int]session.Session, n, keys int) {
	for range n {
		i := r.IntN(keys)
		s, ok := live[i]
		switch {
		case !ok:
			s = randSession(r, i)
			live[i] = s
			m.Inject(session.Change{Op: session.Upsert, Session: s})
		case r.IntN(3) == 0:
			delete(live, i)
			m.Inject(session.Change{Op: session.Delete, Session: s})
		default:
			if s.Proto == session.ProtoTCP {
				s.TCP.State = uint8(r.IntN(int(session.TCPMax)))
			}
			s.Timeout = min(uint32(30+r.IntN(1000)), maxTimeout(s.Proto, s.TCP.State))
			live[i] = s
			m.Inject(session.Change{Op: session.Upsert, Session: s})
		}
	}
}

// converge waits until the subordinate's table equals the primary's.
func converge(t *testing.T, p, s *node) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		want, got := p.mem.Snapshot(), s.mem.Snapshot()
		if !s.e.cfg.TCPWindowTracking {
			for k, v := range want {
				want[k] = liberal(v)
			}
		}
		if cmp.Equal(want, got) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("subordinate differs from primary (%d vs %d entries):\n%s", len(got), len(want), cmp.Diff(want, got))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestEngineSyncsChurnThroughDrops(t *testing.T) {
	ctx, p, s := pair(t, nil)
	r := rand.New(rand.NewPCG(1, 2))
	live := map[int]session.Session{}
	churn(r, p.mem, live, 2000, 3000) // before the primary starts: the bulk carries it
	if err := p.e.becomePrimaryMirrored(ctx); err != nil {
		t.Fatal(err)
	}
	for round := range 20 {
		churn(r, p.mem, live, 500, 3000)
		if round%5 == 4 {
			p.tap.cutAll()
		}
		time.Sleep(time.Duration(r.IntN(20)) * time.Millisecond)
	}
	converge(t, p, s)
	st := p.e.Stats()
	if len(st.Peers) != 1 || st.Peers[0].Bulks < 2 {
		t.Errorf("peer stats %+v: want reconnects with new bulks", st.Peers)
	}
	if len(st.Peers) == 1 && st.Peers[0].LastBulk <= 0 {
		t.Errorf("peer stats %+v: no last bulk duration after %d bulks", st.Peers, st.Peers[0].Bulks)
	}
	t.Logf("primary %+v", st)
	t.Logf("subordinate %+v", s.e.Stats())
}

func TestEngineCorruptFrameResyncs(t *testing.T) {
	ctx, p, s := pair(t, nil)
	if err := p.e.becomePrimaryMirrored(ctx); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 4))
	live := map[int]session.Session{}
	churn(r, p.mem, live, 200, 500)
	converge(t, p, s)
	p.tap.mu.Lock()
	p.tap.corrupt = 1
	p.tap.mu.Unlock()
	churn(r, p.mem, live, 300, 500)
	converge(t, p, s)
	if st := s.e.Stats(); st.FrameErrors == 0 {
		t.Errorf("subordinate counted no frame error: %+v", st)
	}
	if st := p.e.Stats(); st.Peers[0].Bulks < 2 {
		t.Errorf("no resync after the corrupt frame: %+v", st.Peers[0])
	}
}

func TestEngineSlowSubordinateOverflowResyncs(t *testing.T) {
	ctx, p, s := pair(t, func(c *EngineConfig) { c.QueueLen = 10 })
	if err := p.e.becomePrimaryMirrored(ctx); err != nil {
		t.Fatal(err)
	}
	// The bursts must reach a subordinate that is already streaming.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if st := p.e.Stats(); len(st.Peers) == 1 && st.Peers[0].Connected && st.Peers[0].Bulks > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("subordinate never connected")
		}
	}
	r := rand.New(rand.NewPCG(5, 6))
	live := map[int]session.Session{}
	for range 50 {
		churn(r, p.mem, live, 200, 2000) // bursts far beyond the queue
	}
	converge(t, p, s)
	if st := p.e.Stats(); st.QueueOverflows == 0 || st.Resyncs == 0 {
		t.Errorf("no overflow counted: %+v", st)
	}
}

func TestEngineRefusesNonPrimary(t *testing.T) {
	ctx, p, s := pair(t, nil)
	s.e.SetPrimary("someone-else")
	if err := p.e.becomePrimaryMirrored(ctx); err != nil {
		t.Fatal(err)
	}
	p.mem.Inject(session.Change{Op: session.Upsert, Session: synthSession(1)})
	deadline := time.Now().Add(5 * time.Second)
	for s.e.Stats().Refused == 0 {
		if time.Now().After(deadline) {
			t.Fatal("connection from a node that is not the primary was not refused")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if s.mem.Len() != 0 {
		t.Fatalf("subordinate installed %d sessions from a non-primary", s.mem.Len())
	}
}

// betweenRoles starts a primary with n sessions and a member whose engine
// has no role yet (a daemon starting: it becomes subordinate once its
// table is purged), has the primary dial it, and waits until the primary
// has either finished its handshake or been refused.
func betweenRoles(t *testing.T, n int) (context.Context, *node, *node) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	p := startNode(t, ctx, "gw1", nil)
	s := startNode(t, ctx, "gw2", nil)
	for i := range n {
		p.mem.Inject(session.Change{Op: session.Upsert, Session: synthSession(i)})
	}
	if err := p.e.becomePrimaryMirrored(ctx); err != nil {
		t.Fatal(err)
	}
	p.e.SetPeers([]netip.AddrPort{s.addr(t)})
	waitFor(t, "the primary's handshake or its refusal", func() bool {
		st := p.e.Stats()
		return s.e.Stats().Refused > 0 || len(st.Peers) == 1 && st.Peers[0].Connected
	})
	return ctx, p, s
}

// A primary dials a joining member at its first heartbeat, which may be
// before the member's engine is subordinate: the connection waits for the
// role instead of being refused, so the bulk goes over the first dial
// rather than a redial after the backoff.
func TestEngineBetweenRolesWaitsForTheRole(t *testing.T) {
	ctx, p, s := betweenRoles(t, 100)
	if err := s.e.BecomeSubordinate(ctx, "gw1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the bulk", func() bool { return s.mem.Len() == 100 })
	if st := s.e.Stats(); st.Refused != 0 {
		t.Errorf("the subordinate refused %d connections made before it had a role", st.Refused)
	}
	p.tap.mu.Lock()
	dials := len(p.tap.conns)
	p.tap.mu.Unlock()
	if dials != 1 {
		t.Errorf("the primary dialled %d times, want once", dials)
	}
}

// ... and is judged once the role is set: a member that becomes primary
// instead refuses it.
func TestEngineBetweenRolesJudgedOnceSet(t *testing.T) {
	ctx, _, s := betweenRoles(t, 100)
	if err := s.e.BecomePrimary(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the refusal", func() bool { return s.e.Stats().Refused > 0 })
	if n := s.mem.Len(); n != 0 {
		t.Errorf("a member that became primary installed %d sessions from the other", n)
	}
}

// A subordinate installs synced TCP sessions liberal unless
// TCPWindowTracking is on (the kernel does not sync sequence windows, and
// one learned from a stray packet goes stale); UDP has no such flags.
func TestEngineInstallsTCPLiberal(t *testing.T) {
	for _, tracking := range []bool{false, true} {
		ctx, p, s := pair(t, func(c *EngineConfig) { c.TCPWindowTracking = tracking })
		if err := p.e.becomePrimaryMirrored(ctx); err != nil {
			t.Fatal(err)
		}
		tcp := synthSession(1)
		udp := synthSession(2)
		udp.Proto, udp.TCP, udp.Timeout = session.ProtoUDP, session.TCPInfo{}, 120
		udp.Reply = udp.Orig.Invert(udp.Proto)
		p.mem.Inject(session.Change{Op: session.Upsert, Session: tcp}, session.Change{Op: session.Upsert, Session: udp})
		converge(t, p, s)
		got := s.mem.Snapshot()
		wantFlags := tcp.TCP.FlagsOrig
		if !tracking {
			wantFlags |= session.TCPFlagBeLiberal
		}
		if g := got[tcp.Key].TCP; g.FlagsOrig != wantFlags || g.FlagsReply != wantFlags {
			t.Errorf("tracking %v: installed TCP flags %#x/%#x, want %#x", tracking, g.FlagsOrig, g.FlagsReply, wantFlags)
		}
		if g := got[udp.Key].TCP; g != (session.TCPInfo{}) {
			t.Errorf("tracking %v: installed UDP with TCP info %+v", tracking, g)
		}
	}
}

func TestEngineTakeover(t *testing.T) {
	ctx, p, s := pair(t, nil)
	if err := p.e.becomePrimaryMirrored(ctx); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(7, 8))
	live := map[int]session.Session{}
	churn(r, p.mem, live, 1000, 1000)
	converge(t, p, s)
	// A session ends on the subordinate's side only (it timed out there):
	// the old primary still holds it after stepping down, and must drop it
	// when the new primary's bulk does not carry it.
	stale := synthSession(99999)
	p.mem.Inject(session.Change{Op: session.Upsert, Session: stale})
	converge(t, p, s)
	s.mem.Inject(session.Change{Op: session.Delete, Session: stale})

	// The primary fails; the subordinate takes over and then serves the old
	// primary, which comes back as a subordinate.
	if err := p.e.BecomeSubordinate(ctx, "gw2"); err != nil {
		t.Fatal(err)
	}
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.e.becomePrimaryMirrored(tctx); err != nil {
		t.Fatal(err)
	}
	if got := s.e.Stats().Sessions; got != len(live) {
		t.Fatalf("new primary mirrors %d sessions, want %d", got, len(live))
	}
	s.e.SetPeers([]netip.AddrPort{p.addr(t)})
	churn(r, s.mem, live, 300, 1000)
	converge(t, s, p)
	if _, ok := p.mem.Get(stale.Key); ok {
		t.Fatal("stale session kept")
	}
}
