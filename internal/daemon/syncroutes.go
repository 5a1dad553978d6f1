package daemon

import (
	"net/netip"
	"slices"
	"time"

	"github.com/hagate/hagate/internal/cluster"
	"github.com/hagate/hagate/internal/config"
)

// syncRoutes chooses the address at which the primary dials each member's
// session sync: the member's address on the highest-priority session-sync
// link on which its heartbeats still arrive. With two HA links, a cut of
// the first then moves the sync to the second instead of stopping it, so
// sessions opened during the cut are synced too. The heartbeats tell which
// addresses belong to the same member; a member never heard is dialled at
// its configured address on the first link, as the configuration names no
// members.
type syncRoutes struct {
	links []config.HeartbeatLink // session-sync links, highest priority first
	port  uint16
	dead  time.Duration // a link silent this long no longer counts
	heard map[string]map[string]heardOn
	last  []netip.AddrPort
}

type heardOn struct {
	addr netip.Addr
	at   time.Time
}

func newSyncRoutes(links []config.HeartbeatLink, port uint16, dead time.Duration) *syncRoutes {
	return &syncRoutes{links: links, port: port, dead: dead, heard: map[string]map[string]heardOn{}}
}

// heardFrom notes an authenticated heartbeat.
func (r *syncRoutes) heardFrom(rx cluster.Received) {
	if !rx.Addr.IsValid() {
		return
	}
	m := r.heard[rx.From]
	if m == nil {
		m = map[string]heardOn{}
		r.heard[rx.From] = m
	}
	m[rx.Link] = heardOn{addr: rx.Addr, at: rx.Now}
}

// peers returns the addresses to dial, and whether they changed since the
// last call.
func (r *syncRoutes) peers(now time.Time) ([]netip.AddrPort, bool) {
	known := map[netip.Addr]bool{}
	var out []netip.AddrPort
	for _, on := range r.heard {
		var best, fallback netip.Addr
		for _, l := range r.links {
			h, ok := on[l.Interface]
			if !ok {
				continue
			}
			known[h.addr] = true
			if !fallback.IsValid() {
				fallback = h.addr
			}
			if !best.IsValid() && now.Sub(h.at) <= r.dead {
				best = h.addr
			}
		}
		if !best.IsValid() {
			best = fallback // silent on every sync link: dial where it was
		}
		if best.IsValid() {
			out = append(out, netip.AddrPortFrom(best, r.port))
		}
	}
	if len(r.links) > 0 {
		for _, a := range r.links[0].Peers {
			if !known[a] {
				out = append(out, netip.AddrPortFrom(a, r.port))
			}
		}
	}
	slices.SortFunc(out, func(a, b netip.AddrPort) int { return a.Compare(b) })
	changed := !slices.Equal(out, r.last)
	r.last = out
	return out, changed
}
