// Package sim runs several cluster members on a fake clock over an in-memory
// network with loss, delay and partitions, deterministically from a seed. It
// drives the same cluster.Node the daemon runs and carries out the same
// actions the daemon does (the addresses claimed and released, the
// sessions taken from a primary and made usable, each after a delay), so
// the election, the roles and the order of their effects can be checked
// across hundreds of fault schedules in seconds.
package sim

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/hagate/hagate/internal/cluster"
)

// Epoch is the fake clock's start.
var Epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Member is one simulated gateway.
type Member struct {
	ID      string
	Cfg     cluster.Config
	Node    *cluster.Node
	Running bool
	// Primary reports whether the member holds the virtual addresses: it
	// has carried out ClaimAddresses and not ReleaseAddresses since.
	Primary bool
	// SessionsUsable: with session pickup, the sessions a PromoteSessions
	// asked for are usable (the engine reported ready); AcceptSessions
	// ends it.
	SessionsUsable bool
	// Fenced: with Cfg.Fence, the member does not forward (Fence carried
	// out, Unfence not since).
	Fenced bool
	// Ruleset is the checksum of the member's ruleset (0: not tracked);
	// RefusesSync makes its kernel refuse every synced ruleset; Synced
	// counts the syncs it applied (config.go).
	Ruleset     uint64
	RefusesSync bool
	Synced      int
	Changes     []cluster.RoleChange
	seq         map[string]uint64 // per link
	gen         int               // restart generation: stale timers are ignored
}

// Cluster is the simulated network and its members.
type Cluster struct {
	Now     time.Time
	Members []*Member
	Links   []string // heartbeat link names, shared by all members
	// MinDelay and MaxDelay bound the one-way delay of every heartbeat.
	MinDelay, MaxDelay time.Duration
	rng                *rand.Rand
	q                  queue
	seq                int
	cut                map[pathKey]bool
	loss               map[pathKey]float64
	// SyncDelay is how long a member that becomes subordinate takes to
	// receive the primary's sessions (with SessionPickup configured).
	SyncDelay time.Duration
	// PromoteDelay is how long a new primary takes to make its synced
	// sessions usable, before it may claim the addresses.
	PromoteDelay time.Duration
	// ConfigSyncDelay is how long a SyncConfig takes: the fetch from the
	// primary and the apply.
	ConfigSyncDelay time.Duration
	// Violations lists every breach of the order of effects: addresses
	// held by a member that is not primary, or before its sessions are
	// usable; with fencing, a member holding the addresses fenced or one
	// forwarding without them.
	Violations []string
	// Log receives every role change, when set.
	Log func(format string, args ...any)
	// OnChange is called after each event, to check invariants.
	OnChange func(*Cluster)
}

type pathKey struct {
	from, to, link string
}

// New builds a cluster of members from cfgs; they all share the links named
// in the first config.
func New(seed uint64, cfgs []cluster.Config) *Cluster {
	c := &Cluster{
		Now: Epoch, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		cut: map[pathKey]bool{}, loss: map[pathKey]float64{},
		MinDelay: 100 * time.Microsecond, MaxDelay: 2 * time.Millisecond,
	}
	for _, l := range cfgs[0].Links {
		c.Links = append(c.Links, l.Interface)
	}
	for _, cfg := range cfgs {
		c.Members = append(c.Members, &Member{ID: cfg.NodeID, Cfg: cfg})
	}
	for _, m := range c.Members {
		c.Start(m.ID)
	}
	return c
}

// Member returns the member with id.
func (c *Cluster) Member(id string) *Member {
	for _, m := range c.Members {
		if m.ID == id {
			return m
		}
	}
	panic("sim: no member " + id)
}

// Start (re)starts a member: a fresh state machine with every link up.
func (c *Cluster) Start(id string) {
	m := c.Member(id)
	m.gen++
	m.Running = true
	m.Primary = false
	m.SessionsUsable = false
	m.Fenced = false
	m.seq = map[string]uint64{}
	m.Node = cluster.New(m.Cfg, c.Now)
	for _, l := range m.Cfg.Links {
		c.step(m, cluster.LinkChange{Now: c.Now, Interface: l.Interface, Up: true})
	}
	for _, l := range m.Cfg.Monitored {
		c.step(m, cluster.LinkChange{Now: c.Now, Interface: l, Up: true})
	}
	c.reportRuleset(m)
	// Members tick at their own phase, as real daemons do.
	phase := time.Duration(c.rng.Int64N(int64(m.Cfg.Interval)))
	c.schedule(c.Now.Add(phase), m, tickEvent{})
}

// Kill stops a member at once, as a power loss does: no goodbye.
func (c *Cluster) Kill(id string) {
	m := c.Member(id)
	m.Running = false
	m.Primary = false
	m.gen++
}

// Shutdown stops a member cleanly: it tells the others and steps down.
func (c *Cluster) Shutdown(id string) {
	m := c.Member(id)
	if m.Running {
		c.step(m, cluster.Command{Now: c.Now, Kind: cluster.Shutdown})
	}
	c.Kill(id)
}

// Command gives a member an operator command.
func (c *Cluster) Command(id string, k cluster.CommandKind) {
	if m := c.Member(id); m.Running {
		c.step(m, cluster.Command{Now: c.Now, Kind: k})
	}
}

// SetMonitored sets a monitored link of a member up or down.
func (c *Cluster) SetMonitored(id, link string, up bool) {
	if m := c.Member(id); m.Running {
		c.step(m, cluster.LinkChange{Now: c.Now, Interface: link, Up: up})
	}
}

// SetPing tells a member how many of its ping servers answer and the
// summed priority of those down.
func (c *Cluster) SetPing(id string, up, downPriority int) {
	if m := c.Member(id); m.Running {
		c.step(m, cluster.PingChange{Now: c.Now, Up: up, DownPriority: downPriority})
	}
}

// Cut silently drops everything between a and b on link (both directions).
func (c *Cluster) Cut(a, b, link string, cut bool) {
	c.cut[pathKey{a, b, link}] = cut
	c.cut[pathKey{b, a, link}] = cut
}

// Isolate cuts a member from everyone on every link (or heals it).
func (c *Cluster) Isolate(id string, cut bool) {
	for _, o := range c.Members {
		if o.ID != id {
			for _, l := range c.Links {
				c.Cut(id, o.ID, l, cut)
			}
		}
	}
}

// Loss sets the drop probability between a and b on link (both directions).
func (c *Cluster) Loss(a, b, link string, p float64) {
	c.loss[pathKey{a, b, link}] = p
	c.loss[pathKey{b, a, link}] = p
}

// LossAll sets the same drop probability on every path.
func (c *Cluster) LossAll(p float64) {
	for _, a := range c.Members {
		for _, b := range c.Members {
			if a != b {
				for _, l := range c.Links {
					c.loss[pathKey{a.ID, b.ID, l}] = p
				}
			}
		}
	}
}

// Healthy reports whether no path is cut or lossy.
func (c *Cluster) Healthy() bool {
	for _, v := range c.cut {
		if v {
			return false
		}
	}
	for _, v := range c.loss {
		if v > 0 {
			return false
		}
	}
	return true
}

// Primaries lists the running members holding the virtual addresses.
func (c *Cluster) Primaries() []string {
	var out []string
	for _, m := range c.Members {
		if m.Running && m.Primary {
			out = append(out, m.ID)
		}
	}
	return out
}

// Run advances the clock by d, processing every event due.
func (c *Cluster) Run(d time.Duration) {
	end := c.Now.Add(d)
	for c.q.Len() > 0 && !c.q[0].at.After(end) {
		it := heap.Pop(&c.q).(*item)
		c.Now = it.at
		if !it.m.Running || it.gen != it.m.gen {
			continue
		}
		switch e := it.ev.(type) {
		case tickEvent:
			c.step(it.m, cluster.Tick{Now: c.Now})
			c.schedule(c.Now.Add(it.m.Cfg.Interval/4), it.m, tickEvent{})
		case deliverEvent:
			e.Received.Now = c.Now
			c.step(it.m, e.Received)
		case syncEvent:
			c.step(it.m, cluster.BulkReceived{Now: c.Now})
		case readyEvent:
			it.m.SessionsUsable = true
			c.step(it.m, cluster.SessionsReady{Now: c.Now, Gen: e.gen})
		case configEvent:
			c.applyConfig(it.m, e.from)
		}
	}
	c.Now = end
}

// RunUntil advances in steps of one millisecond until cond holds or d passes;
// it returns how long it took and whether cond held.
func (c *Cluster) RunUntil(d time.Duration, cond func() bool) (time.Duration, bool) {
	start := c.Now
	for c.Now.Sub(start) < d {
		if cond() {
			return c.Now.Sub(start), true
		}
		c.Run(time.Millisecond)
	}
	return c.Now.Sub(start), cond()
}

// step feeds ev to m's node and carries out its actions as the daemon does.
func (c *Cluster) step(m *Member, ev cluster.Event) {
	for _, a := range m.Node.Step(ev) {
		switch a := a.(type) {
		case cluster.Send:
			c.send(m, a.HB)
		case cluster.RoleChange:
			m.Changes = append(m.Changes, a)
			if c.Log != nil {
				c.Log("%s %s: %s -> %s (%s: %s)", c.Now.Sub(Epoch), m.ID, a.From, a.To, a.Kind, a.Reason)
			}
		case cluster.ClaimAddresses:
			m.Primary = true
		case cluster.ReleaseAddresses:
			m.Primary = false
		case cluster.Fence:
			m.Fenced = true
		case cluster.Unfence:
			m.Fenced = false
		case cluster.AcceptSessions:
			// The primary's bulk arrives after SyncDelay; none comes
			// until a primary is known.
			m.SessionsUsable = false
			if a.From != "" {
				c.schedule(c.Now.Add(c.SyncDelay), m, syncEvent{})
			}
		case cluster.PromoteSessions:
			c.schedule(c.Now.Add(c.PromoteDelay), m, readyEvent{gen: a.Gen})
		case cluster.SyncConfig:
			c.schedule(c.Now.Add(c.ConfigSyncDelay), m, configEvent{from: a.From})
		}
	}
	if m.Primary && m.Node.Role() != cluster.Primary {
		c.Violations = append(c.Violations, fmt.Sprintf("%s: %s holds the addresses as %s", c.Now.Sub(Epoch), m.ID, m.Node.Role()))
	}
	if m.Primary && m.Cfg.SessionPickup && !m.SessionsUsable {
		c.Violations = append(c.Violations, fmt.Sprintf("%s: %s holds the addresses before its sessions are usable", c.Now.Sub(Epoch), m.ID))
	}
	// Only the primary forwards, and the primary forwards: the fence is
	// down exactly while the member holds the addresses.
	if m.Cfg.Fence && m.Fenced == m.Primary {
		c.Violations = append(c.Violations, fmt.Sprintf("%s: %s fenced=%v while holding the addresses=%v", c.Now.Sub(Epoch), m.ID, m.Fenced, m.Primary))
	}
	if c.OnChange != nil {
		c.OnChange(c)
	}
}

func (c *Cluster) send(from *Member, hb cluster.Heartbeat) {
	for _, link := range c.Links {
		seq := from.seq[link]
		from.seq[link] = seq + 1
		for _, to := range c.Members {
			if to == from {
				continue
			}
			k := pathKey{from.ID, to.ID, link}
			if c.cut[k] {
				continue
			}
			if p := c.loss[k]; p > 0 && c.rng.Float64() < p {
				continue
			}
			delay := c.MinDelay
			if c.MaxDelay > c.MinDelay {
				delay += time.Duration(c.rng.Int64N(int64(c.MaxDelay - c.MinDelay)))
			}
			c.schedule(c.Now.Add(delay), to, deliverEvent{cluster.Received{From: from.ID, Link: link, Seq: seq, Epoch: uint64(from.gen), HB: hb}})
		}
	}
}

type tickEvent struct{}
type syncEvent struct{}
type readyEvent struct{ gen uint64 }
type deliverEvent struct{ cluster.Received }

type item struct {
	at  time.Time
	seq int
	m   *Member
	gen int
	ev  any
}

func (c *Cluster) schedule(at time.Time, m *Member, ev any) {
	c.seq++
	heap.Push(&c.q, &item{at: at, seq: c.seq, m: m, gen: m.gen, ev: ev})
}

type queue []*item

func (q queue) Len() int { return len(q) }
func (q queue) Less(i, j int) bool {
	if !q[i].at.Equal(q[j].at) {
		return q[i].at.Before(q[j].at)
	}
	return q[i].seq < q[j].seq
}
func (q queue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *queue) Push(x any)   { *q = append(*q, x.(*item)) }
func (q *queue) Pop() any     { o := *q; n := len(o); it := o[n-1]; *q = o[:n-1]; return it }
func (c *Cluster) String() string {
	return fmt.Sprintf("sim at %s primaries %v", c.Now.Sub(Epoch), c.Primaries())
}
