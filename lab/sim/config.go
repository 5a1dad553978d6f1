package sim

import (
	"fmt"

	"github.com/hagate/hagate/internal/checksum"
	"github.com/hagate/hagate/internal/cluster"
)

// Configuration sync in the simulation: a member's ruleset is only its
// checksum (Member.Ruleset, 0: not tracked), which its node is told at
// start and at every change, as the daemon's checksum worker does. A
// SyncConfig is carried out after ConfigSyncDelay: the member takes the
// source's ruleset as it is then (the last state wins), unless the source
// is down or unreachable or the member refuses it (RefusesSync: its
// kernel rejects the ruleset), which changes nothing.

type configEvent struct{ from string }

// SetRuleset changes id's ruleset by hand, as an operator's nft command
// does.
func (c *Cluster) SetRuleset(id string, sum uint64) {
	m := c.Member(id)
	m.Ruleset = sum
	if m.Running {
		c.reportRuleset(m)
	}
}

func (c *Cluster) reportRuleset(m *Member) {
	if m.Ruleset == 0 {
		return
	}
	// The other parts are the same on every member.
	var sums checksum.Sums
	sums[checksum.Ruleset], sums[checksum.Routes], sums[checksum.Sysctls], sums[checksum.Config] = m.Ruleset, 2, 3, 4
	c.step(m, cluster.ChecksumsChange{Now: c.Now, Sums: sums})
}

// applyConfig carries out a SyncConfig of m from the member from.
func (c *Cluster) applyConfig(m *Member, from string) {
	src := c.Member(from)
	reachable := false
	for _, l := range c.Links {
		reachable = reachable || !c.cut[pathKey{from, m.ID, l}] && !c.cut[pathKey{m.ID, from, l}]
	}
	switch {
	case !src.Running || !reachable:
		c.logf("%s: sync from %s failed: unreachable", m.ID, from)
	case m.RefusesSync:
		c.logf("%s: sync from %s refused by the kernel", m.ID, from)
	default:
		m.Synced++
		c.SetRuleset(m.ID, src.Ruleset)
	}
}

func (c *Cluster) logf(format string, args ...any) {
	if c.Log != nil {
		c.Log("%s "+format, append([]any{c.Now.Sub(Epoch)}, args...)...)
	}
}

// InSync reports whether every running member's ruleset is the primary's
// (the first member holding the addresses).
func (c *Cluster) InSync() bool {
	p := c.Primaries()
	if len(p) != 1 {
		return false
	}
	want := c.Member(p[0]).Ruleset
	for _, m := range c.Members {
		if m.Running && m.Ruleset != want {
			return false
		}
	}
	return true
}

// Rulesets lists each member's ruleset, for failure messages.
func (c *Cluster) Rulesets() string {
	s := ""
	for _, m := range c.Members {
		s += fmt.Sprintf("%s=%d ", m.ID, m.Ruleset)
	}
	return s
}
