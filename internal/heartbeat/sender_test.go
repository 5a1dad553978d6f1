package heartbeat

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hagate/hagate/internal/cluster"
)

// sentLog records what a Sender sends.
type sentLog struct {
	mu     sync.Mutex
	counts []uint64 // Heartbeat.Count of each heartbeat sent
	copies int
	policy []uint32 // the sending thread's scheduling policy, each time
}

func (l *sentLog) send(hb cluster.Heartbeat) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.counts = append(l.counts, hb.Count)
	return nil
}

func (l *sentLog) sent(_ time.Time, again bool) {
	attr, err := unix.SchedGetAttr(0, 0)
	l.mu.Lock()
	defer l.mu.Unlock()
	if again {
		l.copies++
	}
	if err == nil {
		l.policy = append(l.policy, attr.Policy)
	}
}

func (l *sentLog) snapshot() (sent, copies int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.counts), l.copies
}

func startSender(t *testing.T, opts SenderOptions) (*Sender, *sentLog, func()) {
	t.Helper()
	l := &sentLog{}
	opts.Sent = l.sent
	s, err := NewSender(l.send, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	return s, l, func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// A heartbeat handed over goes out at once; a loop that falls silent is
// covered by copies of its last heartbeat, and only for StaleAfter: a
// member whose loop is stuck stops claiming to be alive.
func TestSenderCopiesUntilStale(t *testing.T) {
	const interval = 20 * time.Millisecond
	const stale = 500 * time.Millisecond
	s, l, stop := startSender(t, SenderOptions{Interval: interval, StaleAfter: stale})
	defer stop()
	s.Send(cluster.Heartbeat{Count: 1})
	waitUntil(t, "a copy of the heartbeat", func() bool { _, c := l.snapshot(); return c > 0 })
	// Long past the stale limit: the copies have stopped.
	time.Sleep(2 * stale)
	n1, c1 := l.snapshot()
	time.Sleep(stale)
	n2, _ := l.snapshot()
	if n2 != n1 {
		t.Errorf("sent %d more heartbeats after the loop was stale for %v", n2-n1, 2*stale)
	}
	// Copies stay within what StaleAfter allows, with one of slack.
	if most := int(stale/(interval+interval/2)) + 1; c1 > most {
		t.Errorf("%d copies, want at most %d in %v", c1, most, stale)
	}
	l.mu.Lock()
	for i, c := range l.counts {
		if c != 1 {
			t.Errorf("heartbeat %d has count %d: a copy must repeat the loop's heartbeat, not make one up", i, c)
		}
	}
	l.mu.Unlock()
	// The loop back: its heartbeat goes out at once, and copies resume.
	s.Send(cluster.Heartbeat{Count: 2})
	waitUntil(t, "the loop's new heartbeat", func() bool { n, _ := l.snapshot(); return n > n2 })
	waitUntil(t, "copies again", func() bool { _, c := l.snapshot(); return c > c1 })
}

// Without a stale limit nothing is copied: the copies above are the
// sender's doing, not the test's.
func TestSenderNoStaleNoCopies(t *testing.T) {
	s, l, stop := startSender(t, SenderOptions{Interval: 10 * time.Millisecond})
	s.Send(cluster.Heartbeat{Count: 1})
	waitUntil(t, "the heartbeat", func() bool { n, _ := l.snapshot(); return n == 1 })
	time.Sleep(200 * time.Millisecond)
	stop()
	if n, c := l.snapshot(); n != 1 || c != 0 {
		t.Errorf("sent %d (%d copies), want the one handed over", n, c)
	}
}

// A heartbeat handed over just before the end (a shutdown's leaving
// heartbeat) is still sent, and Send after the end does nothing.
func TestSenderSendsLastBeforeStopping(t *testing.T) {
	s, l, stop := startSender(t, SenderOptions{Interval: time.Hour, StaleAfter: time.Hour})
	s.Send(cluster.Heartbeat{Count: 1, Leaving: true})
	stop()
	if n, _ := l.snapshot(); n != 1 {
		t.Errorf("sent %d heartbeats, want the leaving one", n)
	}
	s.Send(cluster.Heartbeat{Count: 2}) // the eventfd is closed: must not write to it
}

// With a priority, the sending thread runs SCHED_FIFO (root, or
// CAP_SYS_NICE, only); without, normal scheduling.
func TestSenderRealtimeThread(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs CAP_SYS_NICE: run as root")
	}
	for _, tc := range []struct {
		priority int
		policy   uint32
	}{{10, unix.SCHED_FIFO}, {0, unix.SCHED_NORMAL}} {
		s, l, stop := startSender(t, SenderOptions{Interval: time.Hour, StaleAfter: time.Hour, Priority: tc.priority})
		s.Send(cluster.Heartbeat{Count: 1})
		waitUntil(t, "the heartbeat", func() bool { n, _ := l.snapshot(); return n == 1 })
		stop()
		l.mu.Lock()
		if len(l.policy) != 1 || l.policy[0] != tc.policy {
			t.Errorf("priority %d: sending thread's policy %v, want %d", tc.priority, l.policy, tc.policy)
		}
		l.mu.Unlock()
	}
	// The test's own thread kept normal scheduling.
	if attr, err := unix.SchedGetAttr(0, 0); err != nil || attr.Policy != unix.SCHED_NORMAL {
		t.Errorf("test thread: %+v, %v: the priority leaked out of the sender's thread", attr, err)
	}
}
