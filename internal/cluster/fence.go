package cluster

// Fencing: only the primary forwards. A member that is not primary drops
// the traffic it would forward between the cluster's data interfaces (a
// client's stale ARP entry, a switch's stale forwarding entry, a static
// route at the wrong member), so a session never runs through a member
// whose conntrack table is only a copy. Its own traffic and the HA links
// are left alone: the daemon's fence covers forwarded traffic of the data
// interfaces only.
//
// The fence follows the addresses: it is lifted right before the addresses
// are claimed and raised right after they are released. With session
// pickup that is after the synced sessions are usable (SessionsReady), not
// with PromoteSessions: a packet forwarded while the sessions are still
// being made usable would find no session, and under strict tracking be
// dropped as invalid or start a new session that the synced one then
// collides with. Forwarding and the addresses come together, after the
// sessions; a member starts fenced.

// Fence: drop forwarded traffic of the data interfaces (this member is not
// primary).
type Fence struct{}

// Unfence: forward again (this member is about to claim the addresses).
type Unfence struct{}

// SignalLinkFailure: this member lost the primary role through a link
// failure; bring its other data interfaces down for a moment so that the
// switches on them flush what they learnt and relearn the new primary at
// once (FGCP's link-failed-signal).
type SignalLinkFailure struct{}

func (Fence) isAction()             {}
func (Unfence) isAction()           {}
func (SignalLinkFailure) isAction() {}

// fence raises the fence, if fencing is on and it is down.
func (n *Node) fence() {
	if n.cfg.Fence && !n.fenced {
		n.fenced = true
		n.emit(Fence{})
	}
}

// unfence lifts the fence, if it is up.
func (n *Node) unfence() {
	if n.fenced {
		n.fenced = false
		n.emit(Unfence{})
	}
}

// signalLinkFailure asks for the link-failed signal when this member leaves
// the primary role because of its own links (monitored links or ping
// servers), if configured.
func (n *Node) signalLinkFailure(from Role, kind Kind) {
	if n.cfg.LinkFailedSignal && from == Primary && kind == KindLink {
		n.emit(SignalLinkFailure{})
	}
}

// Fenced reports whether this member has asked for the fence (and not
// lifted it since).
func (n *Node) Fenced() bool { return n.fenced }
