package sessions

import (
	"context"
	"slices"
	"time"

	"github.com/hagate/hagate/internal/sessions/session"
)

// coalesceWindow is how long at most a primary lets a subordinate's
// changes gather before it sends them: the changes of one session inside
// it are sent as one (its last state), a session created and ended inside
// it is never sent, and more changes share a frame and a kernel batch on
// the subordinate. It delays a change by at most this, which a failover
// then loses, as it loses a session younger than session_pickup.delay.
const coalesceWindow = 20 * time.Millisecond

// gather lets p's changes gather before they are sent, as Nagle's
// algorithm does: not at all while p has acknowledged every batch (a
// change then reaches it after the network's and its kernel's time, not
// the window's), else until it acknowledges or the window passes. Under
// load the batches so grow with the subordinate's backlog, and quiet, the
// lag per change stays a few milliseconds. False: ctx ended.
func (e *Engine) gather(ctx context.Context, p *peer) bool {
	select {
	case <-p.acked: // an earlier ack's token: the check below decides
	default:
	}
	e.mu.Lock()
	inFlight := p.sentSeq != p.ackedSeq
	e.mu.Unlock()
	if !inFlight {
		return ctx.Err() == nil
	}
	t := time.NewTimer(coalesceWindow)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	case <-p.acked:
	}
	return true
}

// coalesce folds the changes of q in place, in order, into one per session
// (its last state) and returns them:
//   - updates of one session: the last, still a create if the first was;
//   - a create then a delete: nothing, the subordinate never had it;
//   - an update then a delete: the delete;
//   - a delete then a create (the key reused): both.
func coalesce(q []session.Change) []session.Change {
	if len(q) < 2 {
		return q
	}
	at := make(map[session.Key]int, len(q))
	out := q[:0]
	dropped := false
	for _, c := range q {
		i, ok := at[c.Session.Key]
		if !ok || out[i].Op == session.Delete {
			at[c.Session.Key] = len(out)
			out = append(out, c)
			continue
		}
		prev := &out[i]
		switch {
		case c.Op == session.Upsert:
			exists := prev.Exists
			*prev = c
			prev.Exists = exists
		case !prev.Exists: // created inside the window, ended inside it
			prev.Op = 0
			delete(at, c.Session.Key)
			dropped = true
		default:
			*prev = c
		}
	}
	if dropped {
		out = slices.DeleteFunc(out, func(c session.Change) bool { return c.Op == 0 })
	}
	return out
}
