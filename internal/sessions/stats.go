package sessions

import (
	"time"

	"github.com/hagate/hagate/internal/sessions/session"
)

// counters are the engine's counts for Stats. Guarded by Engine.mu.
type counters struct {
	overflows, queueOverflows, resyncs, frameErrors, applyErrors, errors, full, refused uint64
	divergentRanges, repaired                                                           uint64    // anti-entropy
	notInstalled                                                                        uint64    // received changes the kernel refused (subordinate)
	installedEarly                                                                      uint64    // held-back sessions installed before their delay (max_held_back)
	fullLoggedAt                                                                        time.Time // when max_sessions was last logged (once a minute)
	screened                                                                            uint64    // synced changes refused on receipt (screen)
	screenedLoggedAt                                                                    time.Time // when screen last logged (once a minute)
}

// BulkStats describes the last bulk sync received.
type BulkStats struct {
	Sessions int           `json:"sessions"`
	Removed  int           `json:"stale_removed"`
	Duration time.Duration `json:"duration_ns"`
	At       time.Time     `json:"at"`
}

// PeerStats describes a primary's connection to one subordinate.
type PeerStats struct {
	Addr      string        `json:"addr"`
	Node      string        `json:"node,omitempty"`
	Connected bool          `json:"connected"`
	Queued    int           `json:"queued"`
	Sending   int           `json:"sending"` // changes taken from the queue, not yet sent
	SentSeq   uint64        `json:"sent_seq"`
	AckedSeq  uint64        `json:"acked_seq"`
	Lag       time.Duration `json:"lag_ns"`
	Bulks     uint64        `json:"bulks"`
	LastBulk  time.Duration `json:"last_bulk_duration_ns"` // time to send the last bulk sync, 0 before the first ends
	Resyncs   uint64        `json:"resyncs"`
}

// Stats is what `hagate sessions` shows.
type Stats struct {
	Role           string         `json:"role"`
	Primary        string         `json:"primary,omitempty"`
	Sessions       int            `json:"sessions"`
	Pending        int            `json:"pending_delay"`
	HeldBack       int            `json:"install_held_back"` // subordinate: held in the table, not yet in the kernel (install_delay)
	InstalledEarly uint64         `json:"installed_early"`   // held-back sessions installed before their delay passed, over max_held_back
	ByProtocol     map[string]int `json:"by_protocol"`
	TCPStates      map[string]int `json:"tcp_states"`
	LastBulk       BulkStats      `json:"last_bulk"`
	Peers          []PeerStats    `json:"peers,omitempty"`
	Resyncs        uint64         `json:"resyncs"`
	EventOverflows uint64         `json:"event_overflows"`
	QueueOverflows uint64         `json:"queue_overflows"`
	FrameErrors    uint64         `json:"frame_errors"`
	ApplyErrors    uint64         `json:"apply_errors"`
	NotInstalled   uint64         `json:"not_installed"` // received changes the kernel refused; anti-entropy resends them
	Refused        uint64         `json:"refused_connections"`
	Screened       uint64         `json:"refused_sessions"` // synced changes refused on receipt
	TableFull      uint64         `json:"max_sessions_hits"`
	Errors         uint64         `json:"errors"`
	// Lag is the subordinate's lag per change (protocol version 4).
	Lag LagStats `json:"lag"`
	// DivergentRanges (primary) counts the ranges found different by
	// anti-entropy; Repaired (subordinate) the sessions it fixed.
	DivergentRanges uint64 `json:"divergent_ranges"`
	Repaired        uint64 `json:"repaired_sessions"`
	// Expectations is set when expectation sync is on (ExpectStats).
	Expectations *ExpectStats `json:"expectations,omitempty"`
}

// Stats returns counts and the state of the sync. It walks the table, so it
// is for the CLI, not a hot path.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := Stats{
		Role: e.role.String(), Sessions: e.tab.len(), ByProtocol: map[string]int{}, TCPStates: map[string]int{},
		LastBulk: e.sub.lastBulk, Resyncs: e.st.resyncs, EventOverflows: e.st.overflows, QueueOverflows: e.st.queueOverflows,
		FrameErrors: e.st.frameErrors, ApplyErrors: e.st.applyErrors, NotInstalled: e.st.notInstalled, Refused: e.st.refused, Screened: e.st.screened, TableFull: e.st.full, Errors: e.st.errors,
		HeldBack: e.sub.held.len(), InstalledEarly: e.st.installedEarly, Lag: e.sub.lag.stats(), DivergentRanges: e.st.divergentRanges, Repaired: e.st.repaired,
	}
	if e.role == roleSubordinate {
		st.Primary = e.primaryID
	}
	for k, m := range e.tab.all() {
		if !m.synced {
			st.Pending++
		}
		st.ByProtocol[session.ProtoName(k.Proto)]++
		if k.Proto == session.ProtoTCP {
			st.TCPStates[session.TCPStateName(m.tcp.State)]++
		}
	}
	for _, p := range e.pri.peers {
		st.Peers = append(st.Peers, PeerStats{Addr: p.addr.String(), Node: p.id, Connected: p.connected, Queued: len(p.queue), Sending: p.inHand,
			SentSeq: p.sentSeq, AckedSeq: p.ackedSeq, Lag: p.lag, Bulks: p.bulks, LastBulk: p.lastBulk, Resyncs: p.resyncs})
	}
	return st
}
