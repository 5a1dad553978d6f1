// Package fence keeps a cluster member that is not primary from forwarding
// the cluster's data traffic: an nftables table of hagate's own, `table
// inet hagate_fence`, with two chains:
//
//   - prerouting, before conntrack (priority raw): a packet arriving on a
//     fenced interface for an address that is not the member's own (nor
//     broadcast or multicast) is dropped before conntrack sees it. Dropped
//     later, it would still have updated or created the conntrack entry of
//     its session, and a synced session whose TCP window a stray segment
//     moved is found invalid by the next primary's strict tracking.
//   - forward (priority filter - 10): what is still forwarded into or out
//     of a fenced interface (from an unfenced one) is dropped.
//
// The member's own traffic (input and output) is untouched, and only the
// listed interfaces are matched, so the HA links are too.
//
// The table is written whole or deleted whole, each in one nftables
// transaction (a batch the kernel applies all or nothing), so there is
// never a half-written fence, and no other table is read or changed: the
// operator's ruleset stays theirs.
package fence

import (
	"fmt"

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

// Raise writes the fence's table afresh: one transaction adds the table
// (if absent), deletes it with whatever it held, and adds it again with the
// drop rules, so raising twice is harmless and a table left by a crash is
// replaced, not added to.
func (f *Fence) Raise() error {
	c, err := nftables.New(f.opts...)
	if err != nil {
		return fmt.Errorf("fence: nftables: %w", err)
	}
	policy := nftables.ChainPolicyAccept
	if len(f.ports) > 0 {
		b := replaceTable(c, nftables.TableFamilyBridge)
		fwd := c.AddChain(&nftables.Chain{
			Name: "forward", Table: b, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityRef(Priority), Policy: &policy,
		})
		for _, name := range f.ports {
			for _, key := range []expr.MetaKey{expr.MetaKeyIIFNAME, expr.MetaKeyOIFNAME} {
				c.AddRule(&nftables.Rule{Table: b, Chain: fwd, Exprs: dropOn(key, name)})
			}
		}
	} else {
		c.DelTable(replaceTable(c, nftables.TableFamilyBridge)) // one a transparent run left
	}
	t := replaceTable(c, nftables.TableFamilyINet)
	pre := c.AddChain(&nftables.Chain{
		Name: "prerouting", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRef(PreroutingPriority), Policy: &policy,
	})
	fwd := c.AddChain(&nftables.Chain{
		Name: "forward", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityRef(Priority), Policy: &policy,
	})
	for _, name := range f.ifaces {
		c.AddRule(&nftables.Rule{Table: t, Chain: pre, Exprs: dropRouted(name)})
		for _, key := range []expr.MetaKey{expr.MetaKeyIIFNAME, expr.MetaKeyOIFNAME} {
			c.AddRule(&nftables.Rule{Table: t, Chain: fwd, Exprs: dropOn(key, name)})
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("fence: raise over %v: %w", f.ifaces, err)
	}
	return nil
}

// Lower deletes the fence's tables, if there are any, in one transaction.
func (f *Fence) Lower() error {
	c, err := nftables.New(f.opts...)
	if err != nil {
		return fmt.Errorf("fence: nftables: %w", err)
	}
	// Both families, whatever this run fences: a table an earlier run
	// with another configuration left goes too.
	for _, fam := range []nftables.TableFamily{nftables.TableFamilyINet, nftables.TableFamilyBridge} {
		t := &nftables.Table{Family: fam, Name: Table}
		c.AddTable(t) // so the delete finds a table, whether one was there or not
		c.DelTable(t)
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("fence: lower: %w", err)
	}
	return nil
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
