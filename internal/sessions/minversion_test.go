package sessions

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// security.min_sync_version: a peer that speaks only a version below it is
// refused, whichever end it is; at the default (3) a build that speaks
// version 1 (no challenge, replayable) gets nothing. TestEngineExpectation
// VersionMix shows the same pair syncing without the bound.
func TestEngineMinVersionRefusesOlder(t *testing.T) {
	for _, primaryOld := range []bool{true, false} {
		t.Run(fmt.Sprintf("primary_old=%v", primaryOld), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			conf := func(isOld bool) func(*EngineConfig) {
				return func(c *EngineConfig) {
					c.MinVersion = 3
					if isOld {
						c.maxVersion = 1
					}
				}
			}
			p := startNode(t, ctx, "gw1", conf(primaryOld))
			s := startNode(t, ctx, "gw2", conf(!primaryOld))
			if err := s.e.BecomeSubordinate(ctx, "gw1"); err != nil {
				t.Fatal(err)
			}
			p.e.SetPeers([]netip.AddrPort{s.addr(t)})
			m := ftpControl(1)
			p.mem.Inject(upsert(m))
			if err := p.e.becomePrimaryMirrored(ctx); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Second)
			if _, ok := s.mem.Get(m.Key); ok {
				t.Fatal("a session synced over protocol version 1 with min_sync_version 3")
			}
		})
	}
}
