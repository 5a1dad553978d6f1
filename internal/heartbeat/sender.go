package heartbeat

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hagate/hagate/internal/cluster"
)

// Sender sends the heartbeats the state machine decides on from one
// goroutine locked to an OS thread of its own, which may run at a real-time
// priority while the rest of the daemon (session installs above all) stays
// at normal priority.
//
// The daemon's loop still decides what is sent: it hands each heartbeat
// over (Send) and the sender sends it at once. When the loop is late (the
// process did not get a CPU, the collector ran), the sender sends the last
// heartbeat it was handed again, half an interval after the loop's was due,
// so that a member that is only slow is not taken for dead. A copy says
// nothing new (a receiver treats it as the same heartbeat arriving on
// another link: it only proves the sender alive), so what peers know of
// this member is at most as old as the loop's last turn. A member whose
// loop is stuck must not claim to be alive for ever: the sender stops
// copying once the loop has handed nothing for StaleAfter, and peers
// declare the member lost a dead interval after that.
//
// The sender waits in the kernel (ppoll on an eventfd with the timeout of
// its next copy), not on a Go timer, so that the kernel wakes its thread
// directly: a Go timer would wait for another, normal-priority thread of
// the process to run the scheduler. It still needs one of the runtime's
// processors (GOMAXPROCS) to run Go code after the wait; one is idle
// whenever the daemon is not busy on every one of them.
type Sender struct {
	send     func(cluster.Heartbeat) error
	opts     SenderOptions
	mu       sync.Mutex
	wake     int  // eventfd: a heartbeat was handed over, or Run must end
	closed   bool // Run has ended: wake is closed
	latest   cluster.Heartbeat
	have     bool      // latest is set
	fresh    bool      // latest not sent yet
	handedAt time.Time // when the loop last handed one over
}

// SenderOptions configures a Sender.
type SenderOptions struct {
	// Interval is heartbeat.interval.
	Interval time.Duration
	// StaleAfter is how long after the loop last handed a heartbeat over
	// the sender stops sending copies of it (the daemon: the dead interval).
	StaleAfter time.Duration
	// Priority is the SCHED_FIFO priority of the sender's thread (1..99),
	// 0 for normal scheduling.
	Priority int
	// Sent, if set, is called on the sender's thread after each heartbeat
	// sent, copy or not. It must not block.
	Sent func(now time.Time, again bool)
	Log  *slog.Logger
}

// NewSender returns a sender that sends with send (Transport.Send). It
// sends nothing until Run runs.
func NewSender(send func(cluster.Heartbeat) error, opts SenderOptions) (*Sender, error) {
	if opts.Interval <= 0 {
		return nil, fmt.Errorf("heartbeat sender: interval %v", opts.Interval)
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("heartbeat sender: eventfd: %w", err)
	}
	return &Sender{send: send, opts: opts, wake: fd}, nil
}

// Send hands hb over to be sent at once. It never blocks on the network.
func (s *Sender) Send(hb cluster.Heartbeat) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latest, s.have, s.fresh, s.handedAt = hb, true, true, time.Now()
	s.pokeLocked()
}

// poke wakes the sender's thread.
func (s *Sender) poke() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pokeLocked()
}

func (s *Sender) pokeLocked() {
	if s.closed {
		return
	}
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	// EAGAIN only when the counter is full: the thread is woken anyway.
	_, _ = unix.Write(s.wake, one[:])
}

// close ends the eventfd once Run is done with it.
func (s *Sender) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	unix.Close(s.wake)
}

// Run sends until ctx ends; a heartbeat handed over before then (the
// leaving heartbeat of a shutdown) is still sent. It closes the sender.
func (s *Sender) Run(ctx context.Context) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread() // the thread's priority is not reset: see realtime
	stop := context.AfterFunc(ctx, s.poke)
	defer s.close()
	defer stop()
	s.realtime()

	var lastSent time.Time
	stale := false
	for {
		s.mu.Lock()
		hb, have, fresh, handedAt := s.latest, s.have, s.fresh, s.handedAt
		s.fresh = false
		s.mu.Unlock()
		now := time.Now()
		copyDue := have && !lastSent.IsZero() && now.Sub(lastSent) >= s.copyAfter()
		if fresh || copyDue && now.Sub(handedAt) < s.opts.StaleAfter {
			s.sendOne(hb, now, !fresh)
			lastSent, stale = now, false
		} else if copyDue && !stale {
			stale = true
			s.opts.Log.Warn("heartbeats stopped: the daemon's loop has not refreshed them", "for", now.Sub(handedAt).Round(time.Millisecond))
		}
		if ctx.Err() != nil {
			return nil
		}
		if err := s.wait(s.timeout(have && !stale, lastSent)); err != nil {
			return err
		}
	}
}

// copyAfter is how long after the last heartbeat the sender sends a copy:
// half an interval after the loop's next one was due, past the loop's
// tick grain (a quarter interval), so that a loop on time is never
// doubled.
func (s *Sender) copyAfter() time.Duration { return s.opts.Interval + s.opts.Interval/2 }

// timeout is how long to wait for the loop before the next copy; -1: wait
// for the loop only.
func (s *Sender) timeout(copying bool, lastSent time.Time) time.Duration {
	if !copying || lastSent.IsZero() {
		return -1
	}
	return max(time.Until(lastSent.Add(s.copyAfter())), 0)
}

func (s *Sender) sendOne(hb cluster.Heartbeat, now time.Time, again bool) {
	if err := s.send(hb); err != nil {
		s.opts.Log.Debug("heartbeat send", "err", err)
	}
	if s.opts.Sent != nil {
		s.opts.Sent(now, again)
	}
}

// wait blocks in the kernel until poked or d passes (d < 0: until poked).
func (s *Sender) wait(d time.Duration) error {
	fds := []unix.PollFd{{Fd: int32(s.wake), Events: unix.POLLIN}}
	var ts *unix.Timespec
	if d >= 0 {
		t := unix.NsecToTimespec(d.Nanoseconds())
		ts = &t
	}
	if _, err := unix.Ppoll(fds, ts, nil); err != nil && !errors.Is(err, unix.EINTR) {
		return fmt.Errorf("heartbeat sender: ppoll: %w", err)
	}
	var buf [8]byte
	if _, err := unix.Read(s.wake, buf[:]); err != nil && !errors.Is(err, unix.EAGAIN) {
		return fmt.Errorf("heartbeat sender: eventfd: %w", err)
	}
	return nil
}

// realtime gives the sender's thread, and only it, its real-time priority.
// Without CAP_SYS_NICE (or an RLIMIT_RTPRIO) the kernel refuses: the
// sender then runs at normal priority and says so once. The thread keeps
// the priority after Run (UnlockOSThread does not reset it), so Run
// returns with the thread locked: the runtime ends a goroutine's thread
// when it exits locked, and no other goroutine runs at that priority.
func (s *Sender) realtime() {
	p := s.opts.Priority
	if p == 0 {
		return
	}
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: uint32(p)}
	if err := unix.SchedSetAttr(0, &attr, 0); err != nil {
		s.opts.Log.Warn("heartbeat.realtime_priority not applied: heartbeats are sent at normal priority (needs CAP_SYS_NICE)", "priority", p, "err", err)
		return
	}
	runtime.LockOSThread() // a second lock: the deferred unlock leaves the thread locked, and it ends with the goroutine
	s.opts.Log.Info("heartbeats sent from a real-time thread", "policy", "SCHED_FIFO", "priority", p)
}
