package sessions

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hagate/hagate/internal/sessions/session"
	"github.com/hagate/hagate/internal/sessions/syncproto"
)

// Expectations (EngineConfig.Expectation) follow their master sessions: the
// primary mirrors its backend's expectations in a small map of their own
// (they live seconds to minutes, and are few), and sends one only once its
// master is synced, so a subordinate always has the master first; the
// master's helper travels with it, since the kernel accepts an expectation
// only on a master that has one. On a connection each wake-up sends the
// session changes before the expectation changes, and a bulk sends the
// expectations after all the sessions.

// MaxExpectations bounds the expectations an engine holds, as primary and
// as subordinate; beyond it new ones are not synced (counted as dropped).
const MaxExpectations = 1 << 16

// Expectation drop reasons, logged and counted.
const (
	xDropLimit    = "limit"     // MaxExpectations reached
	xDropDisabled = "disabled"  // received while expectation sync is off here
	xDropNoMaster = "no-master" // the subordinate does not hold the master
	xDropFailed   = "failed"    // the backend refused it otherwise
)

// xentry is the primary's copy of one expectation.
type xentry struct {
	x     session.Expect
	sent  bool   // queued to the subordinates (its master was synced)
	round uint32 // the dump round that last saw it
}

// expects is the engine's expectation state, guarded by Engine.mu.
type expects struct {
	m     map[session.ExpectKey]*xentry // primary: mirrored
	held  map[session.ExpectKey]uint32  // subordinate: installed, by bulk generation
	round uint32
	// waiting indexes the unsent expectations by master (primary), so the
	// master's sync sends them at once; rebuilt by every dump round.
	waiting map[session.Key][]session.ExpectKey

	sent, installed, removed uint64
	dropped                  map[string]uint64
}

func (x *expects) drop(reason string, n int) {
	if x.dropped == nil {
		x.dropped = map[string]uint64{}
	}
	x.dropped[reason] += uint64(n)
}

// expectBackend returns the backend's expectation side when expectations
// are synced.
func (e *Engine) expectBackend() (ExpectBackend, bool) {
	if !e.cfg.Expectation {
		return nil, false
	}
	xb, ok := e.be.(ExpectBackend)
	return xb, ok
}

// ExpectStats describes the expectations synced.
type ExpectStats struct {
	Enabled   bool              `json:"enabled"`
	Held      int               `json:"held"`      // primary: mirrored; subordinate: installed
	Unsent    int               `json:"unsent"`    // primary: waiting for their master to be synced
	Sent      uint64            `json:"sent"`      // primary: changes queued to subordinates
	Installed uint64            `json:"installed"` // subordinate: installed into the backend
	Removed   uint64            `json:"removed"`   // subordinate: deleted (primary's order or stale)
	Dropped   map[string]uint64 `json:"dropped,omitempty"`
}

// ExpectStats returns the counts of expectation sync.
func (e *Engine) ExpectStats() ExpectStats {
	_, on := e.expectBackend()
	e.mu.Lock()
	defer e.mu.Unlock()
	st := ExpectStats{Enabled: on, Sent: e.xp.sent, Installed: e.xp.installed, Removed: e.xp.removed, Dropped: map[string]uint64{}}
	for r, n := range e.xp.dropped {
		st.Dropped[r] = n
	}
	if e.role == rolePrimary {
		st.Held = len(e.xp.m)
		for _, x := range e.xp.m {
			if !x.sent {
				st.Unsent++
			}
		}
	} else {
		st.Held = len(e.xp.held)
	}
	return st
}

// resetExpectsLocked forgets every expectation (a role change).
func (e *Engine) resetExpectsLocked() {
	e.xp.m, e.xp.held, e.xp.waiting = nil, nil, nil
}

// mirrorExpects keeps the primary's expectation map equal to the backend's
// and queues the changes, until ctx ends. It starts once the sessions are
// mirrored, so that masters are found.
func (e *Engine) mirrorExpects(ctx context.Context, xb ExpectBackend) {
	e.mu.Lock()
	e.xp.m, e.xp.waiting = map[session.ExpectKey]*xentry{}, nil
	e.mu.Unlock()
	evs, err := xb.WatchExpect(ctx)
	if err != nil {
		e.log.Error("session pickup: watching expectations; they are not synced", "err", err)
		return
	}
	xs := expectStore{e, xb}
	if err := resync(ctx, e, xs); err != nil && ctx.Err() == nil {
		e.log.Error("session pickup: dumping expectations", "err", err)
	}
	refresh := time.NewTicker(e.cfg.Refresh)
	defer refresh.Stop()
	again := func(ctx context.Context) error { return resync(ctx, e, xs) }
	follow(ctx, e, evs, mirror[session.ExpectEvent]{
		watch:        xb.WatchExpect,
		lost:         func(ev session.ExpectEvent) bool { return ev.Kind == session.EventOverflow },
		ended:        func() {},
		watchFailed:  "session pickup: watching expectations",
		resync:       again,
		resyncFailed: "session pickup: expectation dump after overflow",
		fold: func(ev session.ExpectEvent) {
			e.mu.Lock()
			e.observeExpectLocked(ev.Kind == session.EventDestroy, &ev.Expect)
			e.mu.Unlock()
		},
	}, every{refresh.C, func() {
		// Repairs lost events and sends the expectations whose master
		// has been synced since (delay, or an event order).
		if err := again(ctx); err != nil && ctx.Err() == nil {
			e.log.Error("session pickup: expectation refresh dump", "err", err)
		}
	}}, every{})
}

// expectStore keeps the expectations: as primary, mirrored in a map with
// the dump round that last saw each (xentry.round); as subordinate, the
// keys installed, by the bulk that brought them. xb is nil when
// expectations are not synced here.
type expectStore struct {
	e  *Engine
	xb ExpectBackend
}

func (e *Engine) expectations() expectStore {
	xb, _ := e.expectBackend()
	return expectStore{e, xb}
}

func (s expectStore) dump(ctx context.Context, fn func(session.Expect) error) error {
	if err := s.xb.DumpExpect(ctx, fn); err != nil {
		return fmt.Errorf("expectations: %w", err)
	}
	return nil
}

// newRoundLocked also forgets which expectations wait for which master:
// the round finds them again.
func (s expectStore) newRoundLocked() uint32 {
	s.e.xp.round++
	s.e.xp.waiting = nil
	return s.e.xp.round
}

func (s expectStore) foldLocked(x *session.Expect) { s.e.observeExpectLocked(false, x) }

func (s expectStore) forgetUnseenLocked(round uint32) {
	for k, x := range s.e.xp.m {
		if x.round != round {
			s.e.observeExpectLocked(true, &session.Expect{ExpectKey: k})
		}
	}
}

// observeExpectLocked folds one event or dumped expectation into the
// primary's map and queues what the subordinates must learn.
func (e *Engine) observeExpectLocked(gone bool, x *session.Expect) {
	if e.xp.m == nil {
		return // not mirroring
	}
	old := e.xp.m[x.ExpectKey]
	if gone {
		if old != nil {
			delete(e.xp.m, x.ExpectKey)
			if old.sent {
				e.enqueueExpectLocked(session.ExpectChange{Op: session.Delete, Expect: session.Expect{ExpectKey: x.ExpectKey}})
			}
		}
		return
	}
	if old == nil {
		if len(e.xp.m) >= MaxExpectations {
			e.xp.drop(xDropLimit, 1)
			return
		}
		old = &xentry{}
		e.xp.m[x.ExpectKey] = old
	}
	old.x = *x
	old.round = e.xp.round
	if old.sent {
		return // expectations do not change; their timeouts only run down
	}
	if _, meta, ok := e.tab.get(x.Master); ok && meta.synced {
		old.sent = true
		e.enqueueExpectLocked(session.ExpectChange{Op: session.Upsert, Expect: *x})
		return
	}
	// The master is not synced yet (delay, a filter, or its event is still
	// queued behind this one): wait for it.
	if e.xp.waiting == nil {
		e.xp.waiting = map[session.Key][]session.ExpectKey{}
	}
	e.xp.waiting[x.Master] = append(e.xp.waiting[x.Master], x.ExpectKey)
}

// masterSyncedLocked sends the expectations waiting for session k, which
// has just been queued to the subordinates.
func (e *Engine) masterSyncedLocked(k session.Key) {
	if len(e.xp.waiting) == 0 {
		return
	}
	keys, ok := e.xp.waiting[k]
	if !ok {
		return
	}
	delete(e.xp.waiting, k)
	for _, xk := range keys {
		if x := e.xp.m[xk]; x != nil && !x.sent && x.x.Master == k {
			x.sent = true
			e.enqueueExpectLocked(session.ExpectChange{Op: session.Upsert, Expect: x.x})
		}
	}
}

// enqueueExpectLocked hands an expectation change to the subordinates
// that speak protocol version 2.
func (e *Engine) enqueueExpectLocked(c session.ExpectChange) {
	e.xp.sent += uint64(expectKind.enqueueLocked(e, c))
}

// sentExpectsLocked yields the expectations a bulk carries: those whose
// master the bulk carries.
func (e *Engine) sentExpectsLocked(yield func(session.ExpectChange) bool) {
	for _, x := range e.xp.m {
		if x.sent && !yield(session.ExpectChange{Op: session.Upsert, Expect: x.x}) {
			return
		}
	}
}

// As subordinate, an expectation whose master is missing is dropped and
// counted: the primary sends masters first, so a missing one was refused or
// filtered here, and holding the expectation for later would outlive its
// short timeout anyway.

// admitLocked takes the expectation's place in the held map at once, so
// that MaxExpectations counts the batch's earlier ones.
func (s expectStore) admitLocked(c *session.ExpectChange) bool {
	x := &s.e.xp
	if s.xb == nil {
		x.drop(xDropDisabled, 1)
		return false
	}
	if x.held == nil {
		x.held = map[session.ExpectKey]uint32{}
	}
	if c.Op != session.Upsert {
		delete(x.held, c.Expect.ExpectKey)
		return true
	}
	if _, ok := x.held[c.Expect.ExpectKey]; !ok && len(x.held) >= MaxExpectations {
		x.drop(xDropLimit, 1)
		return false
	}
	x.held[c.Expect.ExpectKey] = s.e.gen
	return true
}

func (s expectStore) install(ctx context.Context, cs []session.ExpectChange) error {
	if s.xb == nil {
		return nil // nothing admitted
	}
	return s.xb.ApplyExpect(ctx, cs)
}

// recordLocked has nothing to do: admitLocked recorded.
func (s expectStore) recordLocked([]session.ExpectChange) {}

func (s expectStore) report(cs []session.ExpectChange, err error) {
	e := s.e
	noMaster, failed := countExpectErrors(err)
	e.mu.Lock()
	defer e.mu.Unlock()
	ups := 0
	for _, c := range cs {
		if c.Op == session.Upsert {
			ups++
		} else {
			e.xp.removed++
		}
	}
	e.xp.installed += uint64(max(ups-noMaster-failed, 0))
	if noMaster > 0 {
		e.xp.drop(xDropNoMaster, noMaster)
	}
	if failed > 0 {
		e.xp.drop(xDropFailed, failed)
		e.st.applyErrors++
		e.obs.ApplyErrors(1)
	}
	if err != nil {
		e.log.Warn("session pickup: installing expectations", "refused", noMaster+failed, "err", err)
	}
}

func (s expectStore) staleLocked() []session.ExpectChange {
	var dels []session.ExpectChange
	for k, g := range s.e.xp.held {
		if g != s.e.gen {
			dels = append(dels, session.ExpectChange{Op: session.Delete, Expect: session.Expect{ExpectKey: k}})
		}
	}
	return dels
}

// countExpectErrors splits the errors of ApplyExpect by cause.
func countExpectErrors(err error) (noMaster, other int) {
	if err == nil {
		return 0, 0
	}
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	for _, err := range errs {
		if errors.Is(err, session.ErrNoMaster) {
			noMaster++
		} else {
			other++
		}
	}
	return noMaster, other
}

// helloVersion is the highest protocol version the engine offers. A
// connection runs at the lower of both ends'; expectations are sent from
// version 2 and only by a primary that syncs them.
func (e *Engine) helloVersion() uint8 {
	if e.cfg.maxVersion != 0 {
		return e.cfg.maxVersion
	}
	return syncproto.Version
}
