package sessions

import (
	"net/netip"
	"slices"
	"testing"
	"time"
)

// The engine's command and event face (drive.go), over the memory backend
// and loopback connections.

// eventWait bounds every wait for an event: generous, the tests assert
// what arrives, never how fast.
const eventWait = 10 * time.Second

// nextEvent returns the next event of type T from evs, skipping the
// others.
func nextEvent[T Event](t *testing.T, evs <-chan Event) T {
	t.Helper()
	deadline := time.After(eventWait)
	for {
		select {
		case ev := <-evs:
			if got, ok := ev.(T); ok {
				return got
			}
		case <-deadline:
			var zero T
			t.Fatalf("no %T event within %s", zero, eventWait)
			return zero
		}
	}
}

func TestDrivePromoteReportsReady(t *testing.T) {
	n := startNode(t, t.Context(), "gw1", nil)
	evs := n.e.Events()
	n.e.Do(Promote{Gen: 3})
	r := nextEvent[Ready](t, evs)
	if r.Gen != 3 || r.Err != nil {
		t.Fatalf("got %+v, want Ready{Gen: 3} without error", r)
	}
	if got := n.e.Stats().Role; got != "primary" {
		t.Fatalf("role %q after Promote, want primary", got)
	}
}

func TestDriveCommandsInOrder(t *testing.T) {
	n := startNode(t, t.Context(), "gw1", nil)
	evs := n.e.Events()
	// A closed loopback port: the primary dials it in vain, which is all
	// this test needs of a peer.
	peer := netip.MustParseAddrPort("127.0.0.1:1")
	local := netip.MustParseAddr("198.51.100.0")
	own := synthSession(1) // to 198.51.100.0, answered untranslated

	// Queued all at once: each Ready shows that what was queued before its
	// Promote is done, and the Readies come in the order of their Gens.
	n.e.Do(AcceptFrom{From: "gw2"})
	n.e.Do(DialPeers{Peers: []netip.AddrPort{peer}})
	n.e.Do(LocalAddrs{Addrs: []netip.Addr{local}})
	n.e.Do(Promote{Gen: 1})
	n.e.Do(AcceptFrom{From: "gw3"})
	n.e.Do(DialPeers{})
	n.e.Do(Promote{Gen: 2})
	n.e.Do(AcceptFrom{From: "gw4"})
	n.e.Do(LocalAddrs{})
	n.e.Do(Promote{Gen: 4})
	n.e.Do(AcceptFrom{From: "gw5"})

	r := nextEvent[Ready](t, evs)
	if r.Gen != 1 {
		t.Fatalf("first Ready is Gen %d, want 1", r.Gen)
	}
	gens := []uint64{r.Gen}
	for len(gens) < 3 {
		gens = append(gens, nextEvent[Ready](t, evs).Gen)
	}
	if !slices.Equal(gens, []uint64{1, 2, 4}) {
		t.Fatalf("Ready events for Gens %v, want [1 2 4]", gens)
	}
	waitFor(t, "subordinate of gw5 after the last command", func() bool {
		st := n.e.Stats()
		return st.Role == "subordinate" && st.Primary == "gw5"
	})
	if st := n.e.Stats(); len(st.Peers) != 0 {
		t.Errorf("peers %+v after DialPeers{}, want none", st.Peers)
	}
	if n.e.sel.isLocal(&own) {
		t.Errorf("198.51.100.0 still local after LocalAddrs{}")
	}
}

func TestDriveDialPeersAndLocalAddrs(t *testing.T) {
	n := startNode(t, t.Context(), "gw1", nil)
	evs := n.e.Events()
	peer := netip.MustParseAddrPort("127.0.0.1:1")
	own := synthSession(1)
	n.e.Do(DialPeers{Peers: []netip.AddrPort{peer}})
	n.e.Do(LocalAddrs{Addrs: []netip.Addr{netip.MustParseAddr("198.51.100.0")}})
	n.e.Do(Promote{Gen: 1})
	// Carried out in order: by Ready, the commands before Promote are done.
	nextEvent[Ready](t, evs)
	st := n.e.Stats()
	if len(st.Peers) != 1 || st.Peers[0].Addr != peer.String() {
		t.Errorf("peers %+v, want %s", st.Peers, peer)
	}
	if !n.e.sel.isLocal(&own) {
		t.Errorf("a session to 198.51.100.0 is not local after LocalAddrs")
	}
}

func TestDriveEventsWithoutReaderDrop(t *testing.T) {
	n := startNode(t, t.Context(), "gw1", nil)
	// More Readies than the event channel holds, and nobody reads: were
	// they kept, the engine would block on the first one beyond its room
	// and never carry out the AcceptFrom after them.
	room := cap(n.e.events)
	for i := range room + 10 {
		n.e.Do(Promote{Gen: uint64(i + 1)})
	}
	n.e.Do(AcceptFrom{From: "gw2"})
	waitFor(t, "the command after the unread events carried out", func() bool {
		st := n.e.Stats()
		return st.Role == "subordinate" && st.Primary == "gw2"
	})
	if got := len(n.e.Events()); got != 0 {
		t.Fatalf("%d events kept for a reader that came late, want them dropped", got)
	}
}

func TestDriveBulkDone(t *testing.T) {
	_, p, s := pair(t, nil)
	sevs := s.e.Events()
	pevs := p.e.Events()
	const n = 50
	for i := range n {
		p.mem.Inject(upsert(synthSession(i)))
	}
	p.e.Do(Promote{Gen: 1})
	if r := nextEvent[Ready](t, pevs); r.Gen != 1 {
		t.Fatalf("primary: got %+v, want Ready{Gen: 1}", r)
	}
	b := nextEvent[BulkDone](t, sevs)
	if b.Sessions != n {
		t.Fatalf("BulkDone carries %d sessions, want %d", b.Sessions, n)
	}
	if got := s.mem.Len(); got != n {
		t.Fatalf("subordinate holds %d sessions after BulkDone, want %d", got, n)
	}
}

func TestDriveSyncLost(t *testing.T) {
	_, p, s := pair(t, nil)
	sevs := s.e.Events()
	pevs := p.e.Events()
	p.mem.Inject(upsert(synthSession(1)))
	p.e.Do(Promote{Gen: 1})
	nextEvent[Ready](t, pevs)
	nextEvent[BulkDone](t, sevs) // connected and synced
	p.tap.cutAll()
	l := nextEvent[SyncLost](t, pevs)
	if l.Peer != s.addr(t).String() || l.Err == nil {
		t.Fatalf("got %+v, want SyncLost from %s with its error", l, s.addr(t))
	}
}

// A member the heartbeats do not hear is not dialled; once heard, it is
// dialled at once and gets its bulk. Were absent members dialled, the
// primary would connect within its first 100 ms redial, long before the
// member is reported heard here.
func TestDriveDialsAbsentMemberOnceHeard(t *testing.T) {
	_, p, s := pair(t, nil)
	sevs := s.e.Events()
	pevs := p.e.Events()
	p.mem.Inject(upsert(synthSession(1)))
	sub := s.addr(t)
	p.e.Do(DialPeers{Peers: []netip.AddrPort{sub}, Absent: []netip.AddrPort{sub}})
	p.e.Do(Promote{Gen: 1})
	nextEvent[Ready](t, pevs)
	time.Sleep(500 * time.Millisecond) // five first redials' worth
	if st := p.e.Stats(); len(st.Peers) != 1 || st.Peers[0].Connected || st.Peers[0].Bulks != 0 {
		t.Fatalf("absent member dialled: peers %+v", st.Peers)
	}
	p.e.Do(DialPeers{Peers: []netip.AddrPort{sub}})
	if b := nextEvent[BulkDone](t, sevs); b.Sessions != 1 {
		t.Fatalf("BulkDone carries %d sessions once heard, want 1", b.Sessions)
	}
}
