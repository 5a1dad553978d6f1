package sessions

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/hagate/hagate/internal/seal"
	"github.com/hagate/hagate/internal/sessions/session"
)

func keyring(t *testing.T, keys ...string) *seal.Keyring {
	t.Helper()
	kr, err := seal.ParseKeys([]byte(strings.Join(keys, "\n") + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

// TestEngineRekey walks through a key rollover on a live sync connection as
// docs/config.md describes it (add the new key second, make it first, drop
// the old one, each step reloaded on every member) and shows that a key the
// subordinate does not list stops the sync: the test can fail.
func TestEngineRekey(t *testing.T) {
	const oldKey, newKey, strange = "session sync test key 0123456789", "the next session sync key 98765", "a key nobody else has 0000000000"
	ctx, p, s := pair(t, nil)
	if err := p.e.becomePrimaryMirrored(ctx); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(11, 12))
	live := map[int]session.Session{}
	churn(r, p.mem, live, 200, 1000)
	converge(t, p, s)
	bulks := p.e.Stats().Peers[0].Bulks

	for _, step := range [][]string{{oldKey, newKey}, {newKey, oldKey}, {newKey}} {
		for _, n := range []*node{s, p} {
			if err := n.e.Rekey(keyring(t, step...)); err != nil {
				t.Fatal(err)
			}
		}
		churn(r, p.mem, live, 200, 1000)
		converge(t, p, s)
	}
	if got := p.e.Stats().Peers[0].Bulks; got != bulks {
		t.Errorf("rollover cost %d resyncs, want none", got-bulks)
	}

	// The primary alone moves to a key the subordinate does not list.
	if err := p.e.Rekey(keyring(t, strange)); err != nil {
		t.Fatal(err)
	}
	errs := s.e.Stats().FrameErrors
	p.mem.Inject(session.Change{Op: session.Upsert, Session: synthSession(5000)})
	deadline := time.Now().Add(5 * time.Second)
	for s.e.Stats().FrameErrors == errs {
		if time.Now().After(deadline) {
			t.Fatal("frames sealed with an unknown key were not refused")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, ok := s.mem.Get(synthSession(5000).Key); ok {
		t.Fatal("subordinate installed a session sealed with a key it does not list")
	}
	if err := s.e.Rekey(keyring(t, strange)); err != nil {
		t.Fatal(err)
	}
	converge(t, p, s)
}
