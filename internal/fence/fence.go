// Package fence keeps a cluster member that is not primary from forwarding
// the cluster's data traffic: an nftables table of hagate's own, `table
// inet hagate_fence`, with two base chains, each of which jumps, while the
// fence is raised, to a chain of drops (one rule per interface and
// direction):
//
//   - prerouting, before conntrack (priority raw), jumps to
//     fence_prerouting: a packet arriving on a fenced interface for an
//     address that is not the member's own (nor broadcast or multicast) is
//     dropped before conntrack sees it. Dropped later, it would still have
//     updated or created the conntrack entry of its session, and a synced
//     session whose TCP window a stray segment moved is found invalid by
//     the next primary's strict tracking.
//   - forward (priority filter - 10) jumps to fence_forward: what is still
//     forwarded into or out of a fenced interface (from an unfenced one) is
//     dropped.
//
// The member's own traffic (input and output) is untouched, and only the
// listed interfaces are matched, so the HA links are too.
//
// The table is written whole by the first Raise or Lower, replacing
// whatever table an earlier run left (a run killed leaves its table as it
// was, raised or lowered), and stays until Remove deletes it. After that,
// raising adds the jumps and lowering removes them, nothing else: lowered,
// the base chains are empty and accept everything. Every change is one
// nftables transaction (a batch the kernel applies all or nothing, the
// bridge table's included), so there is never a half-raised fence, and no
// other table is read or changed: the operator's ruleset stays theirs.
//
// Lowering is on a takeover's path (after the sessions are usable, before
// the addresses are claimed), so it is kept cheap. The fence holds one
// netlink socket for its life: closing a netfilter netlink socket after a
// transaction that deleted something waits for the kernel to finish
// releasing it (an RCU grace period: 12 ms in an idle namespace, 0.8 s in
// the loaded lab), which a socket per change paid on nearly every change.
// Keeping the table also spares the kernel registering and unregistering
// the base chains' hooks. A lowering is then one transaction flushing two
// chains (three in transparent mode), about 0.1 ms (docs/benchmarks.md).
package fence

import (
	"errors"
	"fmt"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Table is the name of hagate's table (family inet).
const Table = "hagate_fence"

// Priority orders the fence's forward chain before the usual `filter`
// chains (priority 0), so a ruleset's accept cannot let a fenced packet
// through first; the drop is final whatever comes after.
const Priority = -10

// PreroutingPriority is before conntrack (-200) and the raw table's
// notrack rules (-300): nothing has tracked a fenced packet yet.
const PreroutingPriority = -310

// Fence raises and lowers the fence over a set of interfaces, and in
// transparent mode over a bridge's ports.
type Fence struct {
	ifaces []string
	ports  []string // bridge ports (transparent mode)
	opts   []nftables.ConnOption

	mu    sync.Mutex
	conn  *nftables.Conn // the held socket; nil until first needed and after a failure
	jumps []jump         // of the tables this fence wrote; nil until written whole
}

// jump is where the raised fence jumps from and to.
type jump struct {
	from *nftables.Chain // a base chain
	to   string          // the regular chain of drops
}

// Bridged adds a transparent-mode fence over bridge ports: `table bridge
// hagate_fence`, whose forward chain drops every frame the bridge would
// forward into or out of one of them, so a subordinate's bridge forwards
// nothing between the data networks (no loop, no duplicate frame) while
// frames for the member itself still reach it. It is raised and lowered in
// the same transaction as the routed fence.
func (f *Fence) Bridged(ports []string) *Fence {
	f.ports = ports
	return f
}

// Ports are the fenced bridge ports.
func (f *Fence) Ports() []string { return f.ports }

// New returns a fence over ifaces in the caller's network namespace.
// Nothing changes until Raise or Lower.
func New(ifaces []string) *Fence { return &Fence{ifaces: ifaces} }

// NewAt is New in the network namespace open at nsFD (tests).
func NewAt(nsFD int, ifaces []string) *Fence {
	return &Fence{ifaces: ifaces, opts: []nftables.ConnOption{nftables.WithNetNSFd(nsFD)}}
}

// Interfaces are the fenced interfaces.
func (f *Fence) Interfaces() []string { return f.ifaces }

// Raise drops forwarded traffic of the fenced interfaces. Raising twice is
// harmless.
func (f *Fence) Raise() error {
	if err := f.set(true); err != nil {
		return fmt.Errorf("fence: raise over %v: %w", f.ifaces, err)
	}
	return nil
}

// Lower forwards again. The tables stay, their base chains empty.
func (f *Fence) Lower() error {
	if err := f.set(false); err != nil {
		return fmt.Errorf("fence: lower: %w", err)
	}
	return nil
}

// set raises or lowers the fence: the first time by writing the tables
// whole, then by adding or removing the jumps only.
func (f *Fence) set(raised bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var err error
	if f.jumps != nil {
		if err = f.flush(func(c *nftables.Conn) { toggle(c, f.jumps, raised) }); err == nil {
			return nil
		}
		// The tables may be gone (`nft flush ruleset`): written whole
		// again, and if that fails too, both errors say why.
	}
	var jumps []jump
	if err2 := f.flush(func(c *nftables.Conn) { jumps = f.write(c, raised) }); err2 != nil {
		f.jumps = nil
		return errors.Join(err, err2)
	}
	f.jumps = jumps
	return nil
}

// Remove deletes the fence's tables, if there are any, in one transaction:
// both families, whatever this fence covers, so a table an earlier run
// with another configuration left goes too. The fence forwards after it
// (a later Raise or Lower writes the tables again).
func (f *Fence) Remove() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.jumps = nil
	err := f.flush(func(c *nftables.Conn) {
		for _, fam := range []nftables.TableFamily{nftables.TableFamilyINet, nftables.TableFamilyBridge} {
			t := &nftables.Table{Family: fam, Name: Table}
			c.AddTable(t) // so the delete finds a table, whether one was there or not
			c.DelTable(t)
		}
	})
	if err != nil {
		return fmt.Errorf("fence: remove: %w", err)
	}
	return nil
}

// Close releases the fence's netlink socket; the tables stay as they are.
func (f *Fence) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.drop()
}

// flush runs one transaction that build fills, on the held socket (opened
// when needed). A failed transaction closes the socket: an error can leave
// the kernel's unread answers in it, which the next transaction would take
// for its own.
func (f *Fence) flush(build func(*nftables.Conn)) error {
	if f.conn == nil {
		c, err := nftables.New(append(f.opts, nftables.AsLasting())...)
		if err != nil {
			return fmt.Errorf("nftables: %w", err)
		}
		f.conn = c
	}
	build(f.conn)
	if err := f.conn.Flush(); err != nil {
		f.drop()
		return err
	}
	return nil
}

func (f *Fence) drop() {
	if f.conn != nil {
		_ = f.conn.CloseLasting()
		f.conn = nil
	}
}

// toggle adds the jumps (raised) or leaves the base chains empty: each
// base chain is flushed first, so the jump is there once at most.
func toggle(c *nftables.Conn, jumps []jump, raised bool) {
	for _, j := range jumps {
		c.FlushChain(j.from)
	}
	if raised {
		addJumps(c, jumps)
	}
}

func addJumps(c *nftables.Conn, jumps []jump) {
	for _, j := range jumps {
		c.AddRule(&nftables.Rule{Table: j.from.Table, Chain: j.from, Exprs: []expr.Any{
			&expr.Verdict{Kind: expr.VerdictJump, Chain: j.to},
		}})
	}
}

// write adds the fence's tables to the transaction, replacing what was
// there, raised or not, and returns their jumps.
func (f *Fence) write(c *nftables.Conn, raised bool) []jump {
	var jumps []jump
	if len(f.ports) > 0 {
		b := replaceTable(c, nftables.TableFamilyBridge)
		fwd := chains(c, &jumps, b, "forward", nftables.ChainHookForward, Priority)
		for _, name := range f.ports {
			for _, key := range []expr.MetaKey{expr.MetaKeyIIFNAME, expr.MetaKeyOIFNAME} {
				c.AddRule(&nftables.Rule{Table: b, Chain: fwd, Exprs: dropOn(key, name)})
			}
		}
	} else {
		c.DelTable(replaceTable(c, nftables.TableFamilyBridge)) // one a transparent run left
	}
	t := replaceTable(c, nftables.TableFamilyINet)
	pre := chains(c, &jumps, t, "prerouting", nftables.ChainHookPrerouting, PreroutingPriority)
	fwd := chains(c, &jumps, t, "forward", nftables.ChainHookForward, Priority)
	for _, name := range f.ifaces {
		c.AddRule(&nftables.Rule{Table: t, Chain: pre, Exprs: dropRouted(name)})
		for _, key := range []expr.MetaKey{expr.MetaKeyIIFNAME, expr.MetaKeyOIFNAME} {
			c.AddRule(&nftables.Rule{Table: t, Chain: fwd, Exprs: dropOn(key, name)})
		}
	}
	if raised {
		addJumps(c, jumps)
	}
	return jumps
}

// chains adds a base chain on hook (policy accept) and the regular chain
// fence_<name> of its drops, adds the jump between them to jumps, and
// returns the chain of drops.
func chains(c *nftables.Conn, jumps *[]jump, t *nftables.Table, name string, hook *nftables.ChainHook, prio int) *nftables.Chain {
	policy := nftables.ChainPolicyAccept
	base := c.AddChain(&nftables.Chain{
		Name: name, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: hook, Priority: nftables.ChainPriorityRef(nftables.ChainPriority(prio)), Policy: &policy,
	})
	drops := c.AddChain(&nftables.Chain{Name: "fence_" + name, Table: t})
	*jumps = append(*jumps, jump{from: base, to: drops.Name})
	return drops
}

// replaceTable adds hagate's table of a family to the transaction, empty:
// added (if absent), deleted with whatever it held, added again.
func replaceTable(c *nftables.Conn, fam nftables.TableFamily) *nftables.Table {
	t := &nftables.Table{Family: fam, Name: Table}
	c.AddTable(t)
	c.DelTable(t)
	return c.AddTable(t)
}

// dropOn is `meta iifname|oifname "name" counter drop`.
func dropOn(key expr.MetaKey, name string) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(name)},
		&expr.Counter{},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}
}

// dropRouted is `iifname "name" fib daddr type unicast counter drop`: a
// packet whose destination the member would route on (not one of its own
// addresses, not broadcast or multicast).
func dropRouted(name string) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(name)},
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_UNICAST)},
		&expr.Counter{},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}
}

// ifname is an interface name as the kernel compares it: IFNAMSIZ bytes,
// NUL-padded.
func ifname(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}
