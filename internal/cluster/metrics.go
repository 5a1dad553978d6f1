package cluster

import "maps"

// Accessors for the metrics: what the node knows beyond Status, read by
// the daemon's loop (the node is not safe for concurrent use).

// DualPrimary names another member claiming the primary role while this
// one holds it ("" when none, or when this member is not primary).
func (n *Node) DualPrimary() string {
	if n.role != Primary {
		return ""
	}
	return n.dual
}

// Quorate reports whether this member has quorum now (always true with
// quorum off).
func (n *Node) Quorate() bool {
	ok, _ := n.quorum(len(n.alivePeers()))
	return ok
}

// Monitored is each monitored interface's state (up or not).
func (n *Node) Monitored() map[string]bool { return maps.Clone(n.monitored) }

// SyncPending reports whether, with session pickup, this member still
// waits for the primary's bulk sync.
func (n *Node) SyncPending() bool { return n.syncPending }

// PreviousPrimary is the member that acted as primary before the current
// one (or before there was none); "" before the first.
func (n *Node) PreviousPrimary() string { return n.lastPrimary }

// ChangeKind classifies, as seen from here, why the acting primary changed
// from prev to the current one when this member's own role did not change
// (its RoleChange says why otherwise): the previous primary left, went
// silent, was set to fail over, had fewer links up, or was preempted.
func (n *Node) ChangeKind(prev string) Kind {
	p := n.peers[prev]
	if prev == "" || p == nil {
		return KindStartup
	}
	win := n.peers[n.primary]
	switch {
	case p.left:
		return KindShutdown
	case !p.alive:
		return KindDevice
	case p.hb.FailoverSet:
		return KindManual
	case win != nil && (p.hb.MonitoredUp < win.hb.MonitoredUp || p.hb.PingUp < win.hb.PingUp):
		return KindLink
	}
	return KindPreempt
}
