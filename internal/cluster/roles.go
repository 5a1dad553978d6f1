package cluster

import (
	"fmt"
	"time"

	"github.com/hagate/hagate/internal/election"
)

// view is what every role's step starts from: the members heard, the
// election over them, and the member claiming the primary role.
type view struct {
	now      time.Time
	alive    []string             // members heard within the dead interval, sorted
	cands    []election.Candidate // the members the election runs over
	claimant string               // the first alive member claiming primary
	res      election.Result
}

// evaluate expires silent members, runs the election and steps the role.
func (n *Node) evaluate(now time.Time) {
	n.expirePeers(now)
	v := n.look(now)
	switch n.role {
	case Hello:
		n.stepHello(v)
	case Subordinate:
		n.stepSubordinate(v)
	case Primary:
		n.stepPrimary(v)
	}
	n.track(now, v.claimant)
}

// expirePeers marks members silent for lost_threshold heartbeats (and half
// an interval for jitter) lost, and notes a split brain as far as one member
// can tell: it has had peers and now hears none on any heartbeat link.
func (n *Node) expirePeers(now time.Time) {
	dead := n.cfg.DeadInterval() + n.cfg.Interval/2
	for _, id := range n.sortedPeerIDs() {
		p := n.peers[id]
		if !p.alive {
			continue
		}
		if p.left {
			p.alive = false
			continue
		}
		if now.Sub(p.lastHeard) > dead {
			p.alive = false
			n.notice(true, true, "member %s lost: silent for %s on all heartbeat links", id, now.Sub(p.lastHeard).Round(time.Millisecond))
		}
	}
	if split := n.everHeard && len(n.alivePeers()) == 0; split != n.split {
		n.split = split
		if split {
			n.notice(true, true, "no member heard on any heartbeat link: if the others still run, the cluster is split (%s)", n.splitPolicy())
		} else {
			n.notice(false, true, "members heard again: cluster joined")
		}
	}
}

// look gathers the candidates (members in hello do not stand) and runs the
// election over them. A member in hello is not a candidate itself either.
func (n *Node) look(now time.Time) view {
	v := view{now: now, alive: n.alivePeers()}
	v.cands, v.claimant = n.standing(now, v.alive)
	v.res = election.Elect(v.cands, n.rules())
	n.setElected(v.res)
	return v
}

// standing lists the candidates among this member and the alive peers
// (members in hello do not stand), and the first peer claiming the primary
// role.
func (n *Node) standing(now time.Time, alive []string) (cands []election.Candidate, claimant string) {
	cands = []election.Candidate{}
	if n.role != Hello {
		cands = append(cands, n.selfCandidate(now))
	}
	for _, id := range alive {
		p := n.peers[id]
		if p.hb.Role == Hello {
			continue
		}
		cands = append(cands, p.candidate(id, now))
		if p.hb.Role == Primary && claimant == "" {
			claimant = id
		}
	}
	return cands, claimant
}

// stepHello ends the hello holddown when it has passed, or earlier when a
// primary already runs and this member would not replace it: a subordinate
// holds nothing, so waiting longer gains nothing. A member that leaves hello
// is judged at once as a subordinate, as it may be the one to take over.
func (n *Node) stepHello(v view) {
	switch {
	case !v.now.Before(n.holddown):
		n.becomeSubordinate(v.now, KindStartup, "hello holddown over")
	case v.claimant != "" && !n.wouldReplace(v):
		n.becomeSubordinate(v.now, KindStartup, fmt.Sprintf("joined the cluster of primary %s", v.claimant))
	default:
		return
	}
	v.cands = append(v.cands, n.selfCandidate(v.now))
	v.res = election.Elect(v.cands, n.rules())
	n.setElected(v.res)
	n.stepSubordinate(v)
}

// wouldReplace reports whether this member, judged as it will be once it has
// the sessions (it takes them during the holddown), would win over the
// members running now. One that would stays in hello for the whole
// holddown, as without session pickup.
func (n *Node) wouldReplace(v view) bool {
	self := n.selfCandidate(v.now)
	self.SyncPending = false
	return election.Elect(append([]election.Candidate{self}, v.cands...), n.rules()).Primary == n.cfg.NodeID
}

// stepSubordinate takes over only once no other member claims the role, so
// that the addresses are never held twice while the heartbeat links work: a
// primary that lost the election steps down with a heartbeat at once.
func (n *Node) stepSubordinate(v view) {
	quorate, _ := n.quorum(len(v.alive))
	if !quorate || v.claimant != "" || n.deferToStarting(v.now, v.cands, v.alive) {
		return
	}
	if id := n.unreadablePeer(v.now); id != "" {
		return // its state is unknown: it may be the primary
	}
	switch {
	case v.res.Primary == n.cfg.NodeID && !n.handedToAnother():
		kind, reason := n.takeoverReason(v.now, v.res)
		n.remoteTakeover(v.now)
		n.becomePrimary(v.now, kind, reason)
	case n.deadlocked(v):
		n.becomePrimary(v.now, KindStartup, fmt.Sprintf("no primary for %s and the members' elections disagree (check that uptime_margin, override and priorities are the same everywhere): most members elect %s",
			v.now.Sub(n.noPrimary).Round(time.Millisecond), n.cfg.NodeID))
	}
}

// deadlocked reports whether the cluster has had no primary for a dead
// interval while this member, a subordinate for as long, is the nominee:
// the members' elections disagree and the nominee breaks the tie.
func (n *Node) deadlocked(v view) bool {
	dead := n.cfg.DeadInterval()
	return n.primary == "" && v.now.Sub(n.noPrimary) >= dead && v.now.Sub(n.roleSince) >= dead &&
		n.nominee(v.alive) == n.cfg.NodeID
}

// stepPrimary steps down when quorum is lost or another member wins the
// election, unless failover_hold_time or the nominee rule keeps it.
func (n *Node) stepPrimary(v view) {
	quorate, votes := n.quorum(len(v.alive))
	if !quorate {
		n.becomeSubordinate(v.now, KindQuorum, fmt.Sprintf("no quorum: %s", votes))
		return
	}
	if v.res.Primary == n.cfg.NodeID {
		return
	}
	kind, reason := n.loseReason(v.now, v.res)
	if n.remoteHold(v.now, v.res.Primary, kind) {
		return
	}
	if kind == KindPreempt {
		if n.nominee(v.alive) == n.cfg.NodeID {
			return // the others' elections keep this member: see nominee
		}
		if v.now.Sub(n.roleSince) < n.cfg.FailoverHoldTime {
			if !n.holdNoted {
				n.holdNoted = true
				n.notice(false, false, "%s; held back by failover_hold_time until %s", reason, n.roleSince.Add(n.cfg.FailoverHoldTime).Format(time.RFC3339))
			}
			return
		}
	}
	n.becomeSubordinate(v.now, kind, reason)
}

// becomePrimary takes the primary role: with session pickup the synced
// sessions are made usable first and the addresses come up on their
// SessionsReady; without, the addresses come up at once.
func (n *Node) becomePrimary(now time.Time, kind Kind, reason string) {
	from := n.role
	n.syncPending = false // a primary has the sessions by definition
	n.setRole(now, Primary, kind, reason)
	n.accepting = false
	if n.cfg.SessionPickup {
		n.promoteGen++
		n.awaiting = n.promoteGen
		n.emit(PromoteSessions{Gen: n.promoteGen})
	} else {
		n.claimAddresses()
	}
	n.emit(Notify{Role: Primary, Previous: from, Kind: kind, Reason: reason})
}

// becomeSubordinate takes the subordinate role. A primary that steps down
// releases the addresses and, with session pickup, waits for the new
// primary's bulk sync: it drops what it forwarded once that bulk begins
// (see AcceptSessions). A
// member leaving hello keeps what it was told: it takes the primary's
// sessions during its holddown already.
func (n *Node) becomeSubordinate(now time.Time, kind Kind, reason string) {
	from := n.role
	if from == Primary {
		n.syncPending = n.cfg.SessionPickup
	}
	n.setRole(now, Subordinate, kind, reason)
	n.awaiting = 0
	n.releaseAddresses(reason)
	n.signalLinkFailure(from, kind)
	n.emit(Notify{Role: Subordinate, Previous: from, Kind: kind, Reason: reason})
}

func (n *Node) setRole(now time.Time, to Role, kind Kind, reason string) {
	from := n.role
	n.role = to
	n.roleSince = now
	n.holdNoted = false
	n.sendNow = true
	n.emit(RoleChange{From: from, To: to, Kind: kind, Reason: reason})
}

// unreadablePeer names a member heard within the dead interval whose
// heartbeats this build cannot read (a later release). Such a member is
// there, and may hold the primary role: never a reason to take over.
func (n *Node) unreadablePeer(now time.Time) string {
	for _, id := range n.sortedPeerIDs() {
		if p := n.peers[id]; p.unreadable != "" && now.Sub(p.unreadableAt) <= n.cfg.DeadInterval() {
			return id
		}
	}
	return ""
}
