package netif

import (
	"context"
	"net"
	"slices"
	"testing"
	"time"
)

// TestFlap: the interfaces that are up go down for the given time and come
// back; one already down stays down, a missing one is skipped; the far end
// of a flapped veth loses its carrier meanwhile (what the switch sees).
func TestFlap(t *testing.T) {
	requireRoot(t)
	a, b := newTestNS(t), newTestNS(t)
	veth(t, a, "lan0", b, "peer0")
	veth(t, a, "wan0", b, "peer1")
	veth(t, a, "dmz0", b, "peer2")
	a.setLink(t, "dmz0", false)

	up := func(n *testNS, name string) bool {
		l, err := n.nl.LinkByName(name)
		if err != nil {
			t.Fatalf("link %s: %v", name, err)
		}
		return l.Attrs().Flags&net.FlagRunning != 0
	}
	type result struct {
		flapped []string
		err     error
	}
	done := make(chan result, 1)
	go func() {
		f, err := a.h.Flap(context.Background(), []string{"lan0", "wan0", "dmz0", "nosuch0"}, 500*time.Millisecond)
		done <- result{f, err}
	}()
	if !eventually(400*time.Millisecond, func() bool { return !up(b, "peer0") && !up(b, "peer1") }) {
		t.Error("the far ends kept their carrier during the flap")
	}
	var r result
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Flap did not return")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !slices.Equal(r.flapped, []string{"lan0", "wan0"}) {
		t.Errorf("flapped %v, want [lan0 wan0]", r.flapped)
	}
	if !eventually(2*time.Second, func() bool { return up(a, "lan0") && up(a, "wan0") && up(b, "peer0") }) {
		t.Error("the flapped interfaces did not come back")
	}
	if up(a, "dmz0") {
		t.Error("an interface that was down was brought up")
	}
}

// TestFlapCancel: a flap cut short by its context still brings the
// interfaces back.
func TestFlapCancel(t *testing.T) {
	requireRoot(t)
	a, b := newTestNS(t), newTestNS(t)
	veth(t, a, "lan0", b, "peer0")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if _, err := a.h.Flap(ctx, []string{"lan0"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > 30*time.Second {
		t.Error("Flap waited out its time although its context had ended")
	}
	l, err := a.nl.LinkByName("lan0")
	if err != nil {
		t.Fatal(err)
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		t.Error("lan0 left down")
	}
}
