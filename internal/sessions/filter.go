package sessions

import (
	"net/netip"
	"sync"

	"github.com/hagate/hagate/internal/sessions/session"
)

// MarkMatch matches a conntrack mark: mark&Mask == Value.
type MarkMatch struct {
	Value, Mask uint32
}

// Filter says which sessions are synced (FGCP's session-pickup options).
type Filter struct {
	// Connectionless syncs UDP, ICMP and other protocols; off: TCP only.
	Connectionless bool
	// NAT syncs sessions with a NAT mapping; off: they are skipped.
	NAT bool
	// Zones, when not empty, syncs only these conntrack zones.
	Zones []uint16
	// Marks, when not empty, syncs only sessions matching one of them.
	Marks []MarkMatch
	// Prefixes, when not empty, syncs only sessions whose original source or
	// destination is in one of them.
	Prefixes []netip.Prefix
}

// Skip reasons, also metric labels.
const (
	SkipLocal    = "local"
	SkipProtocol = "protocol"
	SkipNAT      = "nat"
	SkipZone     = "zone"
	SkipMark     = "mark"
	SkipAddress  = "address"
)

// selector applies a Filter and the node's own addresses. Safe for
// concurrent use.
type selector struct {
	mu    sync.RWMutex
	f     Filter // replaced whole by setFilter, never changed in place
	local map[[16]byte]struct{}
}

// setFilter makes f the filter from now on.
func (s *selector) setFilter(f Filter) {
	s.mu.Lock()
	s.f = f
	s.mu.Unlock()
}

func (s *selector) filter() Filter {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.f
}

func newSelector(f Filter) *selector { return &selector{f: f, local: map[[16]byte]struct{}{}} }

func (s *selector) setLocal(addrs []netip.Addr) {
	m := make(map[[16]byte]struct{}, len(addrs))
	for _, a := range addrs {
		m[session.Addr16(a)] = struct{}{}
	}
	s.mu.Lock()
	s.local = m
	s.mu.Unlock()
}

// isLocal reports whether the gateway itself terminates the session: it is
// addressed to one of the node's addresses and answered from it untranslated,
// or sent from one and answered to it untranslated. Forwarded sessions,
// NATed to or from a local address (a virtual IP), are not local.
func (s *selector) isLocal(x *session.Session) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if _, ok := s.local[x.Orig.Dst]; ok && x.Reply.Src == x.Orig.Dst {
		return true
	}
	if _, ok := s.local[x.Orig.Src]; ok && x.Reply.Dst == x.Orig.Src {
		return true
	}
	return false
}

// skip returns why x is not synced, or "".
func (s *selector) skip(x *session.Session) string {
	f := s.filter()
	if !f.Connectionless && x.Proto != session.ProtoTCP {
		return SkipProtocol
	}
	if s.isLocal(x) {
		return SkipLocal
	}
	if !f.NAT && x.IsNAT() {
		return SkipNAT
	}
	if len(f.Zones) > 0 {
		ok := false
		for _, z := range f.Zones {
			ok = ok || z == x.Zone
		}
		if !ok {
			return SkipZone
		}
	}
	if len(f.Marks) > 0 {
		ok := false
		for _, m := range f.Marks {
			ok = ok || x.Mark&m.Mask == m.Value
		}
		if !ok {
			return SkipMark
		}
	}
	if len(f.Prefixes) > 0 {
		src, dst := x.Orig.SrcAddr(), x.Orig.DstAddr()
		ok := false
		for _, p := range f.Prefixes {
			ok = ok || p.Contains(src) || p.Contains(dst)
		}
		if !ok {
			return SkipAddress
		}
	}
	return ""
}
