package sessions

import (
	"math/bits"

	"github.com/hagate/hagate/internal/sessions/session"
)

// A bulk sends the live sessions first. The kernel refreshes a session's
// timeout on every packet it carries, so the sessions whose remaining
// timeout is nearest the longest of their kind (protocol and TCP state)
// are those that carried traffic last: they go first, and a failover
// during a long bulk loses idle sessions, not the ones in use. The
// timeouts are those the primary last read from the kernel (at an event or
// a dump).

// bulkRanks is the number of ranks: 0 for the sessions refreshed last, then
// one per doubling of the seconds since (bits.Len32 of a uint32).
const bulkRanks = 33

// timeoutClass groups the sessions whose timeouts compare: one protocol,
// one TCP state.
func timeoutClass(s *session.Session) uint16 {
	return uint16(s.Proto)<<8 | uint16(s.TCP.State)
}

// bulkRankLocked returns the rank of each synced session in a bulk (0
// first): the binary order of magnitude of how long ago its timeout was
// last refreshed, against the longest timeout of its class. oldestFirst
// reverses it (EngineConfig.BulkOldestFirst).
func (e *Engine) bulkRankLocked() func(*session.Change) int {
	// By class: an array, not a map, as it is read once per session.
	longest := new([1 << 16]uint32)
	for proto, r := range e.tab.recs() {
		if r.flags&flagSynced == 0 {
			continue
		}
		c := uint16(proto)<<8 | uint16(r.tcp.State)
		longest[c] = max(longest[c], r.timeout)
	}
	return func(c *session.Change) int {
		r := bits.Len32(longest[timeoutClass(&c.Session)] - c.Session.Timeout)
		if e.cfg.BulkOldestFirst {
			r = bulkRanks - 1 - r
		}
		return r
	}
}
