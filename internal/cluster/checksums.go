package cluster

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/hagate/hagate/internal/checksum"
)

// ChecksumsChange reports this member's configuration checksums, computed
// anew (see internal/daemon/checksum.go).
type ChecksumsChange struct {
	Now  time.Time
	Sums checksum.Sums
}

func (e ChecksumsChange) at() time.Time { return e.Now }

// ConfigMismatch: a member's part now differs from the primary's (or agrees
// again), for the metric and the notify hook.
type ConfigMismatch struct {
	Member, Part, Primary string
	Differs               bool
}

// SyncConfig: fetch the synced parts from the primary From, at Addr, and
// apply them; report the new checksums with ChecksumsChange.
type SyncConfig struct {
	From  string
	Addr  netip.Addr
	Parts []checksum.Part
}

func (ConfigMismatch) isAction() {}
func (SyncConfig) isAction()     {}

// syncRetry is how long a subordinate waits before asking again for the
// same primary checksums it already asked for (a ruleset its kernel
// refused stays refused until the primary's changes).
const syncRetry = 30 * time.Second

// configState is what the node knows of the members' configuration
// checksums. The reference is the acting primary's; it is kept when the
// primary goes, so that the election that follows still knows who was in
// sync with it.
type configState struct {
	sums    checksum.Sums
	ref     checksum.Sums
	refFrom string
	pending bool               // a synced part differs from the reference
	differ  map[[2]string]bool // member, part -> reported as differing
	asked   [2]checksum.Sums   // the reference and this member's sums when last asked (SyncConfig)
	askedAt time.Time
}

// checkConfig compares every member's checksums with the primary's, after
// each event.
func (n *Node) checkConfig(now time.Time) {
	c := &n.conf
	switch p := n.peers[n.primary]; {
	case n.role == Primary:
		c.ref, c.refFrom = c.sums, n.cfg.NodeID
	case p != nil && p.alive && p.hb.Checksums != (checksum.Sums{}):
		c.ref, c.refFrom = p.hb.Checksums, n.primary
	}
	if c.refFrom == "" {
		return
	}
	if c.differ == nil {
		c.differ = map[[2]string]bool{}
	}
	members := map[string]checksum.Sums{n.cfg.NodeID: c.sums}
	for _, id := range n.alivePeers() {
		members[id] = n.peers[id].hb.Checksums
	}
	for _, id := range slices.Sorted(maps.Keys(members)) {
		for _, part := range checksum.Parts {
			differs := partDiffers(members[id], c.ref, part) && id != c.refFrom
			n.reportDiffer(id, part, differs)
		}
	}
	// Members gone are no longer reported.
	for k := range c.differ {
		if _, ok := members[k[0]]; !ok && c.differ[k] {
			p, _ := checksum.ParsePart(k[1])
			n.reportDiffer(k[0], p, false)
		}
	}
	pending := false
	if n.role != Primary && c.refFrom != n.cfg.NodeID {
		for _, part := range n.cfg.SyncedParts {
			pending = pending || partDiffers(c.sums, c.ref, part)
		}
	}
	if pending != c.pending {
		c.pending = pending
		n.sendNow = true
		switch {
		case pending:
			n.notice(true, true, "configuration out of sync with the primary %s: this member ranks below members in sync until it is synced", c.refFrom)
		case len(n.cfg.SyncedParts) == 0:
			n.notice(false, true, "configuration sync off: this member no longer ranks below for its configuration")
		default:
			n.notice(false, true, "configuration in sync with the primary %s", c.refFrom)
		}
	}
	n.askSync(now)
}

// partDiffers reports whether part is known on both sides and differs.
func partDiffers(sums, ref checksum.Sums, part checksum.Part) bool {
	return sums[part] != 0 && ref[part] != 0 && sums[part] != ref[part]
}

func (n *Node) reportDiffer(member string, part checksum.Part, differs bool) {
	k := [2]string{member, part.String()}
	if n.conf.differ[k] == differs {
		return
	}
	n.conf.differ[k] = differs
	if differs {
		n.notice(true, true, "configuration checksum of %s on member %s differs from the primary's (%s)", part, member, n.conf.refFrom)
	} else {
		n.notice(false, true, "configuration checksum of %s on member %s agrees with the primary's again", part, member)
	}
	n.emit(ConfigMismatch{Member: member, Part: part.String(), Primary: n.conf.refFrom, Differs: differs})
}

// askSync asks for the primary's synced parts while this member is out of
// sync with a primary it hears: at once when the primary's checksums
// change (the last state wins) or this member's do (a change by hand on a
// subordinate is undone, as FGCP does), again after syncRetry otherwise.
func (n *Node) askSync(now time.Time) {
	c := &n.conf
	p := n.peers[n.primary]
	if !c.pending || n.role == Primary || p == nil || !p.alive || c.refFrom != n.primary {
		return
	}
	if c.asked == [2]checksum.Sums{c.ref, c.sums} && now.Sub(c.askedAt) < syncRetry {
		return
	}
	c.asked, c.askedAt = [2]checksum.Sums{c.ref, c.sums}, now
	n.emit(SyncConfig{From: n.primary, Addr: p.bestAddr(n.cfg.Links, now, n.cfg.DeadInterval()), Parts: slices.Clone(n.cfg.SyncedParts)})
}

// bestAddr is the member's address on the highest-priority link it was
// heard on within dead.
func (p *peer) bestAddr(links []Link, now time.Time, dead time.Duration) netip.Addr {
	var best netip.Addr
	bp := -1
	for _, l := range links {
		if pl := p.links[l.Interface]; pl != nil && pl.addr.IsValid() && now.Sub(pl.lastHeard) < dead && l.Priority > bp {
			best, bp = pl.addr, l.Priority
		}
	}
	return best
}

// ForceSync asks for the primary's synced parts now (`hagate synchronize`).
func (n *Node) ForceSync(now time.Time) (SyncConfig, error) {
	p := n.peers[n.primary]
	switch {
	case n.role == Primary:
		return SyncConfig{}, fmt.Errorf("this member is the primary: it is the source of the configuration")
	case p == nil || !p.alive:
		return SyncConfig{}, fmt.Errorf("no primary heard")
	}
	return SyncConfig{From: n.primary, Addr: p.bestAddr(n.cfg.Links, now, n.cfg.DeadInterval()), Parts: slices.Clone(n.cfg.SyncedParts)}, nil
}

// MemberChecksums is one member's checksums, for `hagate checksum`.
type MemberChecksums struct {
	NodeID  string            `json:"node_id"`
	Primary bool              `json:"primary"`
	Alive   bool              `json:"alive"`
	Sums    map[string]string `json:"checksums"`
	Differ  []string          `json:"differ_from_primary"`
}

// Checksums returns every member's checksums as this member knows them,
// and the parts that differ from the primary's.
func (n *Node) Checksums() []MemberChecksums {
	show := func(id string, alive bool, sums checksum.Sums) MemberChecksums {
		m := MemberChecksums{NodeID: id, Alive: alive, Primary: id == n.conf.refFrom, Sums: map[string]string{}, Differ: []string{}}
		for _, part := range checksum.Parts {
			if sums[part] != 0 {
				m.Sums[part.String()] = fmt.Sprintf("%016x", sums[part])
			}
			if n.conf.differ[[2]string{id, part.String()}] {
				m.Differ = append(m.Differ, part.String())
			}
		}
		return m
	}
	out := []MemberChecksums{show(n.cfg.NodeID, true, n.conf.sums)}
	for _, id := range n.sortedPeerIDs() {
		out = append(out, show(id, n.peers[id].alive, n.peers[id].hb.Checksums))
	}
	return out
}

// configWarnings name each part and member that differs from the primary.
func (n *Node) configWarnings() []string {
	var out []string
	byMember := func(a, b [2]string) int { return cmp.Or(strings.Compare(a[0], b[0]), strings.Compare(a[1], b[1])) }
	for _, k := range slices.SortedFunc(maps.Keys(n.conf.differ), byMember) {
		if n.conf.differ[k] {
			out = append(out, fmt.Sprintf("configuration checksum of %s on member %s differs from the primary's (%s)", k[1], k[0], n.conf.refFrom))
		}
	}
	return out
}
