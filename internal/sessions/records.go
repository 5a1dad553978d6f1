package sessions

import "context"

// Sessions and expectations are kept by one set of paths: a primary mirrors
// each kind of its backend's records with one dump round (resync), and a
// subordinate installs each kind with one install path and sweeps it at
// the end of a bulk with one sweep. A kind's store says what differs: where
// the records live (the sessions in the compact table, table.go; the
// expectations in small maps, expect.go), their bounds, their counts, and
// how the backend reads and installs them.

// held is how a subordinate keeps one kind of record, whose changes are C.
// Every record held is marked with the bulk (Engine.gen) that last brought
// it, so that the end of a bulk sweeps what the primary no longer has.
type held[C any] interface {
	// admitLocked readies c for the backend, or refuses it (counting
	// why): the kind's bound is reached, or the kind is not synced here.
	admitLocked(c *C) bool
	// install hands the admitted changes to the backend.
	install(ctx context.Context, cs []C) error
	// recordLocked notes the changes installed: held from this bulk, or
	// gone. It runs while the backend installs them.
	recordLocked(cs []C)
	// report counts and logs the outcome of install.
	report(cs []C, err error)
	// staleLocked returns the deletes of the records held from older
	// bulks than the current one.
	staleLocked() []C
}

// install installs changes of one kind received from the primary into the
// backend, and records them.
func install[C any](ctx context.Context, e *Engine, h held[C], cs []C) {
	e.mu.Lock()
	keep := cs[:0]
	for _, c := range cs {
		if h.admitLocked(&c) {
			keep = append(keep, c)
		}
	}
	e.mu.Unlock()
	// A large batch is recorded while the backend installs it (both only
	// read keep), so that on a bulk the bookkeeping costs no time beside
	// the kernel's; the call still returns only when both are done.
	installed := make(chan error, 1)
	if len(keep) >= concurrentRecordMin {
		go func() { installed <- h.install(ctx, keep) }()
	} else {
		installed <- h.install(ctx, keep)
	}
	e.mu.Lock()
	h.recordLocked(keep)
	e.mu.Unlock()
	h.report(keep, <-installed)
}

// concurrentRecordMin is the batch size from which install records while
// the backend installs.
const concurrentRecordMin = 256

// sweepBatch bounds the deletes a sweep hands the backend at once.
const sweepBatch = 4096

// sweep deletes, at the end of a bulk, the records of one kind held from
// older bulks: the primary no longer has them. It returns how many.
func sweep[C any](ctx context.Context, e *Engine, h held[C]) int {
	e.mu.Lock()
	dels := h.staleLocked()
	e.mu.Unlock()
	installAll(ctx, e, h, dels)
	return len(dels)
}

// installAll installs cs, sweepBatch at a time.
func installAll[C any](ctx context.Context, e *Engine, h held[C], cs []C) {
	for i := 0; i < len(cs); i += sweepBatch {
		install(ctx, e, h, cs[i:min(i+sweepBatch, len(cs))])
	}
}

// mirrored is how a primary mirrors one kind of its backend's records,
// R: read by a dump, folded into the kind's store, and what a dump round
// did not see forgotten (and its deletion sent).
type mirrored[R any] interface {
	dump(ctx context.Context, fn func(R) error) error
	// newRoundLocked starts a dump round and returns its number: every
	// record folded from now on, dumped or from an event, is seen in it.
	newRoundLocked() uint32
	// foldLocked folds one record read from the backend.
	foldLocked(r *R)
	// forgetUnseenLocked forgets the records round did not see: the
	// backend no longer holds them, and their end event was lost.
	forgetUnseenLocked(round uint32)
}

// resync dumps one kind of the backend's records and diffs them into its
// store: what changed is sent, what is gone is deleted.
func resync[R any](ctx context.Context, e *Engine, m mirrored[R]) error {
	e.mu.Lock()
	round := m.newRoundLocked()
	e.mu.Unlock()
	r := reader[R]{e: e, m: m}
	if err := m.dump(ctx, r.add); err != nil {
		return err
	}
	r.flush()
	e.mu.Lock()
	defer e.mu.Unlock()
	m.forgetUnseenLocked(round)
	return nil
}

// reader folds records read from the backend (a dump, or lookups) into
// their store in batches, taking the engine's lock once per batch.
type reader[R any] struct {
	e     *Engine
	m     mirrored[R]
	batch []R
}

// readBatch is how many records a reader folds under one lock.
const readBatch = 1024

func (r *reader[R]) add(x R) error {
	r.batch = append(r.batch, x)
	if len(r.batch) == readBatch {
		r.flush()
	}
	return nil
}

func (r *reader[R]) flush() {
	r.e.mu.Lock()
	for i := range r.batch {
		r.m.foldLocked(&r.batch[i])
	}
	r.e.mu.Unlock()
	r.batch = r.batch[:0]
}

// sessionStore keeps the sessions: in the engine's compact table, as
// primary and as subordinate.
type sessionStore struct{ e *Engine }

func (e *Engine) sessions() sessionStore { return sessionStore{e} }
