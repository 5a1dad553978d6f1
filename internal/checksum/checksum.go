// Package checksum computes the checksums of what decides how a member
// forwards: its nftables ruleset, its routes, its forwarding sysctls and the
// cluster-wide part of hagate's configuration, like FortiOS's `diagnose sys
// ha checksum`. Each part is first turned into a normalised text (run-time
// state such as handles, counters and set element expiries left out, and
// the member-specific tables, chains and interfaces the configuration
// excludes), so two members that forward the same way have the same text,
// and the checksum is a hash of that text.
package checksum

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
)

// Part is one checksummed part of a member's configuration. The number is
// the part's id on the wire (the heartbeat's checksums field): never reuse
// one.
type Part uint8

const (
	Ruleset Part = 1 // the live nftables ruleset
	Routes  Part = 2 // the main routing table and the configured ones
	Sysctls Part = 3 // the forwarding and conntrack sysctls hagate depends on
	Config  Part = 4 // the cluster-wide part of hagate's configuration
)

// Parts lists every part, in the order they are shown.
var Parts = []Part{Ruleset, Routes, Sysctls, Config}

var names = map[Part]string{Ruleset: "ruleset", Routes: "routes", Sysctls: "sysctls", Config: "config"}

func (p Part) String() string {
	if n, ok := names[p]; ok {
		return n
	}
	return fmt.Sprintf("part(%d)", uint8(p))
}

// Known reports whether this build knows the part (a later release may
// announce parts it does not).
func (p Part) Known() bool { _, ok := names[p]; return ok }

// ParsePart returns the part named s.
func ParsePart(s string) (Part, error) {
	for p, n := range names {
		if n == s {
			return p, nil
		}
	}
	return 0, fmt.Errorf("unknown configuration part %q (want one of %s)", s, strings.Join(PartNames(), ", "))
}

// PartNames lists the parts' names in order.
func PartNames() []string {
	out := make([]string, len(Parts))
	for i, p := range Parts {
		out[i] = p.String()
	}
	return out
}

// MaxPart bounds the part ids a member keeps: parts of later releases
// beyond it are ignored.
const MaxPart = 15

// Sums holds a member's checksums, indexed by part (0: not known). A plain
// array keeps heartbeats comparable values.
type Sums [MaxPart + 1]uint64

// Of is the checksum of a normalised text: the first 8 bytes of its SHA-256
// (never 0, which means "not known"). 8 bytes keep heartbeats small; a
// collision between two members' texts by chance is far beyond a cluster's
// lifetime.
func Of(text []byte) uint64 {
	h := sha256.Sum256(text)
	return max(binary.BigEndian.Uint64(h[:8]), 1)
}

// Exclude names what is member-specific, left out of the checksums (and of
// the ruleset sync), like FGCP's non-synchronised settings.
type Exclude struct {
	// Tables: "family name" or "name" (every family).
	Tables []string
	// Chains: "family table chain" or "table chain".
	Chains []string
	// Interfaces: rules matching these interface names (iifname, oifname)
	// and routes through them are left out.
	Interfaces []string
}

// OwnTablePrefix starts the names of the tables hagate itself keeps (the
// fence, raised on subordinates only): state of the member's role, never
// compared nor synced.
const OwnTablePrefix = "hagate_"

// ExcludesTable reports whether the table family name is excluded.
func (e Exclude) ExcludesTable(family, name string) bool {
	return strings.HasPrefix(name, OwnTablePrefix) || slices.Contains(e.Tables, name) || slices.Contains(e.Tables, family+" "+name)
}

func (e Exclude) chain(family, table, chain string) bool {
	return slices.Contains(e.Chains, table+" "+chain) || slices.Contains(e.Chains, family+" "+table+" "+chain)
}
