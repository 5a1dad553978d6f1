package heartbeat

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hagate/hagate/internal/cluster"
	"github.com/hagate/hagate/internal/seal"
)

const testKey = "9f3c1d6e2b7a40c58e1f9a3d7c2b6e0415a8d3f7c9e1b2a4068d5f3e7c1a9b2d"

var (
	gw1ha  = netip.MustParseAddr("198.51.100.1")
	gw3ha  = netip.MustParseAddr("198.51.100.3")
	gw1ha2 = netip.MustParseAddr("203.0.113.1")
	gw3ha2 = netip.MustParseAddr("203.0.113.3")
)

// bench is a transport with links ha and ha2, each with peers gw1 and gw3,
// without sockets: frames go straight to accept, on a clock the test moves.
type bench struct {
	tr    *Transport
	ha    *linkConn
	ha2   *linkConn
	clock time.Time
	kr    *seal.Keyring
}

func newBench(t *testing.T) *bench {
	t.Helper()
	kr, err := seal.ParseKeys([]byte(testKey))
	if err != nil {
		t.Fatal(err)
	}
	b := &bench{kr: kr, clock: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}
	b.ha = &linkConn{Link: Link{Interface: "ha"}, index: 0, peers: map[netip.Addr]bool{gw1ha: true, gw3ha: true}}
	b.ha2 = &linkConn{Link: Link{Interface: "ha2"}, index: 1, peers: map[netip.Addr]bool{gw1ha2: true, gw3ha2: true}}
	b.tr = &Transport{opener: seal.NewOpener(kr, seal.Encrypt, seal.Heartbeat, 7, "gw2", time.Minute),
		now: func() time.Time { return b.clock }, links: []*linkConn{b.ha, b.ha2}}
	return b
}

func (b *bench) sealer(t *testing.T, id string) *seal.Sealer {
	s, err := seal.NewSealer(b.kr, seal.Encrypt, seal.Heartbeat, 7, id, uint64(b.clock.Add(-time.Hour).UnixNano()))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// frame seals a heartbeat of s for its link stream; noEcho makes it the
// version 1 payload of release 0.1.0.
func (b *bench) frame(s *seal.Sealer, stream uint32, noEcho bool) []byte {
	hb := cluster.Heartbeat{Role: cluster.Subordinate, Priority: 100}
	return s.Seal(nil, stream, b.clock, Encode(nil, Message{HB: hb, Version: map[bool]uint8{true: versionNoEcho, false: versionEcho}[noEcho]}))
}

// Finding 8: a frame sealed for link ha is refused on ha2, and a member's
// frame re-sent from another member's address is refused.
func TestHeartbeatBoundToLinkAndAddress(t *testing.T) {
	b := newBench(t)
	gw1 := b.sealer(t, "gw1")
	// gw1 sends on its first link (stream 0) and its second (stream 1).
	mustAccept(t, b, b.ha, gw1ha, b.frame(gw1, 0, false))
	mustAccept(t, b, b.ha2, gw1ha2, b.frame(gw1, 1, false))

	if _, d := b.tr.accept(b.ha2, gw1ha2, b.frame(gw1, 0, false)); why(d) != "wrong-link" {
		t.Fatalf("frame sealed for ha accepted on ha2: %v", d)
	}
	if _, d := b.tr.accept(b.ha, gw3ha, b.frame(gw1, 0, false)); why(d) != "wrong-address" {
		t.Fatalf("gw1's frame from gw3's address: %v", d)
	}
	// gw1's own frames still pass on both links.
	mustAccept(t, b, b.ha, gw1ha, b.frame(gw1, 0, false))
	mustAccept(t, b, b.ha2, gw1ha2, b.frame(gw1, 1, false))

	// A binding silent for a dead interval gives way: gw1 moved address.
	b.clock = b.clock.Add(DefaultDeadInterval + time.Millisecond)
	mustAccept(t, b, b.ha, gw3ha, b.frame(gw1, 0, false))
}

// Release 0.1.0 stamps its own index of the link, and a member may list its
// links in another order than its peers: such a sender is still heard on
// both links, its streams bound as they come.
func TestOldReleaseSenderWithOtherLinkOrder(t *testing.T) {
	b := newBench(t)
	old := b.sealer(t, "gw1")
	for range 3 {
		mustAccept(t, b, b.ha, gw1ha, b.frame(old, 1, true)) // gw1's link 1 is our ha
		mustAccept(t, b, b.ha2, gw1ha2, b.frame(old, 0, true))
	}
	if _, d := b.tr.accept(b.ha, gw1ha, b.frame(old, 0, true)); why(d) != "wrong-link" {
		t.Fatalf("ha2's stream on ha: %v", d)
	}
}

func mustAccept(t *testing.T, b *bench, l *linkConn, from netip.Addr, frame []byte) {
	t.Helper()
	if _, d := b.tr.accept(l, from, frame); d != nil {
		t.Fatalf("refused on %s from %s: %v", l.Interface, from, d)
	}
}

// Finding 6: node ids from the wire are checked before they reach logs,
// metric labels or the notify command's environment.
func TestBadNodeIDDropped(t *testing.T) {
	b := newBench(t)
	for _, id := range []string{"gw1\n", "gw\x001", "gw 1", "gw1;reboot"} {
		s := b.sealer(t, id)
		if _, d := b.tr.accept(b.ha, gw1ha, b.frame(s, 0, false)); why(d) != "node-id" {
			t.Errorf("sender %q: %v", id, d)
		}
	}
	s := b.sealer(t, "gw1")
	bad := s.Seal(nil, 0, b.clock, Encode(nil, Message{HB: cluster.Heartbeat{Role: cluster.Primary, Elected: "gw1\x00x"}}))
	if _, d := b.tr.accept(b.ha, gw1ha, bad); why(d) != "node-id" {
		t.Errorf("elected id with a NUL: %v", d)
	}
}

type sourceCounts struct {
	counts
	bySource map[string]int
}

func (c *sourceCounts) DroppedFrom(link, reason, source string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bySource[source+" "+reason]++
}

type syncBuffer struct {
	mu sync.Mutex
	bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.Buffer.Write(p)
}

// "Make failures visible": a member with the wrong key shows as "unknown key
// id (wrong key?)" under its address, counted by source (a bounded set) and
// logged once a minute, not once a frame.
func TestDropReasonsVisible(t *testing.T) {
	b := newBench(t)
	c := &sourceCounts{counts: counts{dropped: map[string]int{}}, bySource: map[string]int{}}
	b.tr.counters = c
	var logs syncBuffer
	b.tr.Configure(Options{Log: slog.New(slog.NewTextHandler(&logs, nil))})
	wrong, _ := seal.ParseKeys([]byte("an intruder's key, not the cluster's"))
	intruder, _ := seal.NewSealer(wrong, seal.Encrypt, seal.Heartbeat, 7, "gw1", 1)
	drop := func(l *linkConn, from netip.Addr, frame []byte) {
		_, d := b.tr.accept(l, from, frame)
		if d == nil {
			t.Fatal("frame accepted")
		}
		b.tr.dropped(l, from, d)
	}
	// Someone floods from 100 addresses outside the configuration first.
	for i := range 100 {
		drop(b.ha, netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), []byte("x"))
	}
	for range 1204 {
		drop(b.ha, gw1ha, b.frame(intruder, 0, false))
		b.clock = b.clock.Add(10 * time.Millisecond) // 12 s in all
	}
	got := b.tr.DropReasons()
	sources := map[string]bool{}
	var line string
	for _, d := range got {
		sources[d.Source] = true
		if d.Source == gw1ha.String() {
			line = d.String()
		}
	}
	if line != "198.51.100.1: 1,204 frames dropped: unknown key id (wrong key?)" {
		t.Fatalf("gw1's summary %q", line)
	}
	if len(sources) > maxDropSources+2 || !sources[OtherSource] {
		t.Fatalf("%d sources kept apart (bound %d strangers + peers + %q)", len(sources), maxDropSources, OtherSource)
	}
	if c.bySource["198.51.100.1 key"] != 1204 || len(c.bySource) > maxDropSources+2 {
		t.Fatalf("metrics by source: %d labels, %d for gw1", len(c.bySource), c.bySource["198.51.100.1 key"])
	}
	if n := strings.Count(logs.String(), "source=198.51.100.1 "); n != 1 {
		t.Fatalf("%d log lines for 1204 drops in 12 s, want 1:\n%s", n, logs.String())
	}
	b.clock = b.clock.Add(time.Minute)
	drop(b.ha, gw1ha, b.frame(intruder, 0, false))
	if n := strings.Count(logs.String(), "source=198.51.100.1 "); n != 2 {
		t.Fatalf("%d log lines after a minute, want 2", n)
	}
	if !strings.Contains(logs.String(), "dropped=1") {
		t.Fatalf("second line does not count the drops since the first:\n%s", logs.String())
	}
}
