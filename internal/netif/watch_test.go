package netif

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// eventWait bounds the wait for one link event. The kernel reports carrier
// changes through linkwatch, which may hold them back up to a second.
const eventWait = 5 * time.Second

func TestOperUp(t *testing.T) {
	tests := []struct {
		name  string
		state netlink.LinkOperState
		flags uint32
		want  bool
	}{
		{"up", netlink.OperUp, unix.IFF_UP | unix.IFF_LOWER_UP, true},
		{"up without flags", netlink.OperUp, 0, true},
		{"lower layer down", netlink.OperLowerLayerDown, unix.IFF_UP, false},
		{"down", netlink.OperDown, unix.IFF_UP | unix.IFF_LOWER_UP, false},
		{"unknown with carrier", netlink.OperUnknown, unix.IFF_UP | unix.IFF_LOWER_UP, true},
		{"unknown admin down", netlink.OperUnknown, unix.IFF_LOWER_UP, false},
		{"unknown no carrier", netlink.OperUnknown, unix.IFF_UP, false},
		{"dormant", netlink.OperDormant, unix.IFF_UP | unix.IFF_LOWER_UP, false},
	}
	for _, tt := range tests {
		a := &netlink.LinkAttrs{OperState: tt.state, RawFlags: tt.flags}
		if got := operUp(a); got != tt.want {
			t.Errorf("%s: operUp = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestLinkTracker(t *testing.T) {
	up := func(i int, n string) linkMsg { return linkMsg{index: i, name: n, up: true} }
	down := func(i int, n string) linkMsg { return linkMsg{index: i, name: n} }
	del := func(i int, n string) linkMsg { return linkMsg{index: i, name: n, deleted: true} }
	ev := func(n string, up bool) LinkEvent { return LinkEvent{Interface: n, Up: up} }

	tests := []struct {
		name string
		msgs []linkMsg
		want []LinkEvent
	}{
		{"appears up", []linkMsg{up(3, "eth1")}, []LinkEvent{ev("eth1", true)}},
		{"repeats are quiet", []linkMsg{up(3, "eth1"), up(3, "eth1"), down(3, "eth1"), down(3, "eth1")},
			[]LinkEvent{ev("eth1", true), ev("eth1", false)}},
		{"appears down is no change", []linkMsg{down(3, "eth1")}, nil},
		{"unwatched ignored", []linkMsg{up(4, "eth9"), down(4, "eth9")}, nil},
		{"deleted", []linkMsg{up(3, "eth1"), del(3, "eth1")}, []LinkEvent{ev("eth1", true), ev("eth1", false)}},
		{"renamed away", []linkMsg{up(3, "eth1"), up(3, "old1")}, []LinkEvent{ev("eth1", true), ev("eth1", false)}},
		{"renamed in", []linkMsg{up(5, "tmp"), up(5, "eth2")}, []LinkEvent{ev("eth2", true)}},
		{"stale delete of a replaced link", []linkMsg{up(7, "eth1"), del(3, "eth1")}, []LinkEvent{ev("eth1", true)}},
		{"two names", []linkMsg{up(3, "eth1"), up(4, "eth2"), down(3, "eth1")},
			[]LinkEvent{ev("eth1", true), ev("eth2", true), ev("eth1", false)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newLinkTracker([]string{"eth1", "eth2"})
			var got []LinkEvent
			for _, m := range tt.msgs {
				got = append(got, tr.apply(m)...)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("events mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLinkTrackerSeed(t *testing.T) {
	tr := newLinkTracker([]string{"eth1", "eth2"})
	tr.seed(&netlink.LinkAttrs{Index: 3, Name: "eth1", OperState: netlink.OperUp})
	tr.seed(&netlink.LinkAttrs{Index: 4, Name: "eth9", OperState: netlink.OperUp})
	if diff := cmp.Diff(map[string]bool{"eth1": true, "eth2": false}, tr.snapshot()); diff != "" {
		t.Errorf("snapshot mismatch (-want +got):\n%s", diff)
	}
	// The seeded index is known: its deletion is reported.
	if diff := cmp.Diff([]LinkEvent{{Interface: "eth1"}}, tr.apply(linkMsg{index: 3, name: "eth1", deleted: true})); diff != "" {
		t.Errorf("events mismatch (-want +got):\n%s", diff)
	}
}

// TestWatchRunLost feeds run by hand: when the subscription's channel closes
// while the context is alive, the queued events still arrive, then Events
// closes and Err says the watch is lost.
func TestWatchRunLost(t *testing.T) {
	updates := make(chan netlink.LinkUpdate, 1)
	ended := make(chan struct{})
	w := &LinkWatch{events: make(chan LinkEvent)}
	go w.run(t.Context(), updates, func() { close(ended) }, newLinkTracker([]string{"eth1"}),
		func() error { return unix.ENOBUFS })

	l := &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: 3, Name: "eth1", OperState: netlink.OperUp}}
	updates <- netlink.LinkUpdate{Header: unix.NlMsghdr{Type: unix.RTM_NEWLINK}, Link: l}
	close(updates)

	if ev := recvEvent(t, w); ev != (LinkEvent{Interface: "eth1", Up: true}) {
		t.Errorf("event = %+v, want eth1 up", ev)
	}
	expectClosed(t, w)
	<-ended
	if err := w.Err(); err == nil || !strings.Contains(err.Error(), "no buffer space") {
		t.Errorf("Err() = %v, want the subscription's error", err)
	}
}

func TestWatchRunContextEnd(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	updates := make(chan netlink.LinkUpdate)
	w := &LinkWatch{events: make(chan LinkEvent)}
	go w.run(ctx, updates, func() { close(updates) }, newLinkTracker(nil), func() error { return nil })
	cancel()
	expectClosed(t, w)
	if err := w.Err(); err != nil {
		t.Errorf("Err() after the context ended = %v, want nil", err)
	}
}

func TestWatch(t *testing.T) {
	a, b := newTestNS(t), newTestNS(t)
	veth(t, a, "mon0", b, "mon0p")
	veth(t, a, "other0", b, "other0p")

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	w, err := a.h.Watch(ctx, []string{"mon0", "late0"})
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	if w.Initial["late0"] {
		t.Error("initial state of a missing interface is up")
	}
	if _, ok := w.Initial["other0"]; ok {
		t.Error("initial state lists an unwatched interface")
	}
	// Carrier may still be on its way up when the watch starts.
	if !w.Initial["mon0"] {
		expectEvent(t, w, "mon0", true)
	}

	// Changes on an unwatched link come first: had they leaked, they would
	// show before the watched ones.
	b.setLink(t, "other0p", false)
	b.setLink(t, "other0p", true)

	b.setLink(t, "mon0p", false)
	expectEvent(t, w, "mon0", false)
	b.setLink(t, "mon0p", true)
	expectEvent(t, w, "mon0", true)

	// An interface that did not exist comes up when it appears and goes
	// down when it is deleted.
	veth(t, a, "late0", b, "late0p")
	expectEvent(t, w, "late0", true)
	if err := a.nl.LinkDel(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "late0"}}); err != nil {
		t.Fatalf("delete late0: %v", err)
	}
	expectEvent(t, w, "late0", false)

	cancel()
	expectClosed(t, w)
	if err := w.Err(); err != nil {
		t.Errorf("Err() after the context ended = %v, want nil", err)
	}
	expectNoGoroutine(t, "netif.(*LinkWatch).run", "netlink.linkSubscribeAt")
}

func recvEvent(t *testing.T, w *LinkWatch) LinkEvent {
	t.Helper()
	select {
	case ev, ok := <-w.Events():
		if !ok {
			t.Fatalf("events closed: %v", w.Err())
		}
		return ev
	case <-time.After(eventWait):
		t.Fatal("no link event")
	}
	return LinkEvent{}
}

func expectEvent(t *testing.T, w *LinkWatch, name string, up bool) {
	t.Helper()
	if ev := recvEvent(t, w); ev != (LinkEvent{Interface: name, Up: up}) {
		t.Fatalf("event = %+v, want %s up=%v", ev, name, up)
	}
}

func expectClosed(t *testing.T, w *LinkWatch) {
	t.Helper()
	select {
	case ev, ok := <-w.Events():
		if ok {
			t.Fatalf("event %+v, want the channel closed", ev)
		}
	case <-time.After(eventWait):
		t.Fatal("events not closed")
	}
}

// expectNoGoroutine fails if a goroutine running any of funcs is still there
// after a short grace period (one may be returning as we look).
func expectNoGoroutine(t *testing.T, funcs ...string) {
	t.Helper()
	var stacks string
	gone := eventually(2*time.Second, func() bool {
		buf := make([]byte, 1<<20)
		stacks = string(buf[:runtime.Stack(buf, true)])
		for _, f := range funcs {
			if strings.Contains(stacks, f) {
				return false
			}
		}
		return true
	})
	if !gone {
		t.Errorf("goroutine left behind:\n%s", stacks)
	}
}
