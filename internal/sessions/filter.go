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
	virtual map[[16]byte]struct{} // set once
	mu      sync.RWMutex
	f       Filter // replaced whole by setFilter, never changed in place
	local   map[[16]byte]struct{}
}

func newSelector(f Filter, virtual ...netip.Addr) *selector {
	s := &selector{f: f, virtual: map[[16]byte]struct{}{}, local: map[[16]byte]struct{}{}}
	for _, a := range virtual {
		s.virtual[session.Addr16(a)] = struct{}{}
	}
	return s
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

// RefuseOwnAddress: a synced change refused on receipt because it uses one
// of the receiving node's own addresses.
const RefuseOwnAddress = "own-address"

// refuse returns why a subordinate refuses a change received from the
// primary, or "". A key holder could otherwise write anything into the
// subordinate's table: entries that redirect or delete the node's own
// connections (its heartbeats, its management), or that its own filters
// would never have synced. Deletes carry only the original tuple.
func (s *selector) refuse(c *session.Change) string {
	x := &c.Session
	if s.isOwn(x.Orig.Src) || s.isOwn(x.Orig.Dst) {
		return RefuseOwnAddress
	}
	if c.Op == session.Delete {
		return ""
	}
	if s.isOwn(x.Reply.Src) || s.isOwn(x.Reply.Dst) {
		return RefuseOwnAddress
	}
	return s.skip(x)
}

// isOwn reports whether a is one of the node's own addresses and not a
// virtual one (which synced sessions use when NATed to or from it).
func (s *selector) isOwn(a [16]byte) bool {
	if _, ok := s.virtual[a]; ok {
		return false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.local[a]
	return ok
}

// maxTimeout is the longest timeout, in seconds, the kernel gives an entry
// of proto (in TCP state tcpState) with its default settings, the highest
// across kernel versions (nf_conntrack_*_timeout*). A synced entry's
// timeout is capped at it, so that a key holder cannot pin entries in a
// subordinate's table for years.
func maxTimeout(proto, tcpState uint8) uint32 {
	switch proto {
	case session.ProtoTCP:
		switch tcpState {
		case session.TCPEstablished:
			return 432000 // 5 days
		case session.TCPSynRecv, session.TCPCloseWait:
			return 60
		case session.TCPLastAck:
			return 30
		case session.TCPClose:
			return 10
		case session.TCPSynSent, session.TCPFinWait, session.TCPTimeWait, session.TCPSynSent2:
			return 120
		}
		return 300 // unacknowledged, retransmitted
	case session.ProtoUDP, session.ProtoUDPLite, session.ProtoGRE:
		return 180 // stream (120 s in recent kernels, 180 s before)
	case session.ProtoICMP, session.ProtoICMPv6:
		return 30
	case session.ProtoSCTP:
		return 432000 // established (210 s in recent kernels, 5 days before)
	case session.ProtoDCCP:
		return 43200 // open
	}
	return 600 // generic
}
