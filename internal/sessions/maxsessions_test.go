package sessions

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/hagate/hagate/internal/sessions/session"
)

// max_sessions bounds a subordinate's kernel table too, not only its own:
// a batch that crosses the bound installs only what fits.
func TestSubordinateMaxSessionsPerBatch(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := startNode(t, ctx, "gw1", nil)
	s := startNode(t, ctx, "gw2", func(c *EngineConfig) { c.MaxSessions = 10 })
	var cs []session.Change
	for i := range 25 {
		cs = append(cs, upsert(ftpControl(i)))
	}
	p.mem.Inject(cs...)
	if err := s.e.BecomeSubordinate(ctx, "gw1"); err != nil {
		t.Fatal(err)
	}
	p.e.SetPeers([]netip.AddrPort{s.addr(t)})
	if err := p.e.becomePrimaryMirrored(ctx); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); s.e.Stats().TableFull == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the bound was never reached: %+v", s.e.Stats())
		}
	}
	time.Sleep(100 * time.Millisecond)
	if n := s.mem.Len(); n > 10 {
		t.Fatalf("subordinate's kernel table holds %d sessions, max_sessions 10", n)
	}
}
