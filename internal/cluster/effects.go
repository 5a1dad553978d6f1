package cluster

import (
	"net/netip"
	"slices"
	"time"
)

// The effects of a member's role beyond its heartbeats: the virtual
// addresses, the session pickup, the session sync's routes. Each is asked
// for once, as an action, when what it depends on changes.

// claimAddresses asks for the virtual addresses.
func (n *Node) claimAddresses() {
	n.holding = true
	n.unfence()
	n.emit(ClaimAddresses{})
}

// releaseAddresses gives the virtual addresses up, if they were asked for.
func (n *Node) releaseAddresses(reason string) {
	if n.holding {
		n.holding = false
		n.emit(ReleaseAddresses{Reason: reason})
	}
	n.fence()
}

// sessionsReady claims the addresses once the sessions a PromoteSessions
// asked for are usable, if this member is still the primary that asked.
func (n *Node) sessionsReady(e SessionsReady) {
	if e.Gen == 0 || e.Gen != n.awaiting || n.role != Primary {
		return
	}
	n.awaiting = 0
	n.claimAddresses()
}

// acceptSessions asks the session pickup to take the sessions of the
// member acting as primary, as this node knows it.
func (n *Node) acceptSessions() {
	if !n.cfg.SessionPickup {
		return
	}
	n.accepting = true
	n.acceptFrom = n.primary
	n.emit(AcceptSessions{From: n.primary})
}

// followPrimary keeps the session pickup of a member that is not primary on
// the member acting as primary: after a step down, and whenever the acting
// primary changes.
func (n *Node) followPrimary() {
	if n.role == Primary || (n.accepting && n.acceptFrom == n.primary) {
		return
	}
	n.acceptSessions()
}

// routeSync asks for the addresses at which the members' session sync is
// dialled when they change: each member's address on the highest-priority
// sync link on which its heartbeats still arrive, so that a cut of the
// first HA link moves the sync to the second instead of stopping it. A
// member silent on every sync link is dialled where it was last heard; one
// never heard, at its configured address on the first sync link. Those of
// members not alive are listed as absent too, so that a member is dialled
// as soon as its first heartbeat arrives.
func (n *Node) routeSync(now time.Time) {
	if !n.cfg.SessionPickup || len(n.cfg.SyncLinks) == 0 {
		return
	}
	known := map[netip.Addr]bool{}
	var out, absent []netip.Addr
	for _, id := range n.sortedPeerIDs() {
		p := n.peers[id]
		var best, fallback netip.Addr
		for _, l := range n.cfg.SyncLinks {
			pl := p.links[l.Interface]
			if pl == nil || !pl.addr.IsValid() {
				continue
			}
			known[pl.addr] = true
			if !fallback.IsValid() {
				fallback = pl.addr
			}
			if !best.IsValid() && now.Sub(pl.lastHeard) <= n.cfg.DeadInterval() {
				best = pl.addr
			}
		}
		if !best.IsValid() {
			best = fallback
		}
		if best.IsValid() {
			out = append(out, best)
			if !p.alive || p.left {
				absent = append(absent, best)
			}
		}
	}
	for _, a := range n.cfg.SyncLinks[0].Peers {
		if !known[a] {
			out = append(out, a)
			absent = append(absent, a)
		}
	}
	byAddr := func(a, b netip.Addr) int { return a.Compare(b) }
	slices.SortFunc(out, byAddr)
	out = slices.Compact(out)
	slices.SortFunc(absent, byAddr)
	absent = slices.Compact(absent)
	if slices.Equal(out, n.routes) && slices.Equal(absent, n.absent) {
		return
	}
	n.routes, n.absent = out, absent
	n.emit(SyncRoutes{Peers: slices.Clone(out), Absent: slices.Clone(absent)})
}
