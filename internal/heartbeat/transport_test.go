package heartbeat

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hagate/hagate/internal/cluster"
	"github.com/hagate/hagate/internal/nstest"
	"github.com/hagate/hagate/internal/seal"
)

type counts struct {
	mu      sync.Mutex
	dropped map[string]int
}

func (c *counts) Sent(string)             {}
func (c *counts) Received(string, string) {}
func (c *counts) Dropped(link, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropped[reason]++
}
func (c *counts) get(reason string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dropped[reason]
}

// twoHosts makes two namespaces joined by a veth pair named ha on both sides,
// 198.51.100.1 and .2, and removes them when the test ends.
func twoHosts(t *testing.T) (a, b string) {
	t.Helper()
	a, b = nstest.New(t).Name, nstest.New(t).Name
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	run("-n", a, "link", "add", "ha", "type", "veth", "peer", "name", "ha", "netns", b)
	run("-n", a, "addr", "add", "198.51.100.1/24", "dev", "ha")
	run("-n", b, "addr", "add", "198.51.100.2/24", "dev", "ha")
	run("-n", a, "link", "set", "ha", "up")
	run("-n", b, "link", "set", "ha", "up")
	return a, b
}

// inNS runs f on a thread in namespace name; sockets opened by f stay in
// that namespace.
func inNS(t *testing.T, name string, f func()) {
	t.Helper()
	if err := nstest.Do(name, func() error { f(); return nil }); err != nil {
		t.Fatal(err)
	}
}

func endpoint(t *testing.T, ns, id, key string, peer netip.Addr, c *counts) *Transport {
	kr, err := seal.ParseKeys([]byte(key))
	if err != nil {
		t.Fatal(err)
	}
	s, _ := seal.NewSealer(kr, seal.Encrypt, seal.Heartbeat, 7, id, uint64(time.Now().UnixNano()))
	o := seal.NewOpener(kr, seal.Encrypt, seal.Heartbeat, 7, id, time.Minute)
	var tr *Transport
	inNS(t, ns, func() {
		tr, err = Open([]Link{{Interface: "ha", Peers: []netip.Addr{peer}}}, 7703, s, o, c, time.Now)
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tr.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return tr
}

func TestTransportOverVeth(t *testing.T) {
	a, b := twoHosts(t)
	ca, cb := &counts{dropped: map[string]int{}}, &counts{dropped: map[string]int{}}
	key := "correct horse battery staple"
	ta := endpoint(t, a, "gw1", key, netip.MustParseAddr("198.51.100.2"), ca)
	tb := endpoint(t, b, "gw2", key, netip.MustParseAddr("198.51.100.1"), cb)

	hb := cluster.Heartbeat{Role: cluster.Primary, Priority: 200, MonitoredUp: 1, MonitoredTotal: 2, Elected: "gw1", Count: 1}
	deadline := time.After(5 * time.Second)
	for {
		if err := ta.Send(hb); err != nil {
			t.Logf("send: %v", err)
		}
		select {
		case rx := <-tb.Packets():
			if rx.From != "gw1" || rx.Link != "ha" || rx.HB != hb {
				t.Fatalf("got %+v", rx)
			}
			return
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatalf("nothing received; drops %v", cb.dropped)
		}
	}
}

func TestTransportDropsWrongKey(t *testing.T) {
	a, b := twoHosts(t)
	ca, cb := &counts{dropped: map[string]int{}}, &counts{dropped: map[string]int{}}
	ta := endpoint(t, a, "gw1", "an intruder's own key", netip.MustParseAddr("198.51.100.2"), ca)
	tb := endpoint(t, b, "gw2", "correct horse battery staple", netip.MustParseAddr("198.51.100.1"), cb)
	for i := 0; i < 50 && cb.get("key") < 3; i++ {
		ta.Send(cluster.Heartbeat{Role: cluster.Primary, Priority: 255, Uptime: 365 * 24 * time.Hour})
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case rx := <-tb.Packets():
		t.Fatalf("heartbeat with a wrong key delivered: %+v", rx)
	default:
	}
	if cb.get("key") == 0 {
		t.Fatalf("no drop counted: %v", cb.dropped)
	}
}

func TestAcceptChecksSourceFirst(t *testing.T) {
	kr, _ := seal.ParseKeys([]byte("correct horse battery staple"))
	s, _ := seal.NewSealer(kr, seal.Encrypt, seal.Heartbeat, 7, "gw1", 1)
	tr := &Transport{opener: seal.NewOpener(kr, seal.Encrypt, seal.Heartbeat, 7, "gw2", 0), now: time.Now}
	l := &linkConn{Link: Link{Interface: "ha"}, peers: map[netip.Addr]bool{netip.MustParseAddr("198.51.100.1"): true}}
	frame := s.Seal(nil, 0, time.Now(), Encode(nil, Message{HB: cluster.Heartbeat{Priority: 1}}))
	if _, r := tr.accept(l, netip.MustParseAddr("203.0.113.9"), frame); why(r) != "unknown-source" {
		t.Fatalf("reason %q", r)
	}
	if _, r := tr.accept(l, netip.MustParseAddr("198.51.100.1"), frame); why(r) != "" {
		t.Fatalf("reason %q", r)
	}
	if _, r := tr.accept(l, netip.MustParseAddr("198.51.100.1"), frame); why(r) != "replay" {
		t.Fatalf("replay: reason %q", r)
	}
	bad := s.Seal(nil, 0, time.Now(), []byte("not a heartbeat, but sealed with the key"))
	if _, r := tr.accept(l, netip.MustParseAddr("198.51.100.1"), bad); why(r) != "malformed" {
		t.Fatalf("reason %q", r)
	}
}

// A receiver that has just started accepts a heartbeat sent before its
// start (plus StartMargin) only if it echoes the receiver's boot: a capture
// from before the start cannot.
func TestEarlyFramesNeedEcho(t *testing.T) {
	kr, _ := seal.ParseKeys([]byte("correct horse battery staple"))
	start := time.Date(2026, 11, 23, 22, 0, 0, 0, time.UTC)
	boot := uint64(start.UnixNano())
	src := netip.MustParseAddr("198.51.100.1")
	l := &linkConn{Link: Link{Interface: "ha"}, peers: map[netip.Addr]bool{src: true}}
	tr := &Transport{opener: seal.NewOpener(kr, seal.Encrypt, seal.Heartbeat, 7, "gw2", time.Minute),
		now: func() time.Time { return start.Add(time.Second) }, boot: boot, acceptFrom: start.Add(StartMargin)}
	s, _ := seal.NewSealer(kr, seal.Encrypt, seal.Heartbeat, 7, "gw1", uint64(start.Add(-time.Hour).UnixNano()))
	hb := cluster.Heartbeat{Role: cluster.Primary, Priority: 200, Elected: "gw1"}
	cases := []struct {
		name   string
		sent   time.Duration // after the receiver's start
		m      Message
		reason string
	}{
		{"capture from the last half second, no echo", -300 * time.Millisecond, Message{HB: hb}, "early"},
		{"capture echoing another boot", -300 * time.Millisecond, Message{HB: hb, Echo: []uint64{boot - 1}}, "early"},
		{"sent within the margin, no echo yet", 100 * time.Millisecond, Message{HB: hb}, "early"},
		{"version 1 within the margin", 200 * time.Millisecond, Message{HB: hb, Version: versionNoEcho}, "early"},
		{"echoes this boot", 100 * time.Millisecond, Message{HB: hb, Echo: []uint64{7, boot}}, ""},
		{"echoes this boot, sender's clock behind", -300 * time.Millisecond, Message{HB: hb, Echo: []uint64{boot}}, ""},
		{"after the margin, no echo (one-way link)", StartMargin + time.Millisecond, Message{HB: hb}, ""},
		{"version 1 after the margin", StartMargin + 100*time.Millisecond, Message{HB: hb, Version: versionNoEcho}, ""},
	}
	for _, c := range cases {
		frame := s.Seal(nil, 0, start.Add(c.sent), Encode(nil, c.m))
		rx, d := tr.accept(l, src, frame)
		if reason := why(d); reason != c.reason {
			t.Errorf("%s: reason %q, want %q", c.name, reason, c.reason)
		}
		if d == nil && rx.HB != hb {
			t.Errorf("%s: heartbeat %+v", c.name, rx.HB)
		}
	}
	// Every authenticated heartbeat, refused as early or not, is echoed.
	if got := tr.echo(); !slices.Equal(got, []uint64{s.Epoch()}) {
		t.Fatalf("echo %v, want gw1's boot %d", got, s.Epoch())
	}
}

// The echo holds the boots of the MaxEcho peers heard last, and the
// transport remembers at most maxHeard peers.
func TestEchoBounded(t *testing.T) {
	tr := &Transport{}
	for i := range 3 * maxHeard {
		tr.hear(fmt.Sprintf("gw%d", i%(2*maxHeard)), uint64(i))
	}
	if len(tr.heard) > maxHeard {
		t.Fatalf("%d peers remembered, at most %d", len(tr.heard), maxHeard)
	}
	want := []uint64{3*maxHeard - 1, 3*maxHeard - 2, 3*maxHeard - 3, 3*maxHeard - 4}
	if got := tr.echo(); !slices.Equal(got, want[:MaxEcho]) {
		t.Fatalf("echo %v, want %v", got, want[:MaxEcho])
	}
	tr.hear("gw1", 100) // a reboot replaces the boot heard before
	tr.hear("gw1", 101)
	if got := tr.echo(); got[0] != 101 || slices.Contains(got, 100) {
		t.Fatalf("echo after a reboot %v", got)
	}
}

// why returns a drop's reason, "" for none.
func why(d *seal.DropError) string {
	if d == nil {
		return ""
	}
	return d.Reason
}

// A peer is sent the newest version until it is heard sending an older one
// (release 0.1.0 sends version 2 and reads nothing newer), and the newest
// again once it restarts (it may have been upgraded).
func TestSendVersionFollowsThePeer(t *testing.T) {
	tr := &Transport{}
	peer := netip.MustParseAddr("198.51.100.2")
	if v := tr.versionFor(peer); v != version {
		t.Fatalf("peer never heard: version %d, want %d", v, version)
	}
	tr.spoke(peer, 100, versionEcho)
	if v := tr.versionFor(peer); v != versionEcho {
		t.Fatalf("peer of release 0.1.0: version %d, want %d", v, versionEcho)
	}
	tr.spoke(peer, 200, version)
	if v := tr.versionFor(peer); v != version {
		t.Fatalf("peer upgraded: version %d, want %d", v, version)
	}
}

// An authenticated heartbeat of a version this build cannot read is
// delivered as Unreadable (the member is there), and counted as a drop.
func TestUnreadableVersionDelivered(t *testing.T) {
	kr, _ := seal.ParseKeys([]byte(strings.Repeat("ab", 32)))
	s, _ := seal.NewSealer(kr, seal.Encrypt, seal.Heartbeat, 7, "gw1", 1)
	tr := &Transport{opener: seal.NewOpener(kr, seal.Encrypt, seal.Heartbeat, 7, "gw2", 0), now: time.Now}
	l := &linkConn{Link: Link{Interface: "ha"}, peers: map[netip.Addr]bool{netip.MustParseAddr("198.51.100.1"): true}}
	later := Encode(nil, Message{HB: cluster.Heartbeat{Role: cluster.Primary, Elected: "gw1"}})
	later[0] = version + 1 // a later release's format
	rx, r := tr.accept(l, netip.MustParseAddr("198.51.100.1"), s.Seal(nil, 0, time.Now(), later))
	if r == nil || rx.From != "gw1" || rx.Unreadable == "" {
		t.Fatalf("got %+v, drop %v: want gw1 reported unreadable", rx, r)
	}
	// Without the key, the same frame is nobody's: nothing is reported.
	other, _ := seal.ParseKeys([]byte(strings.Repeat("cd", 32)))
	forged, _ := seal.NewSealer(other, seal.Encrypt, seal.Heartbeat, 7, "gw1", 1)
	if rx, _ := tr.accept(l, netip.MustParseAddr("198.51.100.1"), forged.Seal(nil, 0, time.Now(), later)); rx.From != "" {
		t.Fatalf("unauthenticated frame reported: %+v", rx)
	}
}

// Two members of this release that mirror each other in version 2 (one
// restarted, upgraded, and first heard the other, which still sent version
// 2 to its address) find the newest version through the probe: one Send
// in probeEvery carries it beside the older frame, and once a boot is heard
// in the newest version a late older frame of the same boot does not take
// it back.
func TestProbeLiftsMirroredOlderVersion(t *testing.T) {
	tr := &Transport{}
	peer := netip.MustParseAddr("198.51.100.2")
	tr.spoke(peer, 100, versionEcho)
	probes := 0
	for range 3 * probeEvery {
		if tr.probeDue() {
			probes++
		}
	}
	if probes != 3 {
		t.Fatalf("%d probes in %d sends, want 3", probes, 3*probeEvery)
	}
	tr.spoke(peer, 100, version) // the peer read our probe
	tr.spoke(peer, 100, versionEcho)
	if v := tr.versionFor(peer); v != version {
		t.Fatalf("a late version %d frame of the same boot: sending %d, want %d", versionEcho, v, version)
	}
	tr.spoke(peer, 200, versionEcho) // rolled back: a new boot of 0.1.0
	if v := tr.versionFor(peer); v != versionEcho {
		t.Fatalf("peer rolled back to 0.1.0: sending %d, want %d", v, versionEcho)
	}
}
