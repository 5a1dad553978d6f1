package netif

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// A Sender announces one address on one interface. [*Handle] is the real
// one; tests use fakes.
type Sender interface {
	Announce(ifname string, addr netip.Addr) error
}

// A Target is an address to announce and the interface to announce it on.
type Target struct {
	Interface string
	Addr      netip.Addr
}

// AnnouncerStats counts announcements over an Announcer's life.
type AnnouncerStats struct {
	Sent   uint64 // Announce calls that succeeded
	Failed uint64 // Announce calls that returned an error
}

// An Announcer repeats announcements for a while after a takeover, because a
// single one can be lost or arrive while a switch port is still coming up.
// Only one run is active at a time: a new Start replaces the previous run.
//
// Failures are logged at Warn level on the Announcer's logger, one line per
// failed Announce, and counted in Stats; they never stop the run, so one bad
// target does not keep the others from being announced.
//
// An Announcer is safe for concurrent use.
type Announcer struct {
	sender Sender
	log    *slog.Logger

	sent, failed atomic.Uint64

	mu     sync.Mutex
	cancel context.CancelFunc // of the active run; nil when none
	done   chan struct{}      // closed when the active run has ended
}

// NewAnnouncer returns an Announcer that sends through s and logs failures to
// log (slog.Default() when nil).
func NewAnnouncer(s Sender, log *slog.Logger) *Announcer {
	if log == nil {
		log = slog.Default()
	}
	return &Announcer{sender: s, log: log}
}

// Start announces every target at once, then count more times every
// interval (interval <= 0 sends the repeats back to back). It first cancels
// the previous run and waits for it to end, which takes at most one Announce,
// so runs never overlap. The run ends when ctx ends, at Stop or at the next
// Start; the returned channel is closed then.
func (a *Announcer) Start(ctx context.Context, targets []Target, count int, interval time.Duration) <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stopLocked()
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	a.cancel, a.done = cancel, done
	targets = slices.Clone(targets)
	go func() {
		defer close(done)
		defer cancel()
		a.run(ctx, targets, count, interval)
	}()
	return done
}

// Stop cancels the active run, if any, and waits for it to end.
func (a *Announcer) Stop() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stopLocked()
}

func (a *Announcer) stopLocked() {
	if a.cancel == nil {
		return
	}
	a.cancel()
	<-a.done
	a.cancel, a.done = nil, nil
}

// Stats returns the counts so far.
func (a *Announcer) Stats() AnnouncerStats {
	return AnnouncerStats{Sent: a.sent.Load(), Failed: a.failed.Load()}
}

func (a *Announcer) run(ctx context.Context, targets []Target, count int, interval time.Duration) {
	a.round(ctx, targets)
	if count <= 0 {
		return
	}
	t := time.NewTimer(max(interval, 0))
	defer t.Stop()
	for range count {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		a.round(ctx, targets)
		t.Reset(max(interval, 0))
	}
}

// round announces each target once.
func (a *Announcer) round(ctx context.Context, targets []Target) {
	for _, tg := range targets {
		if ctx.Err() != nil {
			return
		}
		if err := a.sender.Announce(tg.Interface, tg.Addr); err != nil {
			a.failed.Add(1)
			a.log.Warn("announce failed", "interface", tg.Interface, "addr", tg.Addr, "err", err)
			continue
		}
		a.sent.Add(1)
	}
}
