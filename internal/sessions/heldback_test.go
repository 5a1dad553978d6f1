package sessions

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hagate/hagate/internal/sessions/session"
)

// kernelSpy counts what a subordinate hands its backend, per key.
type kernelSpy struct {
	mu      sync.Mutex
	upserts map[session.Key]int
	deletes int
}

func spyOn(m *Memory) *kernelSpy {
	k := &kernelSpy{upserts: map[session.Key]int{}}
	m.Refuse = func(c *session.Change) bool {
		k.mu.Lock()
		defer k.mu.Unlock()
		if c.Op == session.Upsert {
			k.upserts[c.Session.Key]++
		} else {
			k.deletes++
		}
		return false
	}
	return k
}

func (k *kernelSpy) counts() (keys, deletes int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.upserts), k.deletes
}

// waitBulk waits for the subordinate's first bulk to end: what follows is
// the stream of changes.
func waitBulk(t *testing.T, s *node) {
	t.Helper()
	waitFor(t, "the subordinate's bulk", func() bool { return s.e.Stats().LastBulk.At != (time.Time{}) })
}

// TestInstallDelayShortSessionsNeverReachTheKernel: with install_delay, the
// sessions that end within the delay cost the subordinate's kernel
// nothing, the others are installed once it has passed, and the table
// counts them all meanwhile. With no delay every session is installed and
// deleted (the proof that the test can fail).
func TestInstallDelayShortSessionsNeverReachTheKernel(t *testing.T) {
	for _, tc := range []struct {
		name            string
		delay           time.Duration
		installed, dels int
	}{{"delay", 300 * time.Millisecond, 50, 0}, {"no-delay", 0, 100, 50}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, p, s := pair(t, func(c *EngineConfig) { c.InstallDelay = tc.delay })
			spy := spyOn(s.mem)
			if err := p.e.becomePrimaryMirrored(ctx); err != nil {
				t.Fatal(err)
			}
			waitBulk(t, s)
			for i := range 100 {
				p.mem.Inject(upsert(synthSession(i)))
			}
			waitFor(t, "the subordinate to hold 100", func() bool { return s.e.Stats().Sessions == 100 })
			if st := s.e.Stats(); tc.delay > 0 && (st.HeldBack != 100 || len(s.mem.Snapshot()) != 0) {
				t.Errorf("within the delay: %d held back, %d in the kernel; want 100 and 0", st.HeldBack, len(s.mem.Snapshot()))
			}
			for i := range 50 {
				p.mem.Inject(session.Change{Op: session.Delete, Session: synthSession(i)})
			}
			waitFor(t, "the subordinate to hold 50", func() bool { return s.e.Stats().Sessions == 50 })
			waitFor(t, "the kernel to hold 50", func() bool { return len(s.mem.Snapshot()) == 50 })
			if keys, dels := spy.counts(); keys != tc.installed || dels != tc.dels {
				t.Errorf("the kernel was given %d sessions and %d deletes, want %d and %d", keys, dels, tc.installed, tc.dels)
			}
			if st := s.e.Stats(); st.HeldBack != 0 {
				t.Errorf("%d still held back after the delay", st.HeldBack)
			}
		})
	}
}

// TestInstallDelayPromotionInstallsHeldBack: sessions held back (a delay
// of an hour) are in the kernel when BecomePrimary returns, that is
// before the daemon claims the addresses.
func TestInstallDelayPromotionInstallsHeldBack(t *testing.T) {
	ctx, p, s := pair(t, func(c *EngineConfig) { c.InstallDelay = time.Hour })
	if err := p.e.becomePrimaryMirrored(ctx); err != nil {
		t.Fatal(err)
	}
	waitBulk(t, s)
	for i := range 300 {
		p.mem.Inject(upsert(synthSession(i)))
	}
	waitFor(t, "the subordinate to hold 300", func() bool { return s.e.Stats().HeldBack == 300 })
	if n := len(s.mem.Snapshot()); n != 0 {
		t.Fatalf("%d sessions in the kernel before the promotion, want 0", n)
	}
	if err := s.e.BecomePrimary(ctx); err != nil {
		t.Fatal(err)
	}
	got := s.mem.Snapshot()
	if len(got) != 300 {
		t.Fatalf("%d sessions in the kernel when the promotion returned, want 300", len(got))
	}
	// Installed with their timeouts (here 5 days, minus nothing: held for
	// less than a second).
	for _, v := range got {
		if v.Timeout != 432000 {
			t.Fatalf("installed with timeout %d, want 432000", v.Timeout)
		}
	}
}

// TestInstallDelayBulkInstallsAtOnce: the sessions of a bulk are not held
// back, whatever the delay.
func TestInstallDelayBulkInstallsAtOnce(t *testing.T) {
	ctx, p, s := pair(t, func(c *EngineConfig) { c.InstallDelay = time.Hour })
	for i := range 200 {
		p.mem.Inject(upsert(synthSession(i)))
	}
	if err := p.e.becomePrimaryMirrored(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the bulk in the kernel", func() bool { return len(s.mem.Snapshot()) == 200 })
	if st := s.e.Stats(); st.HeldBack != 0 {
		t.Errorf("%d of a bulk held back", st.HeldBack)
	}
}

// TestMaxHeldBackBoundsWhatIsHeld: with a delay of an hour and
// max_held_back 100, a subordinate receiving 300 new sessions holds back
// no more than 100 and installs the 200 oldest at once, so a takeover has
// at most 100 to install first. Without the bound it holds all 300 (the
// proof that the test can fail).
func TestMaxHeldBackBoundsWhatIsHeld(t *testing.T) {
	for _, tc := range []struct {
		name      string
		max       int
		held      int
		installed int
	}{{"bounded", 100, 100, 200}, {"unbounded", 0, 300, 0}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, p, s := pair(t, func(c *EngineConfig) { c.InstallDelay, c.MaxHeldBack = time.Hour, tc.max })
			if err := p.e.becomePrimaryMirrored(ctx); err != nil {
				t.Fatal(err)
			}
			waitBulk(t, s)
			for i := range 300 {
				p.mem.Inject(upsert(synthSession(i)))
			}
			want := fmt.Sprintf("300 sessions, %d held back, %d in the kernel and counted as installed early", tc.held, tc.installed)
			waitFor(t, want, func() bool {
				st := s.e.Stats()
				return st.Sessions == 300 && st.HeldBack == tc.held && st.InstalledEarly == uint64(tc.installed) && len(s.mem.Snapshot()) == tc.installed
			})
			kernel := s.mem.Snapshot()
			// The oldest went first: the first sessions received.
			for i := range tc.installed {
				if _, ok := kernel[synthSession(i).Key]; !ok {
					t.Fatalf("session %d, among the oldest, is not in the kernel", i)
				}
			}
			if err := s.e.BecomePrimary(ctx); err != nil {
				t.Fatal(err)
			}
			if n := len(s.mem.Snapshot()); n != 300 {
				t.Fatalf("%d sessions in the kernel after the promotion, want 300", n)
			}
		})
	}
}
