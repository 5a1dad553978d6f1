package sessions

import (
	"testing"

	"github.com/hagate/hagate/internal/sessions/session"
)

func TestCoalesce(t *testing.T) {
	a, b, c := synthSession(1), synthSession(2), synthSession(3)
	a2 := a
	a2.Timeout = 999
	create := func(s session.Session) session.Change { return session.Change{Op: session.Upsert, Session: s} }
	update := func(s session.Session) session.Change {
		return session.Change{Op: session.Upsert, Exists: true, Session: s}
	}
	del := func(s session.Session) session.Change {
		return session.Change{Op: session.Delete, Session: session.Session{Key: s.Key}}
	}
	got := coalesce([]session.Change{
		create(a), update(b), update(a2), // a: one create with its last state
		create(c), del(c), // c: never sent
		del(b),    // b: the delete
		create(c), // c again: sent
	})
	want := []session.Change{create(a2), del(b), create(c)}
	if len(got) != len(want) {
		t.Fatalf("coalesced to %d changes %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i].Op != want[i].Op || got[i].Exists != want[i].Exists || got[i].Session.Key != want[i].Session.Key || got[i].Session.Timeout != want[i].Session.Timeout {
			t.Errorf("change %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	// A delete, then the key reused: both go, in order.
	got = coalesce([]session.Change{update(a), del(a), create(a2)})
	if len(got) != 2 || got[0].Op != session.Delete || got[1].Op != session.Upsert || got[1].Exists {
		t.Fatalf("delete then create coalesced to %+v, want the delete then the create", got)
	}
}
