package sessions

import (
	"context"
	"errors"
	"maps"
	"sync"

	"github.com/hagate/hagate/internal/sessions/session"
)

// Memory is a Backend held in memory, for the simulation, the rootless demo
// and tests. Inject stands in for traffic: it changes the table and emits the
// events the kernel would. Safe for concurrent use.
type Memory struct {
	mu     sync.Mutex
	m      map[session.Key]session.Session
	events fanout[session.Event]
	queue  int
	// expectations (expect_memory.go)
	xm      map[session.ExpectKey]session.Expect
	xevents fanout[session.ExpectEvent]
	// ApplyErr, when set, makes Apply fail (for tests).
	ApplyErr error
	// Refuse, when set, makes Apply refuse the changes it picks, as the
	// kernel refuses one entry of a batch and takes the others (for
	// tests). Called with mu held.
	Refuse func(*session.Change) bool
	// dumps and lookups count the calls of Dump and the keys found by
	// Lookup (Reads).
	dumps, lookups int
}

// Reads returns how many times the table was dumped and how many entries
// were looked up by key.
func (m *Memory) Reads() (dumps, lookups int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.dumps, m.lookups
}

// NewMemory returns an empty table whose watchers get channels of queue
// events; a watcher that falls behind gets an EventOverflow, like a kernel
// socket.
func NewMemory(queue int) *Memory {
	if queue <= 0 {
		queue = 4096
	}
	return &Memory{m: map[session.Key]session.Session{}, queue: queue, xm: map[session.ExpectKey]session.Expect{},
		events:  fanout[session.Event]{overflow: session.Event{Kind: session.EventOverflow}},
		xevents: fanout[session.ExpectEvent]{overflow: session.ExpectEvent{Kind: session.EventOverflow}}}
}

// Inject applies changes as traffic would and emits their events.
func (m *Memory) Inject(changes ...session.Change) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range changes {
		ev := session.Event{Session: c.Session}
		switch c.Op {
		case session.Upsert:
			ev.Kind = session.EventUpdate
			if _, ok := m.m[c.Session.Key]; !ok {
				ev.Kind = session.EventNew
			}
			m.m[c.Session.Key] = c.Session
		case session.Delete:
			old, ok := m.m[c.Session.Key]
			if !ok {
				continue
			}
			delete(m.m, c.Session.Key)
			ev.Kind, ev.Session = session.EventDestroy, old
			m.masterGoneLocked(c.Session.Key)
		}
		m.emit(ev)
	}
}

func (m *Memory) emit(ev session.Event) { m.events.emit(ev) }

// fanout is a Memory's watchers of one kind of event. Guarded by Memory.mu.
type fanout[E any] struct {
	chans    []chan E
	overflow E // what a watcher that fell behind gets instead
}

// emit sends ev to every watcher without blocking, like the kernel.
func (f *fanout[E]) emit(ev E) {
	for _, w := range f.chans {
		select {
		case w <- ev:
		default:
			// Full: the event is lost; make sure the reader learns of it.
			select {
			case w <- f.overflow:
			default:
				<-w // drop the oldest to make room for the overflow mark
				w <- f.overflow
			}
		}
	}
}

// watch adds a watcher of queue events until ctx ends.
func (f *fanout[E]) watch(ctx context.Context, mu *sync.Mutex, queue int) <-chan E {
	ch := make(chan E, queue)
	mu.Lock()
	f.chans = append(f.chans, ch)
	mu.Unlock()
	context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		for i, w := range f.chans {
			if w == ch {
				f.chans = append(f.chans[:i], f.chans[i+1:]...)
				close(ch)
				break
			}
		}
	})
	return ch
}

// Get returns the entry with key k.
func (m *Memory) Get(k session.Key) (session.Session, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.m[k]
	return s, ok
}

// Lookup implements Looker.
func (m *Memory) Lookup(ctx context.Context, keys []session.Key, fn func(session.Session) error) error {
	for _, k := range keys {
		if err := ctx.Err(); err != nil {
			return err
		}
		m.mu.Lock()
		s, ok := m.m[k]
		if ok {
			m.lookups++
		}
		m.mu.Unlock()
		if !ok {
			continue
		}
		if err := fn(s); err != nil {
			return err
		}
	}
	return nil
}

// Snapshot returns a copy of the table.
func (m *Memory) Snapshot() map[session.Key]session.Session {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.m)
}

// Len returns the number of entries.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.m)
}

// Dump implements Backend.
func (m *Memory) Dump(ctx context.Context, fn func(session.Session) error) error {
	m.mu.Lock()
	m.dumps++
	m.mu.Unlock()
	return each(ctx, m.Snapshot(), fn)
}

// each calls fn for every record of a copy of a Memory's table, as a dump
// of the kernel's would.
func each[K comparable, R any](ctx context.Context, all map[K]R, fn func(R) error) error {
	for _, r := range all {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

// Watch implements Backend.
func (m *Memory) Watch(ctx context.Context) (<-chan session.Event, error) {
	return m.events.watch(ctx, &m.mu, m.queue), nil
}

// Apply implements Backend. Like the kernel's, it emits events for what it
// changes.
func (m *Memory) Apply(ctx context.Context, changes []session.Change) error {
	if m.ApplyErr != nil {
		return m.ApplyErr
	}
	var ae session.ApplyError
	taken := changes
	m.mu.Lock()
	if m.Refuse != nil {
		taken = nil
		for i := range changes {
			if m.Refuse(&changes[i]) {
				ae.Failed = append(ae.Failed, i)
			} else {
				taken = append(taken, changes[i])
			}
		}
	}
	m.mu.Unlock()
	m.Inject(taken...)
	if len(ae.Failed) == 0 {
		return nil
	}
	ae.Err = errors.New("refused (test)")
	return &ae
}

// Flush implements Backend.
func (m *Memory) Flush(ctx context.Context) error {
	m.mu.Lock()
	var keys []session.Change
	for k := range m.m {
		keys = append(keys, session.Change{Op: session.Delete, Session: session.Session{Key: k}})
	}
	m.mu.Unlock()
	m.Inject(keys...)
	return nil
}

// Close implements Backend.
func (m *Memory) Close() error { return nil }
