package cluster

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/hagate/hagate/internal/election"
)

// Node is one member's state machine. Create it with New, feed it events with
// Step and perform the actions it returns. Not safe for concurrent use.
type Node struct {
	cfg Config

	role        Role
	roleSince   time.Time
	uptimeStart time.Time
	holddown    time.Time // end of hello_holddown
	failoverSet bool
	stopped     bool
	syncPending bool // session pickup: the primary's bulk not received yet

	monitored map[string]bool
	linkUp    map[string]bool
	pingUp    int // ping servers answering
	pingDown  int // their summed priority counted down
	witnessUp bool
	// checkFailing holds the check commands failing now.
	checkFailing map[string]bool
	// remoteFailover is when this member took the primary role from
	// remoteLoser because its remote link failed (see remote.go).
	remoteFailover time.Time
	remoteLoser    string
	remoteNoted    string // the hold last logged, so each is logged once

	peers     map[string]*peer
	everHeard bool
	split     bool
	elected   election.Result
	primary   string // the member acting as primary, as this node knows it
	// holdNoted avoids logging a held-back preemption on every tick.
	holdNoted bool
	dual      string // another member claiming primary while this one is
	// noPrimary is when the cluster last lost its acting primary.
	noPrimary time.Time
	// lastPrimary is the member that acted as primary before the current one
	// (or before there was none).
	lastPrimary string

	selections []Selection
	nextSend   time.Time
	sendNow    bool
	sent       uint64 // heartbeats sent, for Heartbeat.Count
	out        []Action

	// The effects of the role, as last asked for (see effects.go).
	holding    bool   // ClaimAddresses sent, ReleaseAddresses not since
	promoteGen uint64 // generation of the last PromoteSessions
	awaiting   uint64 // the PromoteSessions whose SessionsReady claims the addresses (0: none)
	accepting  bool   // AcceptSessions sent since the member last became primary
	acceptFrom string // ... naming this primary
	routes     []netip.Addr
	absent     []netip.Addr // of routes: members not heard now

	conf   configState // configuration checksums (checksums.go)
	fenced bool        // Fence sent, Unfence not since
}

// peer is what this member knows of another.
type peer struct {
	epoch     uint64
	hb        Heartbeat
	rxAt      time.Time // when hb arrived
	alive     bool
	left      bool // said it was leaving
	lastHeard time.Time
	links     map[string]*peerLink
	warned    map[string]bool // configuration mismatches already logged
	// unreadable is why its last heartbeat could not be read (a later
	// release), at unreadableAt: see Received.Unreadable.
	unreadable   string
	unreadableAt time.Time
}

type peerLink struct {
	addr      netip.Addr // the member's address on this link, as last heard
	lastHeard time.Time
	lastSeq   uint64
	received  uint64
	lost      uint64
}

// Selection records one change of the acting primary and why, like FortiOS's
// "Primary selected using:" list.
type Selection struct {
	Time    time.Time `json:"time"`
	Primary string    `json:"primary"`
	Reason  string    `json:"reason"`
}

const maxSelections = 8

// New returns a member in the Hello role, starting at now.
func New(cfg Config, now time.Time) *Node {
	n := &Node{
		cfg:          cfg,
		role:         Hello,
		roleSince:    now,
		uptimeStart:  now,
		holddown:     now.Add(cfg.HelloHolddown),
		monitored:    map[string]bool{},
		linkUp:       map[string]bool{},
		peers:        map[string]*peer{},
		checkFailing: map[string]bool{},
		nextSend:     now,
		noPrimary:    now,
		// With session pickup, a starting member has no sessions until
		// a primary's bulk sync arrives.
		syncPending: cfg.SessionPickup,
	}
	// Until the link watcher says otherwise, links are assumed down: a
	// member must not claim to be better than it is.
	for _, m := range cfg.Monitored {
		n.monitored[m] = false
	}
	for _, l := range cfg.Links {
		n.linkUp[l.Interface] = false
	}
	n.pingUp = cfg.PingServers
	// Take the primary's sessions from the start of the hello holddown: a
	// member that must take over right after it (the primary leaves, the
	// others' links are down) then has them. The first Step returns it,
	// before the fence: the session pickup starts by purging its table (a
	// dump of the whole kernel table), in its own goroutine, while the
	// daemon raises the fence, and the primary's sync waits for that purge.
	n.acceptSessions()
	// Not primary: fenced from the start. The first Step returns it.
	n.fence()
	return n
}

// Role is this member's current role.
func (n *Node) Role() Role { return n.role }

// Primary is the member acting as primary ("" if none is known).
func (n *Node) Primary() string { return n.primary }

// Step feeds one event and returns the actions to perform, in order.
func (n *Node) Step(ev Event) []Action {
	defer func() { n.out = nil }()
	if n.stopped {
		return nil
	}
	now := ev.at()
	switch e := ev.(type) {
	case Tick:
	case Received:
		n.receive(e)
	case LinkChange:
		n.linkChange(e)
	case PingChange:
		n.pingChange(e)
	case CheckChange:
		n.checkChange(e)
	case WitnessChange:
		if e.Up != n.witnessUp {
			n.witnessUp = e.Up
			n.notice(!e.Up, true, "witness %s", upDown(e.Up))
		}
	case BulkReceived:
		if n.syncPending {
			n.syncPending = false
			n.sendNow = true
		}
	case SessionsReady:
		n.sessionsReady(e)
	case SyncLost:
		n.notice(true, false, "session sync with %s lost: %s", e.Peer, e.Reason)
	case ChecksumsChange:
		if e.Sums != n.conf.sums {
			n.conf.sums = e.Sums
			n.sendNow = true
		}
	case Reconfigure:
		n.reconfigure(e)
	case Command:
		n.command(e)
		if n.stopped {
			return n.out
		}
	}
	n.evaluate(now)
	n.followPrimary()
	n.routeSync(now)
	n.checkConfig(now)
	n.maybeSend(now)
	return n.out
}

func (n *Node) emit(a Action) { n.out = append(n.out, a) }

func (n *Node) notice(warn, history bool, format string, args ...any) {
	n.emit(Notice{Warn: warn, History: history, Msg: fmt.Sprintf(format, args...)})
}

func upDown(up bool) string {
	if up {
		return "up"
	}
	return "down"
}

func (n *Node) receive(e Received) {
	p := n.peers[e.From]
	if p == nil {
		p = &peer{links: map[string]*peerLink{}, warned: map[string]bool{}}
		n.peers[e.From] = p
	}
	if e.Unreadable != "" {
		if p.unreadable == "" || e.Now.Sub(p.unreadableAt) > n.cfg.DeadInterval() {
			n.notice(true, true, "member %s sends heartbeats this build cannot read (%s): it is there, so this member will not take over because of it; upgrade this member", e.From, e.Unreadable)
		}
		p.unreadable, p.unreadableAt = e.Unreadable, e.Now
		return
	}
	pl := p.links[e.Link]
	if pl == nil {
		pl = &peerLink{lastSeq: e.Seq}
		p.links[e.Link] = pl
	} else if e.Seq > pl.lastSeq {
		pl.lost += e.Seq - pl.lastSeq - 1
		pl.lastSeq = e.Seq
	} else {
		pl.lastSeq = e.Seq // the sender restarted its sequence: it rebooted
	}
	pl.received++
	pl.lastHeard = e.Now
	if e.Addr.IsValid() {
		pl.addr = e.Addr
	}
	p.lastHeard = e.Now
	// The same heartbeat arrives once per link, and a copy on a slow link
	// may come after a newer one on a fast link: only news changes state.
	// A lower boot id is a replay or a late copy while the boot it would
	// replace is still heard; once that boot has been silent for a dead
	// interval it is the member back from a reboot whose clock went back
	// (seal lets it through by the same rule).
	older := e.Epoch < p.epoch && e.Now.Sub(p.rxAt) <= n.cfg.DeadInterval()
	if older || (e.Epoch == p.epoch && e.HB.Count <= p.hb.Count && p.rxAt != (time.Time{})) {
		return
	}
	p.epoch = e.Epoch
	if !p.alive && !e.HB.Leaving {
		p.alive = true
		n.everHeard = true
		n.notice(false, true, "member %s joined (role %s, priority %d)", e.From, e.HB.Role, e.HB.Priority)
	}
	if e.HB.Leaving && !p.left {
		n.notice(false, true, "member %s is leaving the cluster", e.From)
	}
	p.left = e.HB.Leaving
	p.hb = e.HB
	p.rxAt = e.Now
	if e.HB.Override != n.cfg.Override && !p.warned["override"] {
		p.warned["override"] = true
		n.notice(true, false, "member %s has override %v, this member %v: the election may differ between members", e.From, e.HB.Override, n.cfg.Override)
	}
	if e.HB.MonitoredTotal != len(n.cfg.Monitored) && !p.warned["monitor"] {
		p.warned["monitor"] = true
		n.notice(true, false, "member %s monitors %d interfaces, this member %d", e.From, e.HB.MonitoredTotal, len(n.cfg.Monitored))
	}
}

func (n *Node) linkChange(e LinkChange) {
	if up, ok := n.monitored[e.Interface]; ok && up != e.Up {
		n.monitored[e.Interface] = e.Up
		if !e.Up {
			// FGCP resets the HA uptime of a member whose monitored link
			// fails, so that it does not win back when the link returns.
			n.uptimeStart = e.Now
		}
		n.notice(!e.Up, true, "monitored link %s %s (%d/%d up)", e.Interface, upDown(e.Up), n.monitoredUp(), len(n.cfg.Monitored))
		n.sendNow = true
	}
	if up, ok := n.linkUp[e.Interface]; ok && up != e.Up {
		n.linkUp[e.Interface] = e.Up
		n.notice(!e.Up, true, "heartbeat link %s %s", e.Interface, upDown(e.Up))
		n.sendNow = true
	}
}

func (n *Node) command(e Command) {
	switch e.Kind {
	case FailoverSet:
		n.failoverSet = true
		n.uptimeStart = e.Now
		n.notice(false, true, "failover set by operator: this member ranks last until unset")
	case FailoverUnset:
		n.failoverSet = false
		n.notice(false, true, "failover unset by operator")
	case ResetUptime:
		n.uptimeStart = e.Now
		n.notice(false, true, "HA uptime reset by operator")
	case Shutdown:
		if n.role == Primary {
			n.becomeSubordinate(e.Now, KindShutdown, "shutting down: handing over")
		}
		hb := n.heartbeatToSend(e.Now)
		hb.Leaving = true
		n.emit(Send{HB: hb})
		n.stopped = true
		return
	}
	n.sendNow = true
}

func (n *Node) monitoredUp() int {
	c := 0
	for _, up := range n.monitored {
		if up {
			c++
		}
	}
	return c
}

func (n *Node) uptime(now time.Time) time.Duration { return now.Sub(n.uptimeStart) }

// heartbeat is what this member says of itself now.
func (n *Node) heartbeat(now time.Time) Heartbeat {
	return Heartbeat{
		Role:           n.role,
		Priority:       n.priority(),
		Override:       n.cfg.Override,
		MonitoredUp:    n.monitoredUp(),
		MonitoredTotal: len(n.cfg.Monitored),
		PingUp:         n.remoteScore(),
		Uptime:         n.uptime(now),
		FailoverSet:    n.failoverSet,
		Elected:        n.elected.Primary,
		HelloLeft:      n.helloLeft(now),
		SyncPending:    n.syncPending,
		Build:          n.cfg.Build,
		Checksums:      n.conf.sums,
		ConfigPending:  n.conf.pending,
	}
}

func (n *Node) helloLeft(now time.Time) time.Duration {
	if n.role != Hello || !now.Before(n.holddown) {
		return 0
	}
	return n.holddown.Sub(now)
}

func (n *Node) maybeSend(now time.Time) {
	if !n.sendNow && now.Before(n.nextSend) {
		return
	}
	if !now.Before(n.nextSend) {
		n.nextSend = now.Add(n.cfg.Interval)
	}
	n.sendNow = false
	n.emit(Send{HB: n.heartbeatToSend(now)})
}

func (n *Node) heartbeatToSend(now time.Time) Heartbeat {
	n.sent++
	hb := n.heartbeat(now)
	hb.Count = n.sent
	return hb
}

func (n *Node) selfCandidate(now time.Time) election.Candidate {
	return election.Candidate{
		ID: n.cfg.NodeID, Priority: n.priority(), MonitoredUp: n.monitoredUp(),
		PingUp: n.remoteScore(), Uptime: n.uptime(now), FailoverSet: n.failoverSet, SyncPending: n.syncPending,
		ConfigPending: n.conf.pending, MonitoredDown: n.monitoredDown(),
	}
}

func (p *peer) candidate(id string, now time.Time) election.Candidate {
	return election.Candidate{
		ID: id, Priority: p.hb.Priority, MonitoredUp: p.hb.MonitoredUp, PingUp: p.hb.PingUp,
		// The reported uptime has aged since it was sent.
		Uptime: p.hb.Uptime + now.Sub(p.rxAt), FailoverSet: p.hb.FailoverSet, SyncPending: p.hb.SyncPending,
		ConfigPending: p.hb.ConfigPending,
	}
}

// alivePeers returns the ids of the members heard within the dead interval,
// sorted.
func (n *Node) alivePeers() []string {
	var ids []string
	for id, p := range n.peers {
		if p.alive {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// setElected records this member's election. The others count it (see
// nominee and handedToAnother), so a new choice is sent at once: after a
// healed partition, a primary that lost waits for the members' votes.
func (n *Node) setElected(res election.Result) {
	if res.Primary != n.elected.Primary {
		n.sendNow = true
	}
	n.elected = res
}

// handedToAnother reports whether the last primary stepped down (it still
// runs) naming another member as its successor. Members' views can differ
// for a moment (a heartbeat still on its way), so a primary that steps down
// designates its successor and the others wait for that one: two members
// never both take the role it left. If the successor never takes it, the
// nominee rule below ends the wait after a dead interval.
func (n *Node) handedToAnother() bool {
	prev := n.primary // not yet updated by track when it has just stepped down
	if prev == "" || prev == n.cfg.NodeID {
		prev = n.lastPrimary
	}
	p := n.peers[prev]
	return p != nil && p.alive && !p.left && p.hb.Role != Primary &&
		p.hb.Elected != "" && p.hb.Elected != n.cfg.NodeID
}

// nominee is the member most members' elections name, ties going to the
// highest node id. Members whose views differ (a configuration mismatch, an
// uptime right at the margin) could each elect another and leave the cluster
// with no primary; the nominee is the same on every member that hears the
// same heartbeats, so it breaks such a deadlock: it may take the role after a
// dead interval without a primary, and a primary that is the nominee is not
// preempted.
func (n *Node) nominee(alive []string) string {
	votes := map[string]int{}
	if n.role != Hello && n.elected.Primary != "" {
		votes[n.elected.Primary]++
	}
	for _, id := range alive {
		if p := n.peers[id]; p.hb.Role != Hello && p.hb.Elected != "" {
			votes[p.hb.Elected]++
		}
	}
	best, bv := "", 0
	for id, v := range votes {
		if v > bv || (v == bv && id > best) {
			best, bv = id, v
		}
	}
	return best
}

// deferToStarting reports whether a member about to take over should wait
// for a member still in its hello holddown that would win and will be ready
// within a dead interval: members that start together then agree on the
// primary instead of each taking the role as the first to finish. A member
// further from ready is not waited for: a missing primary costs more.
func (n *Node) deferToStarting(now time.Time, cands []election.Candidate, alive []string) bool {
	with := cands
	for _, id := range alive {
		p := n.peers[id]
		if p.hb.Role == Hello && p.hb.HelloLeft-now.Sub(p.rxAt) <= n.cfg.DeadInterval() {
			with = append(with, p.candidate(id, now))
		}
	}
	if len(with) == len(cands) {
		return false
	}
	return election.Elect(with, n.rules()).Primary != n.cfg.NodeID
}

func (n *Node) rules() election.Rules {
	return election.Rules{Override: n.cfg.Override, UptimeMargin: n.cfg.UptimeMargin}
}

func (n *Node) quorum(alive int) (bool, string) {
	if !n.cfg.Quorum {
		return true, ""
	}
	votes, size := 1+alive, n.cfg.ClusterSize
	if n.cfg.Witness {
		size++
		if n.witnessUp {
			votes++
		}
	}
	return 2*votes > size, fmt.Sprintf("%d of %d votes", votes, size)
}

func (n *Node) splitPolicy() string {
	if n.cfg.Quorum {
		return "quorum is on: primary only with a majority"
	}
	return "FGCP behaviour: each side elects its own primary"
}

// loseReason says why this primary lost the election to res.Primary.
func (n *Node) loseReason(now time.Time, res election.Result) (Kind, string) {
	self := n.selfCandidate(now)
	win := n.peers[res.Primary].candidate(res.Primary, now)
	switch {
	case self.FailoverSet:
		return KindManual, fmt.Sprintf("failover set by operator: %s takes over", res.Primary)
	case self.MonitoredUp < win.MonitoredUp:
		return KindLink, fmt.Sprintf("monitored links %d/%d up (%s down), %s has %d", self.MonitoredUp, len(n.cfg.Monitored), self.MonitoredDown, res.Primary, win.MonitoredUp)
	case self.PingUp < win.PingUp:
		return KindLink, fmt.Sprintf("remote link failed (%s): %s takes over", n.remoteWhy(), res.Primary)
	}
	return KindPreempt, n.electedReason(now, res)
}

// takeoverReason says why this member takes over from the previous primary.
func (n *Node) takeoverReason(now time.Time, res election.Result) (Kind, string) {
	prev := n.primary
	p := n.peers[prev]
	switch {
	case prev == "" || prev == n.cfg.NodeID || p == nil:
		return KindStartup, n.electedReason(now, res)
	case p.left:
		return KindShutdown, fmt.Sprintf("primary %s shut down", prev)
	case !p.alive:
		return KindDevice, fmt.Sprintf("primary %s silent for %s on all heartbeat links", prev, now.Sub(p.lastHeard).Round(time.Millisecond))
	case p.hb.FailoverSet:
		return KindManual, fmt.Sprintf("primary %s stepped down: failover set by operator", prev)
	case p.hb.MonitoredUp < n.monitoredUp():
		return KindLink, fmt.Sprintf("primary %s has %d/%d monitored links up", prev, p.hb.MonitoredUp, p.hb.MonitoredTotal)
	case p.hb.PingUp < n.remoteScore():
		return KindLink, fmt.Sprintf("primary %s's remote link failed (ping servers: %d answering)", prev, p.hb.PingUp)
	}
	return KindPreempt, n.electedReason(now, res)
}

// track follows the member acting as primary and records each change.
func (n *Node) track(now time.Time, claimant string) {
	acting := claimant
	if n.role == Primary {
		acting = n.cfg.NodeID
		if claimant != "" && claimant != n.dual {
			n.notice(true, true, "member %s also claims the primary role: the election decides", claimant)
		}
		n.dual = claimant
	}
	if acting == n.primary {
		return
	}
	reason := "no primary"
	if acting != "" {
		reason = n.electedReason(now, n.elected)
		if n.elected.Primary != acting {
			reason = fmt.Sprintf("%s acts as primary", acting)
		}
	}
	if n.primary != "" {
		n.lastPrimary = n.primary
	}
	n.primary = acting
	if acting == "" {
		n.noPrimary = now
	}
	n.emit(PrimaryChange{Primary: acting, Reason: reason})
	if acting != "" {
		n.selections = append(n.selections, Selection{Time: now, Primary: acting, Reason: reason})
		if len(n.selections) > maxSelections {
			n.selections = n.selections[1:]
		}
	}
}

func (n *Node) sortedPeerIDs() []string {
	ids := make([]string, 0, len(n.peers))
	for id := range n.peers {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}
