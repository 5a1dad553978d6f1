package sessions

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hagate/hagate/internal/sessions/session"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestDelaySyncsOnlyOlderSessions(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	ctx, p, s := pair(t, func(c *EngineConfig) { c.Delay = 400 * time.Millisecond * 10; c.Now = clk.Now })
	if err := p.e.becomePrimaryMirrored(ctx); err != nil {
		t.Fatal(err)
	}
	short, long := synthSession(1), synthSession(2)
	p.mem.Inject(session.Change{Op: session.Upsert, Session: short}, session.Change{Op: session.Upsert, Session: long})
	waitFor(t, "the primary to see both", func() bool { return p.e.Stats().Sessions == 2 })
	clk.Advance(2 * time.Second)
	p.mem.Inject(session.Change{Op: session.Delete, Session: short}) // ended before the delay
	time.Sleep(1500 * time.Millisecond)                              // several delay ticks
	if n := s.mem.Len(); n != 0 {
		t.Fatalf("subordinate got %d sessions younger than the delay", n)
	}
	clk.Advance(3 * time.Second)
	waitFor(t, "the old session synced", func() bool { _, ok := s.mem.Get(long.Key); return ok })
	if _, ok := s.mem.Get(short.Key); ok {
		t.Fatal("a session that ended young was synced")
	}
}

// syncedUDPFlow makes a UDP flow with a 30 s timeout on p and waits until
// s holds it.
func syncedUDPFlow(t *testing.T, p, s *node) session.Session {
	t.Helper()
	u := synthSession(3)
	u.Proto, u.TCP, u.Timeout = session.ProtoUDP, session.TCPInfo{}, 30
	u.Reply = u.Orig.Invert(u.Proto)
	p.mem.Inject(session.Change{Op: session.Upsert, Session: u})
	waitFor(t, "the flow synced", func() bool { _, ok := s.mem.Get(u.Key); return ok })
	return u
}

// Traffic refreshes a timeout on the primary without an event; the refresh
// dump must re-send the session before the subordinate's copy expires.
func TestRefreshResendsExpiringSessions(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	ctx, p, s := pair(t, func(c *EngineConfig) { c.Refresh = 50 * time.Millisecond; c.Now = clk.Now })
	if err := p.e.becomePrimaryMirrored(ctx); err != nil {
		t.Fatal(err)
	}
	u := syncedUDPFlow(t, p, s)
	// The subordinate's copy times out (its kernel saw no traffic)...
	s.mem.Inject(session.Change{Op: session.Delete, Session: u})
	time.Sleep(200 * time.Millisecond)
	if _, ok := s.mem.Get(u.Key); ok {
		t.Fatal("re-sent although far from expiry")
	}
	// ...and near its expiry the primary sends it again.
	clk.Advance(27 * time.Second)
	waitFor(t, "the flow re-sent", func() bool { _, ok := s.mem.Get(u.Key); return ok })
}

// Between whole-table dumps (FullRefresh) the refresh looks up only the
// sessions whose copies near expiry: long-lived TCP sessions cost it
// nothing, and a session gone from the table without its event is deleted
// on the subordinates when its lookup finds nothing.
func TestRefreshLooksUpOnlyExpiring(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	ctx, p, s := pair(t, func(c *EngineConfig) { c.Refresh = 50 * time.Millisecond; c.Now = clk.Now; c.LookupMin = 10 })
	if err := p.e.becomePrimaryMirrored(ctx); err != nil {
		t.Fatal(err)
	}
	const tcp = 50
	for i := range tcp {
		p.mem.Inject(session.Change{Op: session.Upsert, Session: synthSession(100 + i)}) // 5-day timeouts
	}
	u := synthSession(3)
	u.Proto, u.TCP, u.Timeout = session.ProtoUDP, session.TCPInfo{}, 30
	u.Reply = u.Orig.Invert(u.Proto)
	p.mem.Inject(session.Change{Op: session.Upsert, Session: u})
	waitFor(t, "the sessions synced", func() bool { return s.mem.Len() == tcp+1 })
	dumps0, lookups0 := p.mem.Reads()
	time.Sleep(300 * time.Millisecond) // several refresh ticks, nothing near expiry
	if d, l := p.mem.Reads(); d != dumps0 || l != lookups0 {
		t.Fatalf("refresh with nothing near expiry: %d dumps, %d lookups", d-dumps0, l-lookups0)
	}
	// The flow's copies near expiry: it alone is looked up, and re-sent.
	s.mem.Inject(session.Change{Op: session.Delete, Session: u})
	clk.Advance(27 * time.Second)
	waitFor(t, "the flow re-sent", func() bool { _, ok := s.mem.Get(u.Key); return ok })
	d, l := p.mem.Reads()
	if d != dumps0 || l == lookups0 || l-lookups0 >= tcp {
		t.Fatalf("refresh near the flow's expiry: %d dumps, %d lookups (want 0 dumps, lookups of the flow only)", d-dumps0, l-lookups0)
	}
	// The flow ends on the primary without an event reaching the engine:
	// its lookup finds nothing and the subordinate's copy is deleted.
	p.mem.mu.Lock()
	delete(p.mem.m, u.Key) // no event: as if the socket had lost it unnoticed
	p.mem.mu.Unlock()
	clk.Advance(27 * time.Second)
	waitFor(t, "the ended flow deleted", func() bool { _, ok := s.mem.Get(u.Key); return !ok })
	// After FullRefresh, a whole dump all the same.
	clk.Advance(2 * time.Minute)
	waitFor(t, "a whole-table dump", func() bool { d, _ := p.mem.Reads(); return d > dumps0 })
}

// session_pickup.dump_interval. Unset, a table below LookupMin is dumped
// every Refresh and a larger one every FullRefresh; negative (the
// setting's 0), never, the copies near expiry being looked up instead; a
// period, a dump every period whatever the table's size.
func TestDumpInterval(t *testing.T) {
	dumps := func(n *node) int { d, _ := n.mem.Reads(); return d }
	// More dumps than the mirroring's one, by up to 5 s (waitFor).
	dumpsAfter := func(t *testing.T, n *node, want int) {
		t.Helper()
		d0 := dumps(n)
		waitFor(t, fmt.Sprintf("%d periodic dumps", want), func() bool { return dumps(n)-d0 >= want })
	}
	const ticks = 300 * time.Millisecond // six refreshes of 50 ms
	t.Run("unset dumps a small table every refresh", func(t *testing.T) {
		ctx, p, _ := pair(t, func(c *EngineConfig) { c.Refresh = 50 * time.Millisecond })
		if err := p.e.becomePrimaryMirrored(ctx); err != nil {
			t.Fatal(err)
		}
		dumpsAfter(t, p, 3)
	})
	t.Run("off never dumps and still re-sends copies near expiry", func(t *testing.T) {
		clk := &fakeClock{t: time.Unix(1_800_000_000, 0)}
		ctx, p, s := pair(t, func(c *EngineConfig) { c.Refresh, c.DumpInterval, c.Now = 50*time.Millisecond, -1, clk.Now })
		if err := p.e.becomePrimaryMirrored(ctx); err != nil {
			t.Fatal(err)
		}
		u := syncedUDPFlow(t, p, s)
		d0, l0 := p.mem.Reads()
		time.Sleep(ticks)
		clk.Advance(2 * time.Hour) // long past any FullRefresh
		s.mem.Inject(session.Change{Op: session.Delete, Session: u})
		waitFor(t, "the flow re-sent", func() bool { _, ok := s.mem.Get(u.Key); return ok })
		time.Sleep(ticks)
		if d, l := p.mem.Reads(); d != d0 || l == l0 {
			t.Fatalf("dump_interval off: %d periodic dumps and %d lookups, want 0 dumps and the flow looked up", d-d0, l-l0)
		}
	})
	t.Run("a period longer than refresh holds a small table's dumps", func(t *testing.T) {
		clk := &fakeClock{t: time.Unix(1_800_000_000, 0)}
		ctx, p, _ := pair(t, func(c *EngineConfig) { c.Refresh, c.DumpInterval, c.Now = 50*time.Millisecond, time.Minute, clk.Now })
		if err := p.e.becomePrimaryMirrored(ctx); err != nil {
			t.Fatal(err)
		}
		d0 := dumps(p)
		time.Sleep(ticks)
		if d := dumps(p); d != d0 {
			t.Fatalf("%d dumps within dump_interval of the mirroring one", d-d0)
		}
		clk.Advance(time.Minute)
		dumpsAfter(t, p, 1)
	})
	t.Run("a period dumps a large table", func(t *testing.T) {
		// Refresh an hour: the dumps' tick is the shorter dump_interval.
		ctx, p, s := pair(t, func(c *EngineConfig) { c.Refresh, c.LookupMin, c.DumpInterval = time.Hour, 10, 50*time.Millisecond })
		if err := p.e.becomePrimaryMirrored(ctx); err != nil {
			t.Fatal(err)
		}
		for i := range 20 {
			p.mem.Inject(session.Change{Op: session.Upsert, Session: synthSession(100 + i)})
		}
		waitFor(t, "the sessions synced", func() bool { return s.mem.Len() == 20 })
		dumpsAfter(t, p, 3)
	})
}
