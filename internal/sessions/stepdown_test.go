package sessions

import (
	"context"
	"net/netip"
	"testing"
	"time"
)

// A primary that steps down keeps the sessions it forwarded until the new
// primary's first bulk begins: when the member it stepped down for is gone
// before (a heartbeat of a dead primary read late made it look alive), it
// takes the role back with them. Once the new primary's bulk comes, they
// are replaced by the new primary's.
func TestSteppedDownKeepsSessionsUntilTheNewBulk(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	gw1 := startNode(t, ctx, "gw1", nil)
	own := []int{1, 2, 3}
	for _, i := range own {
		gw1.mem.Inject(upsert(ftpControl(i)))
	}
	if err := gw1.e.becomePrimaryMirrored(ctx); err != nil {
		t.Fatal(err)
	}
	// gw1 steps down for gw2, which never sends a bulk.
	if err := gw1.e.BecomeSubordinate(ctx, "gw2"); err != nil {
		t.Fatal(err)
	}
	for _, i := range own {
		if _, ok := gw1.mem.Get(ftpControl(i).Key); !ok {
			t.Fatalf("session %d removed at the step-down, before any new primary's bulk", i)
		}
	}
	if err := gw1.e.BecomePrimary(ctx); err != nil {
		t.Fatal(err)
	}
	if n := gw1.mem.Len(); n != len(own) {
		t.Fatalf("back as primary with %d sessions, want %d", n, len(own))
	}

	// Now a new primary that does send its bulk: gw1's own are replaced.
	gw2 := startNode(t, ctx, "gw2", nil)
	gw2.mem.Inject(upsert(ftpControl(9)))
	if err := gw1.e.BecomeSubordinate(ctx, "gw2"); err != nil {
		t.Fatal(err)
	}
	gw2.e.SetPeers([]netip.AddrPort{gw1.addr(t)})
	if err := gw2.e.becomePrimaryMirrored(ctx); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		_, got := gw1.mem.Get(ftpControl(9).Key)
		_, stale := gw1.mem.Get(ftpControl(1).Key)
		if got && !stale {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after gw2's bulk: gw2's session held %v, gw1's own still held %v", got, stale)
		}
	}
}
