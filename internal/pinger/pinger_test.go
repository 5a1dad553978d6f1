package pinger

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var (
	addrA = netip.MustParseAddr("192.0.2.1")
	addrB = netip.MustParseAddr("2001:db8::1")
)

// run starts p with a fake network and returns a stop function that
// cancels it and checks that Run returned and closed every socket.
func run(t *testing.T, p *Pinger, n *fakeNet) (stop func()) {
	t.Helper()
	p.dial = n.dial
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	return func() {
		t.Helper()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if opened, closed := n.counts(); opened != closed {
			t.Errorf("sockets: %d opened, %d closed", opened, closed)
		}
	}
}

// recorder collects the counts from Updates with the (fake) time since
// start, keeping the last count of each instant.
type recorder struct {
	mu     sync.Mutex
	start  time.Time
	events map[time.Duration]int
}

func record(ctx context.Context, p *Pinger) *recorder {
	r := &recorder{start: time.Now(), events: map[time.Duration]int{}}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case n := <-p.Updates():
				r.mu.Lock()
				r.events[time.Since(r.start)] = n
				r.mu.Unlock()
			}
		}
	}()
	return r
}

func (r *recorder) get() map[time.Duration]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[time.Duration]int{}
	for k, v := range r.events {
		out[k] = v
	}
	return out
}

func newPinger(t *testing.T, flip time.Duration, targets ...Target) *Pinger {
	t.Helper()
	p, err := New(targets, flip, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

func TestDownAndFlipTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const s = time.Second
		p := newPinger(t, 10*s,
			Target{Interface: "wan1", Addr: addrA, Interval: s, Failures: 3},
			Target{Interface: "wan2", Addr: addrB, Interval: s, Failures: 3})
		n := newFakeNet()
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		rec := record(ctx, p)
		stop := run(t, p, n)

		time.Sleep(5500 * time.Millisecond)
		n.setSilent(addrA, true) // probes at 6, 7, 8 s fail at +0.9 s
		time.Sleep(15 * s)       // 20.5 s: probes 6..19 s failed, 20 s in flight
		synctest.Wait()
		if got := p.Up(); got != 1 {
			t.Errorf("Up() with A silent = %d, want 1", got)
		}
		st := p.Status()[0]
		if st.State != StateDown || st.ConsecutiveFailures != 14 || st.Flips != 1 {
			t.Errorf("A while silent: state %v, %d failures, %d flips; want down, 14, 1", st.State, st.ConsecutiveFailures, st.Flips)
		}
		n.setSilent(addrA, false) // answers from 21 s; up at the probe at 31 s
		time.Sleep(5 * s)
		synctest.Wait()
		if st := p.Status()[0]; st.State != StateRecovering || st.FlipLeft != 5500*time.Millisecond {
			t.Errorf("A at 25.5 s: state %v, flip left %v; want recovering, 5.5s", st.State, st.FlipLeft)
		}
		time.Sleep(10 * s)
		synctest.Wait()
		stop()

		want := map[time.Duration]int{0: 2, 8900 * time.Millisecond: 1, 31 * s: 2}
		if diff := cmp.Diff(want, rec.get()); diff != "" {
			t.Errorf("updates by time (-want +got):\n%s", diff)
		}
		got := p.Status()
		for i := range got {
			got[i].LastAnswer = time.Time{}
		}
		wantStatus := []TargetStatus{
			{Interface: "wan1", Target: addrA, State: StateUp, Up: true, Flips: 1, Sent: 36, Answered: 21, Socket: "raw"},
			{Interface: "wan2", Target: addrB, State: StateUp, Up: true, Sent: 36, Answered: 36, Socket: "raw"},
		}
		if diff := cmp.Diff(wantStatus, got, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
			t.Errorf("Status (-want +got):\n%s", diff)
		}
	})
}

func TestFlappingStaysDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const s = time.Second
		p := newPinger(t, 10*s, Target{Interface: "wan1", Addr: addrA, Interval: s, Failures: 2})
		n := newFakeNet()
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		rec := record(ctx, p)
		stop := run(t, p, n)

		time.Sleep(500 * time.Millisecond)
		// Silent for 3 s (down at 2.9 s), then flapping: 3 s answering,
		// 1 s silent, for 40 s; never the 10 s the flip timeout asks.
		n.setSilent(addrA, true)
		time.Sleep(3 * s)
		for range 10 {
			n.setSilent(addrA, false)
			time.Sleep(3 * s)
			n.setSilent(addrA, true)
			time.Sleep(s)
		}
		n.setSilent(addrA, false) // 43.5 s: answers from 44 s, up at 54 s
		time.Sleep(15 * s)
		synctest.Wait()
		stop()

		want := map[time.Duration]int{0: 1, 2900 * time.Millisecond: 0, 54 * s: 1}
		if diff := cmp.Diff(want, rec.get()); diff != "" {
			t.Errorf("updates by time (-want +got):\n%s", diff)
		}
		if got := p.Status()[0].Flips; got != 1 {
			t.Errorf("Flips = %d, want 1", got)
		}
	})
}

func TestFlipTimeoutZero(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const s = time.Second
		p := newPinger(t, 0, Target{Addr: addrA, Interval: s, Failures: 1})
		n := newFakeNet()
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		rec := record(ctx, p)
		stop := run(t, p, n)
		time.Sleep(500 * time.Millisecond)
		n.setSilent(addrA, true)
		time.Sleep(s)
		n.setSilent(addrA, false)
		time.Sleep(s)
		synctest.Wait()
		stop()
		want := map[time.Duration]int{0: 1, 1900 * time.Millisecond: 0, 2 * s: 1}
		if diff := cmp.Diff(want, rec.get()); diff != "" {
			t.Errorf("updates by time (-want +got):\n%s", diff)
		}
	})
}

// TestJunkAndLateReplies: datagrams that are not the reply are counted by
// reason and never taken for an answer; a reply later than the probe
// timeout is a failure.
func TestJunkAndLateReplies(t *testing.T) {
	for _, addr := range []netip.Addr{addrA, addrB} {
		t.Run(addr.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const s = time.Second
				p := newPinger(t, 0, Target{Addr: addr, Interval: s, Failures: 3})
				n := newFakeNet()
				n.junk = true
				n.delay = 950 * time.Millisecond // after the 900 ms probe timeout
				stop := run(t, p, n)
				time.Sleep(9500 * time.Millisecond) // probes at 0..9 s
				synctest.Wait()
				st := p.Status()[0]
				stop()
				// The probe sent at 9 s is in flight: not counted yet.
				if st.State != StateDown || st.Answered != 0 || st.Sent != 9 {
					t.Errorf("late replies: state %v, answered %d, sent %d; want down, 0, 9", st.State, st.Answered, st.Sent)
				}
				// Each of the 10 probes got one of each junk datagram; the
				// late replies to probes 0..8 arrived during the next probe.
				want := map[string]uint64{"short": 10, "type": 10, "other-id": 10, "stale-seq": 10 + 9, "payload": 10, "source": 10}
				if addr.Is4() {
					want["ip-header"] = 10
				}
				if diff := cmp.Diff(want, st.Ignored); diff != "" {
					t.Errorf("ignored (-want +got):\n%s", diff)
				}
			})
		})
	}
}

func TestReopenAfterDialErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const s = time.Second
		p := newPinger(t, time.Hour, Target{Interface: "wan1", Addr: addrA, Interval: s, Failures: 5})
		n := newFakeNet()
		n.dialErrs = 2
		stop := run(t, p, n)
		time.Sleep(1500 * time.Millisecond)
		synctest.Wait()
		st := p.Status()[0]
		if st.State != StatePending || st.ConsecutiveFailures != 2 || st.Sent != 0 || !strings.Contains(st.LastError, "no such device") || st.Socket != "" {
			t.Errorf("after two failed opens: %+v", st)
		}
		time.Sleep(s)
		synctest.Wait()
		st = p.Status()[0]
		stop()
		if st.State != StateUp || st.LastError != "" || st.Sent != 1 || st.Socket != "raw" {
			t.Errorf("after the socket opened: %+v", st)
		}
	})
}

// TestUpdatesKeepsLatest: a reader that does not keep up reads the latest
// count, not a stale one, and the pinger never blocks on it.
func TestUpdatesKeepsLatest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const s = time.Second
		p := newPinger(t, 0, Target{Addr: addrA, Interval: s, Failures: 1})
		n := newFakeNet()
		stop := run(t, p, n)
		time.Sleep(500 * time.Millisecond) // between probes: no race with one
		// 0 s up, 1.5 s silent (down at 2.9 s), 2.5 s answering (up at 3 s),
		// 3.5 s silent (down at 4.9 s).
		for _, silent := range []bool{true, false, true} {
			time.Sleep(s)
			n.setSilent(addrA, silent)
		}
		time.Sleep(2 * s)
		synctest.Wait()
		select {
		case got := <-p.Updates():
			if got != 0 {
				t.Errorf("Updates = %d, want the latest, 0", got)
			}
		default:
			t.Error("no update pending")
		}
		select {
		case got := <-p.Updates():
			t.Errorf("second update %d pending, want only the latest", got)
		default:
		}
		stop()
	})
}

func TestRunEndsWithContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPinger(t, 0,
			Target{Addr: addrA, Interval: time.Hour, Failures: 1},
			Target{Addr: addrB, Interval: time.Hour, Failures: 1})
		n := newFakeNet()
		n.setSilent(addrA, true) // blocked in a read when ctx ends
		stop := run(t, p, n)
		time.Sleep(time.Minute)
		synctest.Wait()
		stop() // checks Run returned and both sockets were closed
		if opened, _ := n.counts(); opened != 2 {
			t.Errorf("opened %d sockets, want 2", opened)
		}
		if err := p.Run(t.Context()); err == nil {
			t.Error("second Run succeeded")
		}
		// synctest.Test fails if any goroutine of the bubble is left.
	})
}

func TestRunNoTargets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPinger(t, 0)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { p.Run(ctx); close(done) }()
		time.Sleep(time.Hour)
		synctest.Wait()
		select {
		case <-done:
			t.Fatal("Run with no targets returned before ctx ended")
		default:
		}
		cancel()
		<-done
		if got := p.Status(); len(got) != 0 {
			t.Errorf("Status = %v, want empty", got)
		}
	})
}

func TestNewRejects(t *testing.T) {
	ok := Target{Interface: "wan1", Addr: addrA, Interval: time.Second, Failures: 5}
	tests := []struct {
		name string
		edit func(*Target)
		flip time.Duration
		want string
	}{
		{"no address", func(t *Target) { t.Addr = netip.Addr{} }, 0, "no address"},
		{"unspecified", func(t *Target) { t.Addr = netip.IPv6Unspecified() }, 0, "no address"},
		{"multicast", func(t *Target) { t.Addr = netip.MustParseAddr("224.0.0.1") }, 0, "multicast"},
		{"interval", func(t *Target) { t.Interval = 0 }, 0, "interval"},
		{"failures", func(t *Target) { t.Failures = 0 }, 0, "failures"},
		{"interface", func(t *Target) { t.Interface = "an-interface-name" }, 0, "too long"},
		{"flip", func(*Target) {}, -time.Second, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg := ok
			tt.edit(&tg)
			_, err := New([]Target{ok, tg}, tt.flip, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New: %v, want an error containing %q", err, tt.want)
			}
		})
	}
	p, err := New([]Target{{Addr: netip.MustParseAddr("::ffff:192.0.2.1"), Interval: time.Second, Failures: 1}}, 0, nil)
	if err != nil {
		t.Fatalf("New with a mapped address: %v", err)
	}
	if got := p.Status()[0].Target; got != addrA {
		t.Errorf("mapped target = %v, want %v", got, addrA)
	}
}
