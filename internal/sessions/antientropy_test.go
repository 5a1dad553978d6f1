package sessions

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/hagate/hagate/internal/sessions/session"
)

// keyDiff returns the keys one table holds and the other does not.
func keyDiff(a, b map[session.Key]session.Session) int {
	n := 0
	for k := range a {
		if _, ok := b[k]; !ok {
			n++
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			n++
		}
	}
	return n
}

// lossyPair is a primary and a subordinate whose subordinate loses a share
// of the changes it receives, until stopped.
func lossyPair(t *testing.T, seed uint64, antiEntropy time.Duration) (p, s *node, stop func()) {
	var mu sync.Mutex
	r := rand.New(rand.NewPCG(seed, 7))
	losing := true
	lose := func(*session.Change) bool {
		mu.Lock()
		defer mu.Unlock()
		return losing && r.IntN(10) == 0
	}
	ctx, p, s := pair(t, func(c *EngineConfig) {
		c.AntiEntropy = antiEntropy
		if c.NodeID == "gw2" {
			c.lose = lose
		}
	})
	if err := p.e.becomePrimaryMirrored(ctx); err != nil {
		t.Fatal(err)
	}
	waitBulk(t, s)
	return p, s, func() { mu.Lock(); losing = false; mu.Unlock() }
}

// quiesce waits until the primary has folded every event of its table and
// the subordinate has applied everything the primary sent: the queue is
// empty and the acks have caught up.
func quiesce(t *testing.T, p *node) {
	t.Helper()
	waitFor(t, "the subordinate to catch up", func() bool {
		want := p.mem.Snapshot()
		p.e.mu.Lock()
		folded := p.e.tab.len() == len(want)
		for k := range p.e.tab.all() {
			if _, ok := want[k]; !ok {
				folded = false
				break
			}
		}
		p.e.mu.Unlock()
		st := p.e.Stats()
		// Connected with a bulk sent: before its first connection the
		// peer's sequence numbers are equal too (both 0).
		return folded && len(st.Peers) == 1 && st.Peers[0].Connected && st.Peers[0].Bulks > 0 &&
			st.Peers[0].Queued == 0 && st.Peers[0].Sending == 0 && st.Peers[0].AckedSeq == st.Peers[0].SentSeq
	})
}

// TestAntiEntropyRepairsLosses is a simulation of random losses: a
// subordinate loses a tenth of the changes it receives (creates, updates and
// ends of sessions) while the primary's table churns. Once the losses stop,
// one anti-entropy round makes the two tables hold the same sessions, and
// the sessions it repaired are exactly the ones the losses left different:
// nothing more is resent. Without anti-entropy, the tables stay different.
func TestAntiEntropyRepairsLosses(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			p, s, stop := lossyPair(t, seed, time.Hour) // rounds only when the test asks
			r := rand.New(rand.NewPCG(seed, 1))
			live := map[int]session.Session{}
			for range 10 {
				churn(r, p.mem, live, 300, 2000)
				time.Sleep(time.Duration(r.IntN(10)) * time.Millisecond)
			}
			quiesce(t, p) // everything sent has gone through the losses
			stop()
			lost := keyDiff(p.mem.Snapshot(), s.mem.Snapshot())
			if lost == 0 {
				t.Fatal("the losses left the tables equal: the schedule proves nothing")
			}
			p.e.CheckNow()
			waitFor(t, "the repair", func() bool { return keyDiff(p.mem.Snapshot(), s.mem.Snapshot()) == 0 })
			quiesce(t, p)
			if got := s.e.Stats().Repaired; got != uint64(lost) {
				t.Errorf("repaired %d sessions, the losses left %d different", got, lost)
			}
			if st := p.e.Stats(); st.DivergentRanges == 0 || st.DivergentRanges > uint64(lost) {
				t.Errorf("%d divergent ranges counted for %d sessions", st.DivergentRanges, lost)
			}
			// A second round finds nothing.
			before := p.e.Stats().DivergentRanges
			p.e.CheckNow()
			time.Sleep(200 * time.Millisecond)
			if after := p.e.Stats().DivergentRanges; after != before {
				t.Errorf("equal tables: %d more divergent ranges", after-before)
			}
		})
	}
	t.Run("off", func(t *testing.T) {
		p, s, stop := lossyPair(t, 9, -1)
		r := rand.New(rand.NewPCG(9, 1))
		churn(r, p.mem, map[int]session.Session{}, 2000, 2000)
		quiesce(t, p)
		stop()
		p.e.CheckNow()
		time.Sleep(300 * time.Millisecond)
		if n := keyDiff(p.mem.Snapshot(), s.mem.Snapshot()); n == 0 {
			t.Fatal("without anti-entropy the losses were repaired all the same: the test proves nothing")
		}
		if st := s.e.Stats(); st.Repaired != 0 {
			t.Errorf("anti-entropy off, %d sessions repaired", st.Repaired)
		}
	})
}

// TestRefusedInstallsAreRepaired: the subordinate's kernel refuses a share
// of the sessions it is given (as it does when its table is full or an
// entry conflicts). The subordinate does not count them as held, so its
// digest differs from the primary's, and once the kernel takes them again
// anti-entropy installs exactly those. Recorded as held, they would never
// be found: the tables' digests would agree while the kernels differ.
func TestRefusedInstallsAreRepaired(t *testing.T) {
	ctx, p, s := pair(t, func(c *EngineConfig) { c.AntiEntropy = time.Hour }) // rounds only when the test asks
	// mu guards refusing and refused, written by the subordinate's Apply.
	var mu sync.Mutex
	refusing, refused := true, map[session.Key]bool{}
	s.mem.Refuse = func(c *session.Change) bool {
		mu.Lock()
		defer mu.Unlock()
		if !refusing || c.Op != session.Upsert || c.Session.Key.Orig.SrcPort%7 != 0 {
			return false
		}
		refused[c.Session.Key] = true
		return true
	}
	nRefused := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(refused)
	}
	if err := p.e.becomePrimaryMirrored(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 700 {
		p.mem.Inject(upsert(synthSession(i)))
	}
	quiesce(t, p)
	// A round while the kernel still refuses repairs nothing, and says so.
	p.e.CheckNow()
	waitFor(t, "the refused repair", func() bool { return s.e.Stats().NotInstalled >= uint64(2*nRefused()) })
	quiesce(t, p)
	if got := s.e.Stats().Repaired; got != 0 {
		t.Errorf("%d sessions counted as repaired while the kernel refused them", got)
	}
	mu.Lock()
	refusing = false
	mu.Unlock()
	lost := keyDiff(p.mem.Snapshot(), s.mem.Snapshot())
	if lost == 0 || lost != nRefused() {
		t.Fatalf("%d sessions differ, %d refused: the schedule proves nothing", lost, nRefused())
	}
	if st := s.e.Stats(); st.NotInstalled != uint64(2*lost) || st.Sessions != 700-lost {
		t.Errorf("not installed %d, held %d; want %d (twice the refused) and %d", st.NotInstalled, st.Sessions, 2*lost, 700-lost)
	}
	p.e.CheckNow()
	waitFor(t, "the repair", func() bool { return keyDiff(p.mem.Snapshot(), s.mem.Snapshot()) == 0 })
	if got := s.e.Stats().Repaired; got != uint64(lost) {
		t.Errorf("repaired %d sessions, %d were refused", got, lost)
	}
}

// TestAntiEntropyPeriodic: with rounds every 100 ms and the losses going on
// during the churn, the subordinate holds the primary's sessions soon after
// the losses stop, without a bulk.
func TestAntiEntropyPeriodic(t *testing.T) {
	p, s, stop := lossyPair(t, 5, 100*time.Millisecond)
	r := rand.New(rand.NewPCG(5, 1))
	live := map[int]session.Session{}
	for range 10 {
		churn(r, p.mem, live, 300, 2000)
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	waitFor(t, "the periodic repair", func() bool { return keyDiff(p.mem.Snapshot(), s.mem.Snapshot()) == 0 })
	if st := p.e.Stats(); st.Peers[0].Bulks != 1 {
		t.Errorf("%d bulks: the repair should not need one", st.Peers[0].Bulks)
	}
	st := s.e.Stats()
	if st.Repaired == 0 {
		t.Error("nothing counted as repaired")
	}
	// Version 4 batches are timed: the subordinate measured its lag.
	if st.Lag.Batches == 0 || st.Lag.P99 < st.Lag.P50 || st.Lag.Max < st.Lag.P99 {
		t.Errorf("lag per change %+v", st.Lag)
	}
}

func TestLagHistogramQuantiles(t *testing.T) {
	var h lagHistogram
	for i := range 100 {
		h.add(time.Duration(i+1) * time.Millisecond)
	}
	st := h.stats()
	// Bucket bounds are at most 19% above the true quantile.
	if st.P50 < 50*time.Millisecond || st.P50 > 60*time.Millisecond || st.P99 < 99*time.Millisecond || st.Max != 100*time.Millisecond {
		t.Fatalf("quantiles of 1..100 ms: %+v", st)
	}
	h.add(-time.Second) // never negative: bucket 0
	h.add(time.Hour)    // the last bucket
	if st := h.stats(); st.Max != time.Hour || st.Batches != 102 {
		t.Fatalf("%+v", st)
	}
}

// TestAntiEntropyNotWithOlderPeer: a subordinate speaking version 3 (release
// 0.1.0) gets no digest, and the sync works as before.
func TestAntiEntropyNotWithOlderPeer(t *testing.T) {
	ctx, p, s := pair(t, func(c *EngineConfig) {
		c.AntiEntropy = 50 * time.Millisecond
		if c.NodeID == "gw2" {
			c.maxVersion = 3
		}
	})
	if err := p.e.becomePrimaryMirrored(ctx); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 1))
	churn(r, p.mem, map[int]session.Session{}, 500, 1000)
	converge(t, p, s)
	p.e.CheckNow()
	time.Sleep(200 * time.Millisecond)
	if st := s.e.Stats(); st.FrameErrors != 0 || st.Lag.Batches != 0 {
		t.Errorf("version 3 subordinate: %+v", st)
	}
}

// TestAntiEntropyQuietWhenSubordinateFull: a subordinate at max_sessions
// lacks sessions for want of room; it does not ask for repairs it could not
// take (which would resend ranges, or a bulk, every round).
func TestAntiEntropyQuietWhenSubordinateFull(t *testing.T) {
	ctx, p, s := pair(t, func(c *EngineConfig) {
		c.AntiEntropy = 50 * time.Millisecond
		if c.NodeID == "gw2" {
			c.MaxSessions = 100
		}
	})
	if err := p.e.becomePrimaryMirrored(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		p.mem.Inject(upsert(synthSession(i)))
	}
	waitFor(t, "the subordinate full", func() bool { return s.e.Stats().Sessions == 100 })
	time.Sleep(500 * time.Millisecond) // several rounds
	if st := p.e.Stats(); st.DivergentRanges != 0 || st.Peers[0].Bulks != 1 {
		t.Errorf("full subordinate: %d divergent ranges, %d bulks", st.DivergentRanges, st.Peers[0].Bulks)
	}
}
