package sessions

import (
	"context"
	"time"

	"github.com/hagate/hagate/internal/sessions/session"
)

// A subordinate may hold the new sessions of the primary's stream of
// changes in its table for InstallDelay before it installs them in its
// kernel: most connections are short (a DNS query, a small web request),
// and one that ends within the delay then costs the subordinate no kernel
// work at all, where a kernel install and delete are nearly all of a
// subordinate's CPU under churn. Nothing is lost by it: the held sessions
// are in the table (counted, in the digest), and when the stream ends (a
// promotion waits for that, see BecomePrimary, or a new primary's bulk
// follows) every held session is installed first. What it costs is that
// takeover time: about the rate of new sessions times the delay, installed
// before the addresses are claimed. MaxHeldBack bounds it whatever the
// rate: beyond it the oldest held sessions are installed before their
// delay has passed. Sessions of a bulk or a repair are installed at once
// (the primary has held them a while), and so is a held session a bulk or
// a repair brings again.

// heldBack is the new sessions received as subordinate and not yet in the
// kernel. Guarded by Engine.mu.
type heldBack struct {
	due   map[session.Key]time.Time // when each is installed
	queue []heldKey                 // in arrival order, so in due order
}

type heldKey struct {
	k   session.Key
	due time.Time
}

func (h *heldBack) len() int { return len(h.due) }

// heldBackTick is how often due sessions are installed: often enough that
// one is at most a quarter of the delay late, seldom enough to batch.
func heldBackTick(delay time.Duration) time.Duration {
	return min(max(delay/4, 10*time.Millisecond), time.Second)
}

// holdBackLocked records c in the table without installing it when it is
// a new session of the stream (or a change of a session held back), and
// then reports true. A delete of a held session ends it; a held session a
// bulk or repair brings again is released to be installed with it.
func (e *Engine) holdBackLocked(c *session.Change) bool {
	h := &e.sub.held
	k := c.Session.Key
	_, held := h.due[k]
	stream := e.cfg.InstallDelay > 0 && !e.sub.bulk && !e.sub.repair
	switch {
	case held && c.Op == session.Delete:
		delete(h.due, k)
		e.tab.del(k)
		return true
	case held && !stream:
		delete(h.due, k)
		c.Exists = false
		return false
	case held:
		e.tab.put(&c.Session, entry{synced: true, mark2: e.gen})
		return true
	case stream && c.Op == session.Upsert && !c.Exists:
		if h.due == nil {
			h.due = map[session.Key]time.Time{}
		}
		due := e.now().Add(e.cfg.InstallDelay)
		h.due[k] = due
		h.queue = append(h.queue, heldKey{k, due})
		e.tab.put(&c.Session, entry{synced: true, mark2: e.gen})
		return true
	}
	return false
}

// heldOverLocked reports whether more sessions are held back than
// MaxHeldBack allows.
func (e *Engine) heldOverLocked() bool {
	return e.cfg.MaxHeldBack > 0 && e.sub.held.len() > e.cfg.MaxHeldBack
}

// installHeldBack installs the held sessions that are due, or all of them,
// and returns how many; while more are held than MaxHeldBack allows, the
// oldest are due. Each is installed as the table holds it now, its timeout
// shortened by the time it was held.
func (e *Engine) installHeldBack(ctx context.Context, all bool) int {
	e.mu.Lock()
	h := &e.sub.held
	now := e.now()
	var cs []session.Change
	early := 0
	for len(h.queue) > 0 {
		q := h.queue[0]
		over := e.heldOverLocked()
		if !all && q.due.After(now) && !over {
			break
		}
		h.queue = h.queue[1:]
		if due, ok := h.due[q.k]; !ok || !due.Equal(q.due) {
			continue // ended, or released to a bulk or repair
		}
		delete(h.due, q.k)
		if !all && q.due.After(now) {
			early++
		}
		s, _, ok := e.tab.get(q.k)
		if !ok {
			continue
		}
		heldFor := uint32(max(now.Sub(q.due)+e.cfg.InstallDelay, 0) / time.Second)
		s.Timeout = max(s.Timeout-min(heldFor, s.Timeout), 1)
		cs = append(cs, session.Change{Op: session.Upsert, Session: s})
	}
	if len(h.queue) == 0 {
		h.queue = nil // let the array go
	}
	if early > 0 && e.st.installedEarly == 0 {
		e.log.Info("session pickup: more sessions held back than max_held_back; installing the oldest before their install_delay", "max_held_back", e.cfg.MaxHeldBack)
	}
	e.st.installedEarly += uint64(early)
	e.mu.Unlock()
	for i := 0; i < len(cs); i += sweepBatch {
		part := cs[i:min(i+sweepBatch, len(cs))]
		e.sessions().report(part, e.be.Apply(ctx, part))
	}
	return len(cs)
}

// endStream is the end of a connection from the primary: what is held
// back is installed (unless the engine is stopping), and the next
// connection starts outside a bulk or repair.
func (e *Engine) endStream(ctx context.Context) {
	if ctx.Err() == nil {
		start := e.now()
		if n := e.installHeldBack(ctx, true); n > 0 {
			e.log.Info("session pickup: installed the sessions held back (install_delay)", "sessions", n, "took", e.now().Sub(start))
		}
	}
	e.mu.Lock()
	e.sub.bulk, e.sub.repair = false, false
	e.mu.Unlock()
}
