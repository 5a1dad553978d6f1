// Package election owns the choice of the primary: FGCP's ordering of the
// members, evaluated the same way on every member from the same inputs.
package election

import (
	"fmt"
	"strings"
	"time"
)

// Candidate is what the election knows of one member.
type Candidate struct {
	ID          string
	Priority    int
	MonitoredUp int // monitored interfaces up
	PingUp      int // ping servers answering (remote link monitoring)
	// Uptime is the member's HA uptime: time since it joined the cluster or
	// since its uptime was last reset (monitored link failure, reset-uptime).
	Uptime time.Duration
	// FailoverSet ranks a member below every other (hagate failover,
	// FortiOS `execute ha failover set`).
	FailoverSet bool
	// SyncPending: with session pickup, the member has not received the
	// primary's sessions yet; it ranks below members that have them.
	SyncPending bool
	// ConfigPending: with config_sync, a part the primary syncs differs on
	// the member from the primary's; it ranks below members in sync.
	ConfigPending bool
	// MonitoredDown names the monitored interfaces down ("lan, wan") when
	// known: a member knows its own, not the others'. Explain only.
	MonitoredDown string
}

// Rules are the cluster-wide election settings.
type Rules struct {
	Override     bool
	UptimeMargin time.Duration
}

// Criterion names the rule that decided an election.
type Criterion string

const (
	OnlyMember  Criterion = "it is the only member in the cluster"
	NotFailover Criterion = "the others have failover set"
	Monitored   Criterion = "it has the most monitored interfaces up"
	PingServers Criterion = "it has the most ping servers answering"
	Sessions    Criterion = "it has the sessions (the others wait for their session sync)"
	ConfigSync  Criterion = "its configuration is in sync with the primary's (the others' is not)"
	Uptime      Criterion = "it has the largest HA uptime"
	Priority    Criterion = "it has the highest priority"
	NodeID      Criterion = "it has the highest node id"
)

// Result is the outcome of an election.
type Result struct {
	Primary string
	By      Criterion
}

// Reason says why Primary won, in the words FortiOS users know.
func (r Result) Reason() string {
	return fmt.Sprintf("%s is selected as the primary because %s", r.Primary, r.By)
}

// Elect picks the primary among cands. It filters the members criterion by
// criterion in FGCP's order, so the result does not depend on the order of
// cands even though the uptime margin makes "better" non-transitive:
//
//	override off: failover flag, monitored links, ping servers, sessions, configuration, uptime, priority, node id
//	override on:  failover flag, monitored links, ping servers, sessions, configuration, priority, uptime, node id
//
// "sessions" only matters with session pickup: a member still waiting for
// the primary's bulk sync ranks below those that have the sessions.
// "configuration" only matters with config_sync: a member whose synced
// parts differ from the primary's ranks below those in sync.
//
// Uptimes within UptimeMargin of the longest count as equal. Elect of no
// candidates returns the zero Result.
func Elect(cands []Candidate, r Rules) Result {
	if len(cands) == 0 {
		return Result{}
	}
	if len(cands) == 1 {
		return Result{Primary: cands[0].ID, By: OnlyMember}
	}
	set := cands
	for _, s := range steps(r) {
		if set = s.keepIn(set); len(set) == 1 {
			return Result{Primary: set[0].ID, By: s.by}
		}
	}
	best := set[0]
	for _, c := range set[1:] {
		if c.ID > best.ID {
			best = c
		}
	}
	return Result{Primary: best.ID, By: NodeID}
}

// step is one criterion of the election: the value it compares, how far
// below the best a member may be and still be kept, and how an operator
// reads the comparison.
type step struct {
	by     Criterion
	value  func(Candidate) int64
	margin int64
	// says how the winner w beat the loser l on this criterion.
	says func(w, l Candidate) string
}

func (s step) keepIn(cs []Candidate) []Candidate { return keepMax(s.value, s.margin)(cs) }

// steps lists the criteria in FGCP's order for r.
func steps(r Rules) []step {
	uptime := step{Uptime, func(c Candidate) int64 { return int64(c.Uptime) }, int64(r.UptimeMargin),
		func(w, l Candidate) string {
			return fmt.Sprintf("HA uptime %s > %s (margin %s)", w.Uptime.Round(time.Second), l.Uptime.Round(time.Second), r.UptimeMargin)
		}}
	prio := step{Priority, func(c Candidate) int64 { return int64(c.Priority) }, 0,
		func(w, l Candidate) string { return fmt.Sprintf("priority %d > %d", w.Priority, l.Priority) }}
	ss := []step{
		{NotFailover, func(c Candidate) int64 { return boolInt(!c.FailoverSet) }, 0,
			func(w, l Candidate) string { return "failover set on " + l.ID }},
		{Monitored, func(c Candidate) int64 { return int64(c.MonitoredUp) }, 0,
			func(w, l Candidate) string {
				s := fmt.Sprintf("monitored links up %d > %d", w.MonitoredUp, l.MonitoredUp)
				if l.MonitoredDown != "" {
					s += fmt.Sprintf(" (%s down on %s)", l.MonitoredDown, l.ID)
				}
				return s
			}},
		{PingServers, func(c Candidate) int64 { return int64(c.PingUp) }, 0,
			func(w, l Candidate) string { return fmt.Sprintf("ping servers answering %d > %d", w.PingUp, l.PingUp) }},
		{Sessions, func(c Candidate) int64 { return boolInt(!c.SyncPending) }, 0,
			func(w, l Candidate) string { return l.ID + " waits for its session sync" }},
		{ConfigSync, func(c Candidate) int64 { return boolInt(!c.ConfigPending) }, 0,
			func(w, l Candidate) string { return l.ID + "'s configuration differs from the primary's" }},
		uptime, prio,
	}
	if r.Override {
		ss[5], ss[6] = prio, uptime
	}
	return ss
}

// Explain names, for every member that lost the election res of cands, the
// criterion that put it out and the values compared, in FGCP's order:
// "gw2 over gw1: monitored links up 2 > 1; gw2 over gw3: priority 150 > 100".
// A member that was never a candidate is not named.
func Explain(res Result, cands []Candidate, r Rules) string {
	var win Candidate
	found := false
	for _, c := range cands {
		if c.ID == res.Primary {
			win, found = c, true
		}
	}
	switch {
	case !found:
		return ""
	case len(cands) == 1:
		return win.ID + ": the only member"
	}
	var parts []string
	set := cands
	for _, s := range steps(r) {
		kept := s.keepIn(set)
		if !containsID(kept, win.ID) {
			return "" // res is not this election's (the members changed since)
		}
		for _, c := range set {
			if !containsID(kept, c.ID) {
				parts = append(parts, fmt.Sprintf("%s over %s: %s", win.ID, c.ID, s.says(win, c)))
			}
		}
		set = kept
	}
	for _, c := range set {
		if c.ID != win.ID {
			parts = append(parts, fmt.Sprintf("%s over %s: all else equal, node id %s > %s", win.ID, c.ID, win.ID, c.ID))
		}
	}
	return strings.Join(parts, "; ")
}

func containsID(cs []Candidate, id string) bool {
	for _, c := range cs {
		if c.ID == id {
			return true
		}
	}
	return false
}

// keepMax keeps the candidates whose value is within margin of the largest.
func keepMax(value func(Candidate) int64, margin int64) func([]Candidate) []Candidate {
	return func(cs []Candidate) []Candidate {
		hi := value(cs[0])
		for _, c := range cs[1:] {
			hi = max(hi, value(c))
		}
		out := cs[:0:0]
		for _, c := range cs {
			if value(c) >= hi-margin {
				out = append(out, c)
			}
		}
		return out
	}
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
