package cluster

import (
	"strings"
	"time"

	"github.com/hagate/hagate/internal/election"
)

// electedReason says why res's primary won, naming every criterion that
// decided against each other member with the values compared: "gw2 is
// selected as the primary because it has the highest priority; gw2 over
// gw1: monitored links up 2 > 1 (lan down on gw1); gw2 over gw3: priority
// 150 > 100". An operator reading the history then sees why each member
// lost, not only the last criterion.
func (n *Node) electedReason(now time.Time, res election.Result) string {
	cands, _ := n.standing(now, n.alivePeers())
	if len(cands) < 2 {
		return res.Reason() // "the only member" says it all
	}
	// The standing may have moved since res (a member that just stepped
	// down now waits for its session sync): explain the same winner as it
	// stands now, so that both halves of the text agree.
	if now := election.Elect(cands, n.rules()); now.Primary == res.Primary {
		res = now
	}
	reason := res.Reason()
	if why := election.Explain(res, cands, n.rules()); why != "" {
		reason += "; " + why
	}
	return reason
}

// monitoredDown names this member's monitored interfaces that are down, in
// configuration order ("lan, wan"; "" when all are up).
func (n *Node) monitoredDown() string {
	var down []string
	for _, name := range n.cfg.Monitored {
		if !n.monitored[name] { // not reported yet counts as down, as in monitoredUp
			down = append(down, name)
		}
	}
	return strings.Join(down, ", ")
}
