package daemon

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/hagate/hagate/internal/cluster"
	"github.com/hagate/hagate/internal/config"
)

func TestSyncRoutesFollowTheHeartbeats(t *testing.T) {
	a := netip.MustParseAddr
	links := []config.HeartbeatLink{
		{Interface: "ha", Peers: []netip.Addr{a("198.51.100.2"), a("198.51.100.3")}},
		{Interface: "ha2", Peers: []netip.Addr{a("203.0.113.2"), a("203.0.113.3")}},
	}
	r := newSyncRoutes(links, 703, time.Second)
	t0 := time.Unix(1000, 0)
	want := func(at time.Time, changed bool, addrs ...string) {
		t.Helper()
		got, ch := r.peers(at)
		var w []netip.AddrPort
		for _, s := range addrs {
			w = append(w, netip.AddrPortFrom(a(s), 703))
		}
		slices.SortFunc(w, func(x, y netip.AddrPort) int { return x.Compare(y) })
		if !slices.Equal(got, w) || ch != changed {
			t.Fatalf("peers %v (changed %v), want %v (changed %v)", got, ch, w, changed)
		}
	}
	hear := func(at time.Time, from, link, addr string) {
		r.heardFrom(cluster.Received{Now: at, From: from, Link: link, Addr: a(addr)})
	}

	// Nobody heard yet: the first link's configured peers.
	want(t0, true, "198.51.100.2", "198.51.100.3")
	want(t0, false, "198.51.100.2", "198.51.100.3")

	hear(t0, "gw2", "ha", "198.51.100.2")
	hear(t0, "gw2", "ha2", "203.0.113.2")
	hear(t0, "gw3", "ha", "198.51.100.3")
	want(t0, false, "198.51.100.2", "198.51.100.3")

	// gw2's first link goes silent while the second carries on: its sync
	// moves there. gw3 is silent everywhere: dialled where it was.
	t1 := t0.Add(2 * time.Second)
	hear(t1, "gw2", "ha2", "203.0.113.2")
	want(t1, true, "203.0.113.2", "198.51.100.3")

	// The first link works again: back to it.
	hear(t1.Add(time.Millisecond), "gw2", "ha", "198.51.100.2")
	want(t1.Add(time.Millisecond), true, "198.51.100.2", "198.51.100.3")

	// A heartbeat with no address (the simulation's) changes nothing.
	r.heardFrom(cluster.Received{Now: t1, From: "gw4", Link: "ha"})
	want(t1, false, "198.51.100.2", "198.51.100.3")
}
