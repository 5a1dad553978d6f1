package sessions

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hagate/hagate/internal/sessions/session"
)

// BecomePrimary makes the engine the source of sessions: it stops accepting
// sync (waiting, within ctx, until every batch received is applied), starts
// mirroring the local table (events first, then a dump) and starts serving
// the subordinates. When it returns, every session received while
// subordinate is usable in the local table: the daemon may claim the virtual
// addresses.
func (e *Engine) BecomePrimary(ctx context.Context) error {
	e.mu.Lock()
	if e.role == rolePrimary {
		e.mu.Unlock()
		return nil
	}
	e.setRoleLocked(rolePrimary) // refuses new inbound connections from here on
	e.sub.purge = false          // back before a new primary's bulk: what it forwarded is current
	in := e.sub.inbound
	e.mu.Unlock()
	if in != nil {
		in.conn.Close()
		select {
		case <-in.done:
		case <-ctx.Done():
			return fmt.Errorf("sessions: waiting for received sessions to be applied: %w", ctx.Err())
		}
	}
	if e.runCtx == nil {
		return fmt.Errorf("sessions: engine not started")
	}
	// The received sessions are usable now: return, so the daemon can claim
	// the addresses at once. Mirroring the local table (a dump, which takes
	// time proportional to the table) and serving the subordinates go on in
	// the background, so the forwarding gap does not grow with the table.
	rctx, cancel := context.WithCancel(e.runCtx)
	wg := &sync.WaitGroup{}
	mirrored := make(chan struct{})
	e.mu.Lock()
	e.pri.cancel, e.pri.wg, e.pri.ctx, e.pri.mirrored = cancel, wg, rctx, mirrored
	e.mu.Unlock()
	e.goRole(wg, func() {
		evs, err := e.be.Watch(rctx)
		if err != nil {
			close(mirrored)
			e.log.Error("session pickup: watching the table; subordinates get no sessions", "err", err)
			return
		}
		if err := resync(rctx, e, e.sessions()); err != nil && rctx.Err() == nil {
			e.log.Error("session pickup: dumping the table", "err", err)
		}
		e.mu.Lock()
		if rctx.Err() == nil {
			e.pri.serving = true
			for _, p := range e.pri.peers {
				e.startPeerLocked(p)
			}
		}
		n := e.tab.len()
		e.mu.Unlock()
		close(mirrored)
		e.log.Info("session pickup: primary", "sessions", n)
		if xb, ok := e.expectBackend(); ok && rctx.Err() == nil {
			e.goRole(wg, func() { e.mirrorExpects(rctx, xb) }) // masters first
		}
		e.mirrorLoop(rctx, evs)
	})
	return nil
}

// WaitMirrored waits until a new primary has dumped its table and serves
// the subordinates (BecomePrimary returns before that).
func (e *Engine) WaitMirrored(ctx context.Context) error {
	e.mu.Lock()
	ch := e.pri.mirrored
	e.mu.Unlock()
	if ch == nil {
		return fmt.Errorf("sessions: not primary")
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (e *Engine) goRole(wg *sync.WaitGroup, fn func()) {
	wg.Add(1)
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		defer wg.Done()
		fn()
	}()
}

// secs is the engine's clock for the table: seconds since Start.
func (e *Engine) secs() uint32 { return uint32(e.now().Sub(e.start) / time.Second) }

// mirrorLoop keeps the table equal to the backend's and feeds the peers.
func (e *Engine) mirrorLoop(ctx context.Context, evs <-chan session.Event) {
	refresh := time.NewTicker(e.refreshTick())
	defer refresh.Stop()
	tick := time.Second
	if e.cfg.Delay > 0 && e.cfg.Delay/4 < tick {
		tick = max(e.cfg.Delay/4, 10*time.Millisecond)
	}
	delay := time.NewTicker(tick)
	defer delay.Stop()
	follow(ctx, e, evs, mirror[session.Event]{
		watch:       e.be.Watch,
		lost:        func(ev session.Event) bool { return ev.Kind == session.EventOverflow },
		ended:       func() { e.log.Error("session pickup: event stream ended; watching again") },
		watchFailed: "session pickup: watch",
		resync: func(ctx context.Context) error {
			e.count(&e.st.overflows)
			e.obs.Resync("event-overflow")
			return resync(ctx, e, e.sessions())
		},
		resyncFailed: "session pickup: dump after overflow",
		fold: func(ev session.Event) {
			e.mu.Lock()
			e.observeLocked(&ev, false)
			e.mu.Unlock()
		},
	}, every{refresh.C, func() {
		if err := e.refresh(ctx); err != nil && ctx.Err() == nil {
			e.log.Error("session pickup: refresh", "err", err)
		}
	}}, every{delay.C, e.promote})
}

// mirror is how a primary follows one kind of its backend's records
// (sessions, expectations) through their events.
type mirror[E any] struct {
	watch        func(context.Context) (<-chan E, error)
	lost         func(E) bool // the event says events were lost
	ended        func()       // the stream ended (logged, before watching again)
	watchFailed  string       // logged when watching again fails
	resync       func(context.Context) error
	resyncFailed string // logged when the resync after a loss fails
	fold         func(E)
}

// every runs fn at each tick of c.
type every struct {
	c  <-chan time.Time
	fn func()
}

// follow folds the events of evs until ctx ends, and runs a's and b's
// work at their ticks. A stream that ends is watched again; that, and an
// event loss, is repaired by a resync.
func follow[E any](ctx context.Context, e *Engine, evs <-chan E, m mirror[E], a, b every) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-evs:
			if !ok {
				if ctx.Err() != nil {
					return
				}
				m.ended()
				e.count(&e.st.errors)
				var err error
				if evs, err = m.watch(ctx); err != nil {
					e.log.Error(m.watchFailed, "err", err)
					return
				}
			} else if !m.lost(ev) {
				m.fold(ev)
				continue
			}
			if err := m.resync(ctx); err != nil && ctx.Err() == nil {
				e.log.Error(m.resyncFailed, "err", err)
			}
		case <-a.c:
			a.fn()
		case <-b.c:
			b.fn()
		}
	}
}

// observeLocked folds one event or dumped entry into the table and queues
// what the subordinates must learn.
func (e *Engine) observeLocked(ev *session.Event, fromDump bool) {
	s := &ev.Session
	if !e.cfg.Expectation {
		s.Helper = session.Name{} // helpers travel only for expectations
	}
	now := e.secs()
	_, meta, ok := e.tab.get(s.Key)
	if ev.Kind == session.EventDestroy || e.sel.skip(s) != "" {
		if ok {
			e.tab.del(s.Key)
			if meta.synced {
				e.enqueueLocked(session.Change{Op: session.Delete, Session: session.Session{Key: s.Key}})
			}
		}
		return
	}
	if !ok {
		meta = entry{first: now, synced: e.cfg.Delay <= 0, mark2: e.gen}
		if meta.synced {
			meta.expires = now + s.Timeout
		}
		if !e.tab.put(s, meta) {
			e.fullLocked()
			return
		}
		if meta.synced {
			e.enqueueLocked(session.Change{Op: session.Upsert, Session: *s})
			e.masterSyncedLocked(s.Key)
		} else {
			e.pri.pending = append(e.pri.pending, pendingKey{s.Key, now})
		}
		return
	}
	var labels [16]byte
	if meta.labels {
		labels = e.tab.labels[s.Key]
	}
	changed := !sameState(s, &meta, labels)
	// Traffic refreshes a kernel timeout without an event: the dump is how
	// the primary learns it, and copies about to expire are sent again.
	expiring := e.expiring(meta, now)
	meta.mark2 = e.gen
	send := meta.synced && (!fromDump || changed || expiring)
	if send {
		meta.expires = now + s.Timeout
	}
	e.tab.put(s, meta)
	if send {
		e.enqueueLocked(session.Change{Op: session.Upsert, Exists: true, Session: *s})
	}
}

// expiring reports whether a synced session's copies expire before the
// refresh after next could re-send it.
func (e *Engine) expiring(meta entry, now uint32) bool {
	return int64(meta.expires)-int64(now) < int64(2*e.cfg.Refresh/time.Second)+5
}

// refresh keeps the subordinates' copies from expiring: a dump of the
// whole table (resync) every Refresh while it is small (LookupMin), and
// every FullRefresh once it is large, with a lookup of only the sessions
// whose copies near expiry in between. In a table of long-lived TCP sessions
// that is next to none: a primary holding a million of them no longer
// spends seconds of CPU on a dump every Refresh. DumpInterval replaces
// the size rule with a fixed period, or no dump at all.
func (e *Engine) refresh(ctx context.Context) error {
	l, ok := e.be.(Looker)
	e.mu.Lock()
	full := !ok || e.dumpDueLocked()
	var keys []session.Key
	if !full {
		now := e.secs()
		for k, m := range e.tab.all() {
			if m.synced && e.expiring(m, now) {
				keys = append(keys, k)
			}
		}
	}
	e.mu.Unlock()
	if full {
		return resync(ctx, e, e.sessions())
	}
	if len(keys) == 0 {
		return nil
	}
	found := make(map[session.Key]bool, len(keys))
	r := reader[session.Session]{e: e, m: e.sessions()}
	if err := l.Lookup(ctx, keys, func(s session.Session) error {
		found[s.Key] = true
		return r.add(s)
	}); err != nil {
		return err
	}
	r.flush()
	// A key the table no longer holds ended without its event reaching us.
	e.mu.Lock()
	defer e.mu.Unlock()
	e.forgetLocked(slices.DeleteFunc(keys, func(k session.Key) bool { return found[k] }))
	return nil
}

// refreshTick is the period of refresh: Refresh, or DumpInterval when
// that is shorter, so that its dumps are not rounded up to Refresh.
func (e *Engine) refreshTick() time.Duration {
	if d := e.cfg.DumpInterval; d > 0 && d < e.cfg.Refresh {
		return d
	}
	return e.cfg.Refresh
}

// dumpDueLocked reports whether this refresh dumps the whole table.
func (e *Engine) dumpDueLocked() bool {
	switch d := e.cfg.DumpInterval; {
	case d < 0:
		return false
	case d > 0:
		// Half a tick's slack: a dump's round begins a little after its
		// tick, and the next tick must not find it a hair too recent
		// and put the dump off by a whole tick.
		return e.now().Sub(e.pri.lastDump) >= d-e.refreshTick()/2
	}
	return e.tab.len() < e.cfg.LookupMin || e.now().Sub(e.pri.lastDump) >= e.cfg.FullRefresh
}

// forgetLocked folds the ends of sessions the backend no longer holds into
// the table, as their destroy events would have.
func (e *Engine) forgetLocked(keys []session.Key) {
	for _, k := range keys {
		ev := session.Event{Kind: session.EventDestroy, Session: session.Session{Key: k}}
		e.observeLocked(&ev, true)
	}
}

// As primary, the engine's table mirrors the backend's sessions; a dump
// round is numbered in Engine.gen and marks what it sees in entry.mark2.

func (s sessionStore) dump(ctx context.Context, fn func(session.Session) error) error {
	return s.e.be.Dump(ctx, fn)
}

func (s sessionStore) newRoundLocked() uint32 {
	s.e.gen++
	s.e.pri.lastDump = s.e.now()
	return s.e.gen
}

// foldLocked folds a dumped or looked-up session: changes and near-expiry
// entries are sent.
func (s sessionStore) foldLocked(x *session.Session) {
	ev := session.Event{Kind: session.EventUpdate, Session: *x}
	s.e.observeLocked(&ev, true)
}

func (s sessionStore) forgetUnseenLocked(round uint32) {
	var gone []session.Key
	for k, m := range s.e.tab.all() {
		if m.mark2 != round {
			gone = append(gone, k)
		}
	}
	s.e.forgetLocked(gone)
}

// promote syncs the sessions that have aged past Delay.
func (e *Engine) promote() {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.secs()
	d := uint32(e.cfg.Delay / time.Second)
	i := 0
	for ; i < len(e.pri.pending) && now-e.pri.pending[i].first >= d; i++ {
		k := e.pri.pending[i].k
		s, meta, ok := e.tab.get(k)
		if !ok || meta.synced || meta.first != e.pri.pending[i].first {
			continue
		}
		meta.synced, meta.expires = true, now+s.Timeout
		e.tab.setMeta(k, meta)
		e.enqueueLocked(session.Change{Op: session.Upsert, Session: s})
		e.masterSyncedLocked(k)
	}
	e.pri.pending = append(e.pri.pending[:0], e.pri.pending[i:]...)
}

func (e *Engine) fullLocked() {
	e.st.full++
	e.obs.TableFull()
	now := e.now()
	if now.Sub(e.st.fullLoggedAt) >= time.Minute {
		e.st.fullLoggedAt = now
		e.log.Warn("session pickup: max_sessions reached; new sessions are not synced", "max_sessions", e.cfg.MaxSessions)
	}
}

// enqueueLocked hands a session change to the subordinates.
func (e *Engine) enqueueLocked(c session.Change) { sessionKind.enqueueLocked(e, c) }
