package sessions

import (
	"context"
	"errors"
	"fmt"
	"maps"

	"github.com/hagate/hagate/internal/sessions/session"
)

// Memory holds expectations like the kernel: one needs its master in the
// table, with a helper, and goes when its master goes.

// errNoHelper is what Memory answers, like the kernel (EOPNOTSUPP), to an
// expectation whose master has no helper.
var errNoHelper = errors.New("master connection has no helper")

var _ ExpectBackend = (*Memory)(nil)

// InjectExpect applies expectation changes as helpers would, without the
// checks of ApplyExpect, and emits their events.
func (m *Memory) InjectExpect(changes ...session.ExpectChange) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range changes {
		m.applyExpectLocked(&c)
	}
}

func (m *Memory) applyExpectLocked(c *session.ExpectChange) {
	k := c.Expect.ExpectKey
	switch c.Op {
	case session.Upsert:
		if old, ok := m.xm[k]; ok {
			old.Timeout = c.Expect.Timeout // what the kernel's update changes
			m.xm[k] = old
			return
		}
		m.xm[k] = c.Expect
		m.emitExpect(session.ExpectEvent{Kind: session.EventNew, Expect: c.Expect})
	case session.Delete:
		if old, ok := m.xm[k]; ok {
			delete(m.xm, k)
			m.emitExpect(session.ExpectEvent{Kind: session.EventDestroy, Expect: old})
		}
	}
}

// masterGoneLocked removes the expectations of a deleted session.
func (m *Memory) masterGoneLocked(k session.Key) {
	for xk, x := range m.xm {
		if x.Master == k {
			delete(m.xm, xk)
			m.emitExpect(session.ExpectEvent{Kind: session.EventDestroy, Expect: x})
		}
	}
}

func (m *Memory) emitExpect(ev session.ExpectEvent) { m.xevents.emit(ev) }

// Expects returns a copy of the expectations.
func (m *Memory) Expects() map[session.ExpectKey]session.Expect {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.xm)
}

// DumpExpect implements ExpectBackend.
func (m *Memory) DumpExpect(ctx context.Context, fn func(session.Expect) error) error {
	return each(ctx, m.Expects(), fn)
}

// WatchExpect implements ExpectBackend.
func (m *Memory) WatchExpect(ctx context.Context) (<-chan session.ExpectEvent, error) {
	return m.xevents.watch(ctx, &m.mu, m.queue), nil
}

// ApplyExpect implements ExpectBackend. An expectation whose master is
// missing is refused with session.ErrNoMaster, one whose master has no
// helper with an error, as the kernel does.
func (m *Memory) ApplyExpect(ctx context.Context, changes []session.ExpectChange) error {
	if m.ApplyErr != nil {
		return m.ApplyErr
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	for i := range changes {
		c := &changes[i]
		if c.Op == session.Upsert {
			master, ok := m.m[c.Expect.Master]
			if !ok {
				errs = append(errs, fmt.Errorf("install %s: %w", c.Expect.ExpectKey, session.ErrNoMaster))
				continue
			}
			if master.Helper.IsZero() {
				errs = append(errs, fmt.Errorf("install %s: %w", c.Expect.ExpectKey, errNoHelper))
				continue
			}
		}
		m.applyExpectLocked(c)
	}
	return errors.Join(errs...)
}
