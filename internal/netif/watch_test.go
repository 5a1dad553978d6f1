package netif

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
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

func TestLinkTrackerReconcile(t *testing.T) {
	tr := newLinkTracker([]string{"eth1", "eth2", "eth3"})
	links := []*netlink.LinkAttrs{
		{Index: 3, Name: "eth1", OperState: netlink.OperUp},
		{Index: 4, Name: "eth9", OperState: netlink.OperUp},
		{Index: 5, Name: "eth3", OperState: netlink.OperUp},
	}
	tr.reconcile(links)
	if diff := cmp.Diff(map[string]bool{"eth1": true, "eth2": false, "eth3": true}, tr.snapshot()); diff != "" {
		t.Errorf("snapshot mismatch (-want +got):\n%s", diff)
	}
	// The known index is followed: its deletion is reported.
	if diff := cmp.Diff([]LinkEvent{{Interface: "eth1"}}, tr.apply(linkMsg{index: 3, name: "eth1", deleted: true})); diff != "" {
		t.Errorf("events mismatch (-want +got):\n%s", diff)
	}
	// A later list reports only what differs from the last report: eth1
	// came back (up), eth2 appeared down (no change), eth3 vanished.
	got := tr.reconcile([]*netlink.LinkAttrs{
		{Index: 6, Name: "eth1", OperState: netlink.OperUp},
		{Index: 7, Name: "eth2", OperState: netlink.OperDown},
	})
	if diff := cmp.Diff([]LinkEvent{{Interface: "eth1", Up: true}, {Interface: "eth3"}}, got); diff != "" {
		t.Errorf("reconcile events mismatch (-want +got):\n%s", diff)
	}
	// The index of the reappeared eth1 is followed.
	if diff := cmp.Diff([]LinkEvent{{Interface: "eth1"}}, tr.apply(linkMsg{index: 6, name: "eth1", deleted: true})); diff != "" {
		t.Errorf("events mismatch (-want +got):\n%s", diff)
	}
}

// fakeSub is a subscription fed by hand: the test closes updates to fail it.
func fakeSub(updates chan netlink.LinkUpdate, cause error) (*subscription, <-chan struct{}) {
	ended := make(chan struct{})
	return &subscription{updates: updates, end: sync.OnceFunc(func() { close(ended) }),
		cause: func() error { return cause }}, ended
}

func linkUpdate(index int, name string, up bool) netlink.LinkUpdate {
	a := netlink.LinkAttrs{Index: index, Name: name, OperState: netlink.OperDown}
	if up {
		a.OperState = netlink.OperUp
	}
	return netlink.LinkUpdate{Header: unix.NlMsghdr{Type: unix.RTM_NEWLINK}, Link: &netlink.Device{LinkAttrs: a}}
}

var quiet = slog.New(slog.DiscardHandler)

// TestWatchRunResubscribes feeds run by hand: when the subscription fails,
// the watch retries until a new one opens, reports what changed meanwhile,
// and goes on with the new subscription.
func TestWatchRunResubscribes(t *testing.T) {
	first := make(chan netlink.LinkUpdate, 1)
	sub1, ended1 := fakeSub(first, unix.ENOBUFS)
	second := make(chan netlink.LinkUpdate)
	sub2, _ := fakeSub(second, nil)
	opens := 0
	w := &LinkWatch{events: make(chan LinkEvent), log: quiet}
	w.open = func() (*subscription, []*netlink.LinkAttrs, error) {
		opens++
		if opens == 1 {
			return nil, nil, unix.EMFILE // the first attempt fails: backoff
		}
		// eth1 went down while there was no subscription.
		return sub2, []*netlink.LinkAttrs{{Index: 3, Name: "eth1", OperState: netlink.OperLowerLayerDown}}, nil
	}
	go w.run(t.Context(), sub1, newLinkTracker([]string{"eth1"}))

	first <- linkUpdate(3, "eth1", true)
	close(first)
	expectEvent(t, w, "eth1", true)
	<-ended1
	expectEvent(t, w, "eth1", false)       // learnt from the new list
	second <- linkUpdate(3, "eth1", false) // already reported: quiet
	second <- linkUpdate(3, "eth1", true)
	expectEvent(t, w, "eth1", true)
	if n := w.Resubscriptions(); n != 1 || opens != 2 {
		t.Errorf("%d re-subscriptions in %d attempts, want 1 in 2", n, opens)
	}
}

// TestWatchRunLost: with re-subscription off, a failed subscription ends
// the watch: the queued events still arrive, then Events closes and Err
// says why.
func TestWatchRunLost(t *testing.T) {
	updates := make(chan netlink.LinkUpdate, 1)
	sub, ended := fakeSub(updates, unix.ENOBUFS)
	w := &LinkWatch{events: make(chan LinkEvent), log: quiet, hooks: watchHooks{noResubscribe: true}}
	go w.run(t.Context(), sub, newLinkTracker([]string{"eth1"}))

	updates <- linkUpdate(3, "eth1", true)
	close(updates)

	expectEvent(t, w, "eth1", true)
	expectClosed(t, w)
	<-ended
	if err := w.Err(); err == nil || !strings.Contains(err.Error(), "no buffer space") {
		t.Errorf("Err() = %v, want the subscription's error", err)
	}
}

func TestWatchRunContextEnd(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	sub, ended := fakeSub(make(chan netlink.LinkUpdate), nil)
	w := &LinkWatch{events: make(chan LinkEvent), log: quiet}
	go w.run(ctx, sub, newLinkTracker(nil))
	cancel()
	expectClosed(t, w)
	<-ended
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

// socketKiller collects, through the watch's hooks, the function closing the
// socket of the watch's current subscription.
type socketKiller struct {
	mu   sync.Mutex
	kill func()
}

func (k *socketKiller) set(kill func()) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.kill = kill
}

func (k *socketKiller) closeSocket() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.kill()
}

// waitOper waits until the kernel's operational state of name in n is up
// (or not), as the watch defines it.
func (n *testNS) waitOper(t *testing.T, name string, up bool) {
	t.Helper()
	if !eventually(eventWait, func() bool {
		l, err := n.nl.LinkByName(name)
		return err == nil && operUp(l.Attrs()) == up
	}) {
		t.Fatalf("%s never became up=%v", name, up)
	}
}

// TestWatchResubscribes closes the socket of a watch's subscription and
// takes mon0's carrier away before the watch may subscribe again: the
// change reaches no socket, yet the watch reports it, then goes on
// reporting. With re-subscription off, the same failure ends the watch and
// the change is never reported.
func TestWatchResubscribes(t *testing.T) {
	for _, resubscribe := range []bool{true, false} {
		t.Run(fmt.Sprintf("resubscribe=%v", resubscribe), func(t *testing.T) {
			a, b := newTestNS(t), newTestNS(t)
			veth(t, a, "mon0", b, "mon0p")
			a.waitOper(t, "mon0", true)

			var sock socketKiller
			recovering, release := make(chan struct{}), make(chan struct{})
			hooks := watchHooks{
				noResubscribe: !resubscribe,
				subscribed:    sock.set,
				beforeResubscribe: sync.OnceFunc(func() {
					close(recovering)
					<-release
				}),
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			w, err := a.h.watch(ctx, []string{"mon0"}, quiet, hooks)
			if err != nil {
				t.Fatalf("watch: %v", err)
			}
			if !w.Initial["mon0"] {
				t.Fatal("mon0 not up at the start")
			}

			sock.closeSocket()
			if resubscribe {
				select {
				case <-recovering:
				case <-time.After(eventWait):
					t.Fatal("the watch did not notice its socket closed")
				}
			}
			if !resubscribe && !eventually(eventWait, func() bool { return w.Err() != nil }) {
				t.Fatal("the watch did not notice its socket closed")
			}
			b.setLink(t, "mon0p", false) // mon0 loses its carrier
			a.waitOper(t, "mon0", false)
			close(release)

			if !resubscribe {
				expectClosed(t, w)
				if w.Err() == nil {
					t.Error("Err() = nil after the watch was lost")
				}
				return
			}
			expectEvent(t, w, "mon0", false)
			b.setLink(t, "mon0p", true)
			expectEvent(t, w, "mon0", true)
			if n := w.Resubscriptions(); n != 1 {
				t.Errorf("%d re-subscriptions, want 1", n)
			}
			cancel()
			expectClosed(t, w)
			expectNoGoroutine(t, "netif.(*LinkWatch).run", "netlink.linkSubscribeAt")
		})
	}
}

// TestWatchOverflow gives the subscription the smallest receive buffer and
// flaps the watched link until the kernel drops messages (ENOBUFS): the
// watch re-subscribes, and the last state it reports after each flap is the
// link's.
func TestWatchOverflow(t *testing.T) {
	a, b := newTestNS(t), newTestNS(t)
	veth(t, a, "mon0", b, "mon0p")
	a.waitOper(t, "mon0", true)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	w, err := a.h.watch(ctx, []string{"mon0"}, quiet, watchHooks{rcvBuf: 1})
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	var mu sync.Mutex
	last := w.Initial["mon0"]
	repeats := 0 // an event that does not change the state reported
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for ev := range w.Events() {
			mu.Lock()
			if ev.Up == last {
				repeats++
			}
			last = ev.Up
			mu.Unlock()
		}
	}()
	reported := func(up bool) bool {
		mu.Lock()
		defer mu.Unlock()
		return last == up
	}

	const maxFlaps = 2000
	deadline := time.Now().Add(20 * time.Second)
	flaps := 0
	for ; flaps < maxFlaps && time.Now().Before(deadline) && w.Resubscriptions() == 0; flaps++ {
		a.setLink(t, "mon0", false)
		a.setLink(t, "mon0", true)
	}
	if w.Resubscriptions() == 0 {
		t.Fatalf("no overflow in %d flaps", flaps)
	}
	t.Logf("%d re-subscriptions after %d flaps", w.Resubscriptions(), flaps)

	// Settle on down, then up: the watch reports each final state.
	a.setLink(t, "mon0", false)
	if !eventually(eventWait, func() bool { return reported(false) }) {
		t.Fatal("watch did not report mon0 down after the flood")
	}
	a.setLink(t, "mon0", true)
	a.waitOper(t, "mon0", true)
	if !eventually(eventWait, func() bool { return reported(true) }) {
		t.Fatal("watch did not report mon0 up after the flood")
	}
	cancel()
	<-drained
	if repeats > 0 {
		t.Errorf("%d events repeated the state already reported", repeats)
	}
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
