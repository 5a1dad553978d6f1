package sessions

import (
	"context"
	"slices"
	"time"

	"github.com/hagate/hagate/internal/sessions/session"
	"github.com/hagate/hagate/internal/sessions/syncproto"
)

// Anti-entropy: the primary and the subordinate compare digests of their
// tables (digest.go) every AntiEntropy, and the primary resends only the
// ranges that differ. Changes can go missing between the two tables without
// anyone noticing (a kernel install refused, a bug, a change lost on its
// way); the digest finds them within one interval whatever the table's size,
// and the repair costs bytes in proportion to the difference, where the
// whole-table dump costs the whole table. Only connections at protocol
// version 4 take part; an older peer keeps the dump alone.
//
// The order of the stream makes the comparison exact: the primary snapshots
// its digest under the lock at which it takes the changes queued for the
// subordinate, and sends it after them, so the subordinate compares it with
// a table that has applied exactly those changes.

// antiEntropyMinVersion is the protocol version that carries the digests.
const antiEntropyMinVersion = 4

// maxRepairShare: when more ranges than this share of them differ, a bulk
// is cheaper than range repairs (and says something is badly wrong).
const maxRepairShare = 4

// peerEntropy is the primary's anti-entropy state for one subordinate.
// Guarded by Engine.mu.
type peerEntropy struct {
	due    bool      // a digest goes out at the next wake-up
	last   time.Time // when the last digest went out
	round  uint32    // of the last digest sent
	repair []uint16  // ranges the subordinate reported for round
}

// entropyWork is what one wake-up of a subordinate's stream sends after the
// queued changes: a repair, then a digest.
type entropyWork struct {
	repair      []uint16 // ranges resent
	chunks      [][]byte // their sessions, encoded
	count       int
	repairRound uint32 // the digest the repair answers
	digest      *digest
	round       uint32 // of the digest
}

// entropyDueLocked reports whether p has anti-entropy work waiting; at a
// heartbeat it also marks the digest due once AntiEntropy has passed.
func (e *Engine) entropyDueLocked(p *peer, now time.Time) bool {
	if p.version < antiEntropyMinVersion || e.cfg.AntiEntropy < 0 {
		return false
	}
	if now.Sub(p.ae.last) >= e.cfg.AntiEntropy {
		p.ae.due = true
	}
	return p.ae.due || p.ae.repair != nil
}

// takeEntropyLocked takes p's anti-entropy work, at the moment its queued
// changes are taken. A bulk about to be sent drops the repair (the bulk
// carries everything).
func (e *Engine) takeEntropyLocked(p *peer, bulk bool) entropyWork {
	var w entropyWork
	if p.version < antiEntropyMinVersion || e.cfg.AntiEntropy < 0 {
		return w
	}
	w.repair, p.ae.repair = p.ae.repair, nil
	if bulk {
		w.repair = nil
		return w
	}
	if w.repair != nil {
		in := rangeSet(w.repair)
		w.chunks, w.count = sessionKind.encodeLocked(p, func(yield func(session.Change) bool) {
			e.syncedLocked(func(c session.Change) bool {
				return !in[rangeOf(&c.Session.Key)] || yield(c)
			})
		}, nil)
		w.repairRound = p.ae.round
	}
	if p.ae.due {
		p.ae.due, p.ae.last = false, e.now()
		p.ae.round++
		d := e.tab.dig
		w.digest, w.round = &d, p.ae.round
	}
	return w
}

func rangeSet(index []uint16) *[digestRanges]bool {
	var in [digestRanges]bool
	for _, i := range index {
		if int(i) < digestRanges {
			in[i] = true
		}
	}
	return &in
}

// sendEntropy sends w to p: the repair framed by RepairStart and RepairEnd,
// its batches numbered in the stream's sequence, then the digest.
func (e *Engine) sendEntropy(fc *frameConn, p *peer, w entropyWork, seq *uint64) error {
	if w.repair != nil {
		round := w.repairRound
		if err := fc.write(syncproto.AppendRepairStart(nil, syncproto.RepairStart{Round: round, Index: w.repair}), e.cfg.IOTimeout); err != nil {
			return err
		}
		for _, c := range w.chunks {
			*seq++
			if err := syncproto.SetBatchSeq(c, *seq); err != nil {
				return err
			}
			if err := e.sendBatch(fc, p, c, *seq, 0); err != nil {
				return err
			}
		}
		if err := fc.write(syncproto.AppendRepairEnd(nil, syncproto.RepairEnd{Round: round, Count: uint64(w.count)}), e.cfg.IOTimeout); err != nil {
			return err
		}
		e.obs.SessionsSent(w.count)
		e.log.Info("session pickup: anti-entropy: resent the ranges that differ", "peer", p.addr, "ranges", len(w.repair), "sessions", w.count)
	}
	if w.digest != nil {
		return fc.write(syncproto.AppendDigest(nil, syncproto.Digest{Round: w.round, Hashes: w.digest[:]}), e.cfg.IOTimeout)
	}
	return nil
}

// differ takes the subordinate's answer to a digest: the ranges to resend,
// or a bulk when too many differ.
func (e *Engine) differ(p *peer, m syncproto.Differ) {
	if len(m.Index) == 0 {
		return
	}
	e.mu.Lock()
	current := m.Round == p.ae.round
	if current {
		e.st.divergentRanges += uint64(len(m.Index))
		if len(m.Index) > digestRanges/maxRepairShare {
			p.resyncReq = true
		} else {
			p.ae.repair = m.Index
		}
	}
	e.mu.Unlock()
	if !current {
		return // answers a digest a bulk has made moot
	}
	e.obs.DivergentRanges(len(m.Index))
	e.log.Warn("session pickup: anti-entropy: the subordinate's table differs", "peer", p.addr, "ranges", len(m.Index))
	p.wakeUp()
}

// CheckNow makes the primary compare digests with every subordinate at the
// next wake-up, without waiting for AntiEntropy (tests, and the lab).
func (e *Engine) CheckNow() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, p := range e.pri.peers {
		if p.version >= antiEntropyMinVersion {
			p.ae.due = true
			p.wakeUp()
		}
	}
}

// loseForTest drops the changes the test's loss hook picks, outside a
// repair.
func (e *Engine) loseForTest(r *repairing, cs []session.Change) []session.Change {
	if e.cfg.lose == nil || r.in != nil {
		return cs
	}
	return slices.DeleteFunc(cs, func(c session.Change) bool { return e.cfg.lose(&c) })
}

// repairing is a subordinate's state during one repair: the ranges being
// resent, and the sessions the repair brought that the table lacked.
type repairing struct {
	in     *[digestRanges]bool // nil: no repair running
	ranges int
	added  int
}

// compareDigest answers the primary's digest with the ranges that differ.
func (e *Engine) compareDigest(fc *frameConn, m syncproto.Digest) error {
	if len(m.Hashes) != digestRanges {
		return nil // another cut of the key space: nothing to compare
	}
	e.mu.Lock()
	// A table at max_sessions differs for want of room: a repair could
	// not add anything, and answering would resend ranges every round.
	full := e.tab.max > 0 && e.tab.len() >= e.tab.max
	diff := e.tab.dig.differ(m.Hashes)
	e.mu.Unlock()
	if full {
		return nil
	}
	if len(diff) == 0 {
		return nil
	}
	return fc.write(syncproto.AppendDiffer(nil, syncproto.Differ{Round: m.Round, Index: diff}), e.cfg.IOTimeout)
}

// startRepair begins a repair: what the ranges hold from before it and the
// repair does not bring again is stale.
func (e *Engine) startRepair(r *repairing, m syncproto.RepairStart) {
	e.mu.Lock()
	e.gen++
	e.sub.repair = true
	e.mu.Unlock()
	*r = repairing{in: rangeSet(m.Index), ranges: len(m.Index)}
}

// noteRepair counts, during a repair, the sessions a batch brings that the
// table lacks.
func (e *Engine) noteRepair(r *repairing, cs []session.Change) {
	if r.in == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := range cs {
		if cs[i].Op == session.Upsert && !e.tab.has(cs[i].Session.Key) {
			r.added++
		}
	}
}

// endRepair removes what the repaired ranges held that the repair did not
// bring, and says how many sessions the repair fixed.
func (e *Engine) endRepair(ctx context.Context, r *repairing) {
	if r.in == nil {
		return
	}
	e.mu.Lock()
	var dels []session.Change
	for k, m := range e.tab.all() {
		if m.mark2 != e.gen && r.in[rangeOf(&k)] {
			dels = append(dels, session.Change{Op: session.Delete, Session: session.Session{Key: k}})
		}
	}
	e.mu.Unlock()
	installAll(ctx, e, e.sessions(), dels)
	e.mu.Lock()
	refused := e.sub.repairRefused
	added := max(r.added-refused, 0)
	n := added + len(dels)
	e.st.repaired += uint64(n)
	e.sub.repair, e.sub.repairRefused = false, 0
	e.mu.Unlock()
	e.obs.SessionsRepaired(n)
	e.log.Warn("session pickup: anti-entropy repaired the table", "ranges", r.ranges, "sessions", n, "added", added,
		"stale_removed", len(dels), "refused_by_kernel", refused)
	*r = repairing{}
}
