package sessions

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hagate/hagate/internal/nstest"
	"github.com/hagate/hagate/internal/sessions/conntrack"
	"github.com/hagate/hagate/internal/sessions/session"
)

// kernelKeyDiff returns how many keys of want the kernel table lacks, and
// how many it holds beyond them (sync-link sessions aside: only TEST-NET
// sessions of nsSessions count).
func kernelKeyDiff(t *testing.T, k *conntrack.Kernel, want map[session.Key]bool) (missing, extra int) {
	t.Helper()
	seen := 0
	err := k.Dump(context.Background(), func(s session.Session) error {
		if s.Orig.DstPort != 443 { // nsSessions' sessions only
			return nil
		}
		if want[s.Key] {
			seen++
		} else {
			extra++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return len(want) - seen, extra
}

// nsSyncing starts a primary over pri in namespace a (198.51.100.1) and a
// subordinate over sub in b (198.51.100.2), anti-entropy every interval
// and the whole-table dump off (an hour), and waits for the subordinate's
// first bulk. modSub adjusts the subordinate's configuration.
func nsSyncing(t testing.TB, ctx context.Context, a, b *nstest.NS, pri, sub Backend, interval time.Duration, modSub func(*EngineConfig)) (ea, eb *Engine) {
	t.Helper()
	noDump := func(c *EngineConfig) { c.AntiEntropy, c.Refresh, c.FullRefresh = interval, time.Hour, time.Hour }
	pa, pb := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.2")
	ea = nsEngine(t, ctx, a, "gw1", pa, pri, noDump)
	eb = nsEngine(t, ctx, b, "gw2", pb, sub, noDump, modSub)
	if err := eb.BecomeSubordinate(ctx, "gw1"); err != nil {
		t.Fatal(err)
	}
	if err := ea.becomePrimaryMirrored(ctx); err != nil {
		t.Fatal(err)
	}
	ea.SetPeers([]netip.AddrPort{netip.AddrPortFrom(pb, DefaultPort)})
	waitFor(t, "the subordinate's bulk", func() bool { return !eb.Stats().LastBulk.At.IsZero() })
	return ea, eb
}

// TestNamespacesAntiEntropyRepairs: two members in namespaces, kernel
// tables both, the whole-table dump switched off (an hour). The subordinate
// loses one in fifty of the changes of a burst (creates and ends of sessions, as
// a lost event or batch would), so its kernel table diverges. With
// anti-entropy every 500 ms, its kernel table holds exactly the primary's
// sessions within seconds, and the repair is counted; with anti-entropy
// off, the divergence is still there after the same wait.
func TestNamespacesAntiEntropyRepairs(t *testing.T) {
	for _, on := range []bool{true, false} {
		name := map[bool]string{true: "on", false: "off"}[on]
		t.Run(name, func(t *testing.T) {
			a, b := nstest.New(t), nstest.New(t)
			nstest.Veth(t, a, "198.51.100.1/24", b, "198.51.100.2/24")
			ka, kb := openKernel(t, a, 0), openKernel(t, b, 0)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			interval := 500 * time.Millisecond
			if !on {
				interval = -1
			}
			var losing atomic.Bool
			r := rand.New(rand.NewPCG(1, 2))
			ea, eb := nsSyncing(t, ctx, a, b, ka, kb, interval, func(c *EngineConfig) {
				c.lose = func(*session.Change) bool { return losing.Load() && r.IntN(50) == 0 }
			})

			// The burst: 4000 sessions made, 1500 of them ended.
			cs := nsSessions(4000)
			losing.Store(true)
			if err := ka.Apply(ctx, cs); err != nil {
				t.Fatal(err)
			}
			dels := make([]session.Change, 1500)
			for i := range dels {
				dels[i] = session.Change{Op: session.Delete, Session: cs[i].Session}
			}
			if err := ka.Apply(ctx, dels); err != nil {
				t.Fatal(err)
			}
			want := map[session.Key]bool{}
			for _, c := range cs[1500:] {
				want[c.Session.Key] = true
			}
			waitFor(t, "the primary to send the burst", func() bool {
				st := ea.Stats()
				return st.Sessions >= len(want) && len(st.Peers) == 1 && st.Peers[0].Queued == 0 && st.Peers[0].Sending == 0 && st.Peers[0].AckedSeq == st.Peers[0].SentSeq
			})
			losing.Store(false)

			start := time.Now()
			var missing, extra int
			for time.Since(start) < 5*time.Second {
				if missing, extra = kernelKeyDiff(t, kb, want); missing == 0 && extra == 0 {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			t.Logf("anti-entropy %s: after %v the subordinate's kernel table lacks %d sessions and holds %d ended ones; divergent ranges %d, repaired %d so far",
				name, time.Since(start).Round(time.Millisecond), missing, extra, ea.Stats().DivergentRanges, eb.Stats().Repaired)
			if on && (missing != 0 || extra != 0) {
				t.Fatalf("anti-entropy on: the subordinate still differs (%d missing, %d extra)", missing, extra)
			}
			if on {
				// Counted once the repair's stale sessions are removed.
				waitFor(t, "the repair counted", func() bool { return eb.Stats().Repaired > 0 })
				if st := ea.Stats(); st.Peers[0].Bulks != 1 {
					t.Errorf("%d bulks: the ranges alone should have been resent", st.Peers[0].Bulks)
				}
			}
			if !on && missing == 0 && extra == 0 {
				t.Fatal("anti-entropy off, and the subordinate converged all the same: the test proves nothing")
			}
		})
	}
}

// TestNamespacesEventOverflowRepaired: the primary's event socket holds 64
// KiB, the whole-table dump and anti-entropy are off. Bursts of creates and
// ends many times that size overflow it again and again, some while the
// primary is dumping after the previous overflow; every loss is reported
// and dumped, so the subordinate ends up with exactly the primary's
// sessions. A later reported overflow's dump also repairs what an earlier
// congestion lost silently, so this passes without the watcher emptying
// its socket on an overflow too; conntrack's TestKernelEveryLossReported
// shows that silent loss itself.
func TestNamespacesEventOverflowRepaired(t *testing.T) {
	a, b := nstest.New(t), nstest.New(t)
	nstest.Veth(t, a, "198.51.100.1/24", b, "198.51.100.2/24")
	ka, kb := openKernel(t, a, 0), openKernel(t, b, 0)
	watched, err := conntrack.Open(conntrack.Options{NetNSPath: a.Path(), EventBuffer: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { watched.Close() }) // after the engines' own cleanups, which wait for them
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ea, _ := nsSyncing(t, ctx, a, b, watched, kb, -1, func(*EngineConfig) {})

	cs := nsSessions(20000)
	want := map[session.Key]bool{}
	for i := 0; i < len(cs); i += 2000 {
		burst := cs[i : i+2000]
		if err := ka.Apply(ctx, burst); err != nil {
			t.Fatal(err)
		}
		dels := make([]session.Change, 800)
		for j := range dels {
			dels[j] = session.Change{Op: session.Delete, Session: burst[j].Session}
		}
		if err := ka.Apply(ctx, dels); err != nil {
			t.Fatal(err)
		}
		for _, c := range burst[800:] {
			want[c.Session.Key] = true
		}
	}
	start := time.Now()
	var missing, extra int
	for time.Since(start) < 10*time.Second {
		if missing, extra = kernelKeyDiff(t, kb, want); missing == 0 && extra == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	st := ea.Stats()
	t.Logf("after %v: the subordinate lacks %d sessions and holds %d ended ones; the primary saw %d overflows",
		time.Since(start).Round(time.Millisecond), missing, extra, st.EventOverflows)
	if st.EventOverflows == 0 {
		t.Fatal("the bursts never overflowed the event socket: the test proves nothing")
	}
	if missing != 0 || extra != 0 {
		t.Fatalf("the subordinate differs from the primary (%d missing, %d extra)", missing, extra)
	}
}
