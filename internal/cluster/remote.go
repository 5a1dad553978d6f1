package cluster

import (
	"fmt"
	"strings"
	"time"
)

// The remote link, as FGCP's remote IP monitoring has it: ping servers (and
// check commands of weight 0) test the path beyond the member's own links.
// The member's remote link counts as failed once the summed priority of its
// failed ping servers reaches ping_failover_threshold (0: any server down),
// or while a check of weight 0 fails.
//
// What the member says of its remote link goes in the heartbeat's ping
// field (PingUp, the fixed part that release 0.1.0 reads and compares too),
// as a score: all its ping servers, plus one when it runs remote-link
// checks, while its remote link is sound; the servers answering when it has
// failed. With the defaults (threshold 0, no checks) the score is the count
// of servers answering, exactly what 0.1.0 sends, so a mixed cluster ranks
// its members the same on every member: both builds compare the same
// numbers, and a failed remote link always scores below a sound one.

// CheckConfig is a check command as the state machine needs it.
type CheckConfig struct {
	Name string
	// Weight 0: a failing check is a remote-link failure. Negative: it
	// lowers the priority by that much while failing. Positive: it raises
	// the priority by that much while succeeding (keepalived's weight).
	Weight int
}

// CheckChange reports that a check command started or stopped failing.
type CheckChange struct {
	Now     time.Time
	Name    string
	Failing bool
}

func (e CheckChange) at() time.Time { return e.Now }

// pingChange takes the ping servers' new state.
func (n *Node) pingChange(e PingChange) {
	before := n.remoteScore()
	if e.Up < n.pingUp {
		n.notice(true, true, "ping servers answering: %d of %d", e.Up, n.cfg.PingServers)
	}
	changed := e.Up != n.pingUp || e.DownPriority != n.pingDown
	n.pingUp, n.pingDown = e.Up, e.DownPriority
	n.remoteChanged(e.Now, before, changed)
}

// checkChange takes a check command's new state.
func (n *Node) checkChange(e CheckChange) {
	ck, ok := n.checkConfigNamed(e.Name)
	if !ok || n.checkFailing[e.Name] == e.Failing {
		return
	}
	before := n.remoteScore()
	n.checkFailing[e.Name] = e.Failing
	effect := "remote link"
	if ck.Weight != 0 {
		effect = fmt.Sprintf("priority now %d", n.priority())
	}
	n.notice(e.Failing, true, "check %s %s (%s)", e.Name, map[bool]string{true: "failing", false: "passing"}[e.Failing], effect)
	n.remoteChanged(e.Now, before, true)
}

// remoteChanged resets the HA uptime when the remote link got worse: as
// after a monitored link failure (FGCP), a member that lost the primary
// role through its own link does not win it back when the link returns,
// unless override puts priority first.
func (n *Node) remoteChanged(now time.Time, before int, changed bool) {
	if n.remoteScore() < before {
		n.uptimeStart = now
	}
	if changed {
		n.sendNow = true
	}
}

func (n *Node) checkConfigNamed(name string) (CheckConfig, bool) {
	for _, c := range n.cfg.Checks {
		if c.Name == name {
			return c, true
		}
	}
	return CheckConfig{}, false
}

// remoteFailed reports whether this member's remote link counts as failed.
func (n *Node) remoteFailed() bool {
	if n.pingUp < n.cfg.PingServers && (n.cfg.PingThreshold == 0 || n.pingDown >= n.cfg.PingThreshold) {
		return true
	}
	for _, c := range n.cfg.Checks {
		if c.Weight == 0 && n.checkFailing[c.Name] {
			return true
		}
	}
	return false
}

// remoteWhy says what failed of the remote link, for logs.
func (n *Node) remoteWhy() string {
	var parts []string
	if n.pingUp < n.cfg.PingServers {
		parts = append(parts, fmt.Sprintf("ping servers %d of %d answering", n.pingUp, n.cfg.PingServers))
	}
	for _, c := range n.cfg.Checks {
		if c.Weight == 0 && n.checkFailing[c.Name] {
			parts = append(parts, "check "+c.Name+" failing")
		}
	}
	return strings.Join(parts, ", ")
}

// remoteScore is what this member says of its remote link (see above).
func (n *Node) remoteScore() int {
	if n.remoteFailed() {
		return min(n.pingUp, n.cfg.PingServers)
	}
	score := n.cfg.PingServers
	for _, c := range n.cfg.Checks {
		if c.Weight == 0 {
			return score + 1
		}
	}
	return score
}

// priority is the configured priority moved by the checks' weights,
// within the heartbeat's 0..255.
func (n *Node) priority() int {
	p := n.cfg.Priority
	for _, c := range n.cfg.Checks {
		switch failing := n.checkFailing[c.Name]; {
		case c.Weight < 0 && failing, c.Weight > 0 && !failing:
			p += c.Weight
		}
	}
	return max(0, min(p, 255))
}

// remoteTakeover notes, as a member takes the primary role, whether the
// previous primary lost it through its remote link: FGCP's flip timeout
// then runs from now.
func (n *Node) remoteTakeover(now time.Time) {
	n.remoteFailover, n.remoteLoser = time.Time{}, ""
	p := n.peers[n.primary]
	if n.primary == "" || n.primary == n.cfg.NodeID || p == nil || !p.alive {
		return
	}
	if p.hb.MonitoredUp >= n.monitoredUp() && p.hb.PingUp < n.remoteScore() {
		n.remoteFailover, n.remoteLoser = now, n.primary
	}
}

// remoteHold reports whether this primary keeps the role although it lost
// the election to winner:
//   - its own remote link failed, but a remote-link failover happened less
//     than ping_flip_timeout ago (FGCP's pingserver-flip-timeout: remote
//     link monitoring causes at most one failover per flip timeout, so a
//     path that no member has does not bounce the role between them);
//   - the winner is the member that lost the role to it through its remote
//     link, with ping_slave_force_reset off (it does not take the role back
//     when its link returns) or within the flip timeout.
func (n *Node) remoteHold(now time.Time, winner string, kind Kind) bool {
	if n.remoteFailover.IsZero() {
		return false
	}
	within := now.Sub(n.remoteFailover) < n.cfg.PingFlipTimeout
	self, win := n.selfCandidate(now), n.peers[winner].candidate(winner, now)
	var why string
	switch {
	case kind == KindLink && self.MonitoredUp >= win.MonitoredUp && within:
		why = fmt.Sprintf("remote link failed, but the last remote-link failover was at %s: held by ping_flip_timeout until %s",
			n.remoteFailover.Format(time.RFC3339), n.remoteFailover.Add(n.cfg.PingFlipTimeout).Format(time.RFC3339))
	case kind == KindPreempt && winner == n.remoteLoser && !n.cfg.PingForceReset:
		why = fmt.Sprintf("%s lost the role through its remote link; ping_slave_force_reset is off, so it does not take it back", winner)
	case kind == KindPreempt && winner == n.remoteLoser && within:
		why = fmt.Sprintf("%s lost the role through its remote link; it may take it back after ping_flip_timeout, at %s",
			winner, n.remoteFailover.Add(n.cfg.PingFlipTimeout).Format(time.RFC3339))
	default:
		return false
	}
	if why != n.remoteNoted {
		n.remoteNoted = why
		n.notice(false, true, "%s", why)
	}
	return true
}
