package cluster

import (
	"slices"
	"time"

	"github.com/hagate/hagate/internal/election"
)

// Status is a snapshot of this member's view, for `hagate status`.
type Status struct {
	NodeID        string    `json:"node_id"`
	Role          string    `json:"role"`
	RoleSince     time.Time `json:"role_since"`
	PrimaryID     string    `json:"primary_id"`
	Elected       string    `json:"elected"`
	ElectedReason string    `json:"elected_reason,omitempty"`
	// ElectedBecause names each member that lost and the criterion that
	// decided it, with the values compared (election.Explain).
	ElectedBecause string      `json:"elected_because,omitempty"`
	Override       bool        `json:"override"`
	SplitBrain     bool        `json:"split_brain"`
	HolddownLeft   float64     `json:"holddown_left_seconds,omitempty"`
	Members        []Member    `json:"members"`
	Links          []LinkState `json:"heartbeat_links"`
	Selections     []Selection `json:"primary_selected"`
	Warnings       []string    `json:"warnings"`
}

// Member is one member as this node sees it; Self is this node.
type Member struct {
	NodeID          string            `json:"node_id"`
	Self            bool              `json:"self"`
	Alive           bool              `json:"alive"`
	Role            string            `json:"role"`
	Priority        int               `json:"priority"`
	MonitoredUp     int               `json:"monitored_up"`
	MonitoredTotal  int               `json:"monitored_total"`
	PingUp          int               `json:"ping_up"`
	UptimeSeconds   float64           `json:"uptime_seconds"`
	FailoverSet     bool              `json:"failover_set"`
	Version         string            `json:"version"`
	LastHeardSecond float64           `json:"last_heard_seconds"`
	LinkInUse       string            `json:"link_in_use,omitempty"`
	Lost            map[string]uint64 `json:"heartbeats_lost,omitempty"`
	Received        map[string]uint64 `json:"heartbeats_received,omitempty"`
}

// LinkState is one heartbeat link.
type LinkState struct {
	Interface  string `json:"interface"`
	Priority   int    `json:"priority"`
	Up         bool   `json:"up"`
	InUse      bool   `json:"in_use"`
	PeersHeard int    `json:"peers_heard"`
	Lost       uint64 `json:"heartbeats_lost"`
}

// Status returns the snapshot at now.
func (n *Node) Status(now time.Time) Status {
	dead := n.cfg.DeadInterval()
	st := Status{
		NodeID: n.cfg.NodeID, Role: n.role.String(), RoleSince: n.roleSince,
		PrimaryID: n.primary, Elected: n.elected.Primary, Override: n.cfg.Override,
		SplitBrain: n.split, Selections: slices.Clone(n.selections), Warnings: []string{},
	}
	if n.elected.Primary != "" {
		st.ElectedReason = n.elected.Reason()
		cands, _ := n.standing(now, n.alivePeers())
		st.ElectedBecause = election.Explain(n.elected, cands, n.rules())
	}
	if n.role == Hello {
		st.HolddownLeft = n.holddown.Sub(now).Seconds()
	}
	st.Members = append(st.Members, Member{
		NodeID: n.cfg.NodeID, Self: true, Alive: true, Role: n.role.String(), Priority: n.priority(),
		MonitoredUp: n.monitoredUp(), MonitoredTotal: len(n.cfg.Monitored), PingUp: n.remoteScore(),
		UptimeSeconds: n.uptime(now).Seconds(), FailoverSet: n.failoverSet, LinkInUse: n.linkInUse(now),
		Version: n.cfg.Build,
	})
	for _, id := range n.sortedPeerIDs() {
		p := n.peers[id]
		m := Member{
			NodeID: id, Alive: p.alive, Role: p.hb.Role.String(), Priority: p.hb.Priority,
			MonitoredUp: p.hb.MonitoredUp, MonitoredTotal: p.hb.MonitoredTotal, PingUp: p.hb.PingUp,
			UptimeSeconds: p.candidate(id, now).Uptime.Seconds(), FailoverSet: p.hb.FailoverSet,
			LastHeardSecond: now.Sub(p.lastHeard).Seconds(), Version: p.hb.Build,
			Lost: map[string]uint64{}, Received: map[string]uint64{},
		}
		if m.Version == "" && p.rxAt != (time.Time{}) {
			m.Version = "0.1.0" // the release whose heartbeats do not say
		}
		if p.unreadable != "" && now.Sub(p.unreadableAt) <= dead {
			m.Role, m.Version = "unreadable", "newer"
			st.Warnings = append(st.Warnings, "member "+id+" sends heartbeats this build cannot read ("+p.unreadable+"): version mismatch, this member will not take over because of it")
		} else if !p.alive {
			m.Role = "lost"
			if p.left {
				m.Role = "left"
			}
			st.Warnings = append(st.Warnings, "member "+id+" not heard for "+now.Sub(p.lastHeard).Round(time.Second).String())
		}
		best := -1
		for _, l := range n.cfg.Links {
			pl := p.links[l.Interface]
			if pl == nil {
				continue
			}
			m.Lost[l.Interface] = pl.lost
			m.Received[l.Interface] = pl.received
			if now.Sub(pl.lastHeard) < dead && l.Priority > best {
				best, m.LinkInUse = l.Priority, l.Interface
			}
		}
		st.Members = append(st.Members, m)
	}
	inUse := n.linkInUse(now)
	for _, l := range n.cfg.Links {
		ls := LinkState{Interface: l.Interface, Priority: l.Priority, Up: n.linkUp[l.Interface], InUse: l.Interface == inUse}
		for _, p := range n.peers {
			if pl := p.links[l.Interface]; pl != nil {
				ls.Lost += pl.lost
				if now.Sub(pl.lastHeard) < dead {
					ls.PeersHeard++
				}
			}
		}
		if !ls.Up {
			st.Warnings = append(st.Warnings, "heartbeat link "+l.Interface+" is down")
		} else if len(n.peers) > 0 && ls.PeersHeard == 0 {
			st.Warnings = append(st.Warnings, "heartbeat link "+l.Interface+": no member heard on it")
		}
		st.Links = append(st.Links, ls)
	}
	st.Warnings = append(st.Warnings, n.configWarnings()...)
	if n.split {
		st.Warnings = append(st.Warnings, "no member heard on any heartbeat link: possible split brain ("+n.splitPolicy()+")")
	}
	if n.dual != "" && n.role == Primary {
		st.Warnings = append(st.Warnings, "member "+n.dual+" also claims the primary role")
	}
	if ok, votes := n.quorum(len(n.alivePeers())); !ok {
		st.Warnings = append(st.Warnings, "no quorum ("+votes+"): this member will not become primary")
	}
	return st
}

// linkInUse is the highest-priority heartbeat link that is up and on which a
// member was heard, or the highest-priority link that is up if none was.
func (n *Node) linkInUse(now time.Time) string {
	dead := n.cfg.DeadInterval()
	heard, up := "", ""
	hp, upp := -1, -1
	for _, l := range n.cfg.Links {
		if !n.linkUp[l.Interface] {
			continue
		}
		if l.Priority > upp {
			up, upp = l.Interface, l.Priority
		}
		for _, p := range n.peers {
			if pl := p.links[l.Interface]; pl != nil && now.Sub(pl.lastHeard) < dead && l.Priority > hp {
				heard, hp = l.Interface, l.Priority
			}
		}
	}
	if heard != "" {
		return heard
	}
	return up
}

// AliveMembers counts the members heard within the dead interval, this one
// included.
func (n *Node) AliveMembers() int { return 1 + len(n.alivePeers()) }

// SplitBrain reports whether this member has had peers and hears none.
func (n *Node) SplitBrain() bool { return n.split }

// Lost is how many heartbeats from peer were lost on link (sequence gaps).
func (n *Node) Lost(peer, link string) uint64 {
	if p := n.peers[peer]; p != nil {
		if pl := p.links[link]; pl != nil {
			return pl.lost
		}
	}
	return 0
}
