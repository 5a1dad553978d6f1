package netif

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// fakeSender records announcements with the (fake, in a synctest bubble)
// time they were made.
type fakeSender struct {
	start time.Time
	fail  map[string]bool // interfaces whose announcements fail

	mu    sync.Mutex
	calls []call
}

type call struct {
	At     time.Duration
	Target Target
}

func (f *fakeSender) Announce(ifname string, addr netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call{time.Since(f.start), Target{ifname, addr}})
	if f.fail[ifname] {
		return errors.New("send failed")
	}
	return nil
}

func (f *fakeSender) got() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...)
}

var (
	t1 = Target{"eth1", netip.MustParseAddr("192.0.2.10")}
	t2 = Target{"eth2", netip.MustParseAddr("2001:db8::10")}
)

var cmpAddr = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

func TestAnnouncerSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeSender{start: time.Now()}
		a := NewAnnouncer(f, slog.New(slog.DiscardHandler))
		done := a.Start(t.Context(), []Target{t1, t2}, 2, time.Second)
		<-done
		want := []call{{0, t1}, {0, t2}, {time.Second, t1}, {time.Second, t2}, {2 * time.Second, t1}, {2 * time.Second, t2}}
		if diff := cmp.Diff(want, f.got(), cmpAddr); diff != "" {
			t.Errorf("calls mismatch (-want +got):\n%s", diff)
		}
		if got := a.Stats(); got != (AnnouncerStats{Sent: 6}) {
			t.Errorf("Stats() = %+v, want 6 sent", got)
		}
	})
}

func TestAnnouncerCountZero(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeSender{start: time.Now()}
		a := NewAnnouncer(f, slog.New(slog.DiscardHandler))
		<-a.Start(t.Context(), []Target{t1}, 0, time.Second)
		if diff := cmp.Diff([]call{{0, t1}}, f.got(), cmpAddr); diff != "" {
			t.Errorf("calls mismatch (-want +got):\n%s", diff)
		}
	})
}

func TestAnnouncerRestartAndStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeSender{start: time.Now()}
		a := NewAnnouncer(f, slog.New(slog.DiscardHandler))
		first := a.Start(t.Context(), []Target{t1}, 10, time.Second)
		time.Sleep(1500 * time.Millisecond)
		// A new run replaces the old one: t1's repeats stop.
		second := a.Start(t.Context(), []Target{t2}, 10, time.Second)
		select {
		case <-first:
		default:
			t.Error("first run still active after the second Start")
		}
		time.Sleep(1500 * time.Millisecond)
		a.Stop()
		select {
		case <-second:
		default:
			t.Error("run still active after Stop")
		}
		time.Sleep(5 * time.Second)
		synctest.Wait()
		want := []call{
			{0, t1}, {time.Second, t1},
			{1500 * time.Millisecond, t2}, {2500 * time.Millisecond, t2},
		}
		if diff := cmp.Diff(want, f.got(), cmpAddr); diff != "" {
			t.Errorf("calls mismatch (-want +got):\n%s", diff)
		}
		a.Stop() // no run: nothing to do
	})
}

func TestAnnouncerContextEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeSender{start: time.Now()}
		a := NewAnnouncer(f, slog.New(slog.DiscardHandler))
		ctx, cancel := context.WithCancel(t.Context())
		done := a.Start(ctx, []Target{t1}, 10, time.Second)
		time.Sleep(500 * time.Millisecond)
		cancel()
		<-done
		if n := len(f.got()); n != 1 {
			t.Errorf("%d calls, want 1", n)
		}
	})
}

func TestAnnouncerErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeSender{start: time.Now(), fail: map[string]bool{"eth1": true}}
		var logs bytes.Buffer
		a := NewAnnouncer(f, slog.New(slog.NewTextHandler(&logs, nil)))
		<-a.Start(t.Context(), []Target{t1, t2}, 1, time.Second)
		// A failing target does not keep the other from being announced.
		if got := a.Stats(); got != (AnnouncerStats{Sent: 2, Failed: 2}) {
			t.Errorf("Stats() = %+v, want 2 sent and 2 failed", got)
		}
		if n := bytes.Count(logs.Bytes(), []byte("announce failed")); n != 2 {
			t.Errorf("%d failure lines logged, want 2:\n%s", n, logs.String())
		}
		if !bytes.Contains(logs.Bytes(), []byte("interface=eth1")) {
			t.Errorf("log does not name the interface:\n%s", logs.String())
		}
	})
}

// TestAnnouncerKernel counts the frames that reach the host: 1+count per
// target.
func TestAnnouncerKernel(t *testing.T) {
	l := newLab(t)
	arpC := l.host.capture(t, "host0", unix.ETH_P_ARP)
	ip6C := l.host.capture(t, "host0", unix.ETH_P_IPV6)

	const count = 2
	a := NewAnnouncer(l.gw.h, nil)
	done := a.Start(t.Context(), []Target{{"gw0", vip4.Addr()}, {"gw0", vip6.Addr()}}, count, 20*time.Millisecond)
	select {
	case <-done:
	case <-time.After(frameWait):
		t.Fatal("announcer did not finish")
	}
	if got := a.Stats(); got != (AnnouncerStats{Sent: 2 * (1 + count)}) {
		t.Errorf("Stats() = %+v, want %d sent", got, 2*(1+count))
	}

	var req, rep int
	readFrames(t, arpC, frameWait, func(frames [][]byte) bool {
		req, rep = countGARP(t, frames, l.gwMAC, vip4.Addr())
		return req >= 1+count && rep >= 1+count
	})
	if req != 1+count || rep != 1+count {
		t.Errorf("received %d gratuitous requests and %d replies, want %d each", req, rep, 1+count)
	}
	var nas int
	readFrames(t, ip6C, frameWait, func(frames [][]byte) bool {
		nas = len(collectNA(t, frames, l.gwMAC, vip6.Addr()))
		return nas >= 1+count
	})
	if nas != 1+count {
		t.Errorf("received %d advertisements, want %d", nas, 1+count)
	}
}
