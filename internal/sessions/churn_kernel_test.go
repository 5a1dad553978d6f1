package sessions

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/hagate/hagate/internal/nstest"
	"github.com/hagate/hagate/internal/sessions/session"
)

// BenchmarkNamespacesChurn measures session pickup under churn between two
// members in namespaces (kernel tables both): each iteration creates per
// sessions in the primary's table and ends the ones made the iteration
// before, as short-lived connections do: "flat-out" as fast as the
// generator goes, "paced" 100 of each every 100 ms (2,000 changes/s). It
// reports the subordinate's lag
// per change (p50, p99 of its batches) and checks it converges. Run it with
// -cpuprofile to see where the engine spends its time (the generator's
// netlink writes are in the same process: conntrack.(*Kernel).Apply called
// from this benchmark).
func BenchmarkNamespacesChurn(b *testing.B) {
	b.Run("flat-out", func(b *testing.B) { churnNamespaces(b, 1000, 0, 0) })
	b.Run("paced", func(b *testing.B) { churnNamespaces(b, 100, 100*time.Millisecond, 0) })
	// The subordinate holds new sessions back (install_delay): what the
	// sync costs besides the subordinate's kernel.
	b.Run("flat-out-held-back", func(b *testing.B) { churnNamespaces(b, 1000, 0, time.Minute) })
	b.Run("burst-held-back", func(b *testing.B) { churnNamespaces(b, 3200, 100*time.Millisecond, time.Minute) })
	b.Run("burst", func(b *testing.B) { churnNamespaces(b, 1600, 100*time.Millisecond, 0) })
}

func churnNamespaces(b *testing.B, per int, every, installDelay time.Duration) {
	a, bb := nstest.New(b), nstest.New(b)
	nstest.Veth(b, a, "198.51.100.1/24", bb, "198.51.100.2/24")
	ka, kb := openKernel(b, a, 0), openKernel(b, bb, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ea, eb := nsSyncing(b, ctx, a, bb, ka, kb, 5*time.Second, func(c *EngineConfig) { c.InstallDelay = installDelay })
	all := nsSessions(2 * per)
	halves := [2][]session.Change{all[:per], all[per:]}
	dels := func(cs []session.Change) []session.Change {
		out := make([]session.Change, len(cs))
		for i, c := range cs {
			out[i] = session.Change{Op: session.Delete, Session: c.Session}
		}
		return out
	}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		time.Sleep(time.Until(start.Add(time.Duration(i) * every)))
		if err := ka.Apply(ctx, halves[i%2]); err != nil {
			b.Fatal(err)
		}
		if i > 0 {
			if err := ka.Apply(ctx, dels(halves[(i+1)%2])); err != nil {
				b.Fatal(err)
			}
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := ea.Stats()
		if len(st.Peers) == 1 && st.Peers[0].Queued == 0 && st.Peers[0].Sending == 0 && st.Peers[0].AckedSeq == st.Peers[0].SentSeq && eb.Stats().Sessions == st.Sessions {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("no convergence: primary %+v subordinate %+v", st, eb.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.StopTimer()
	lag := eb.Stats().Lag
	b.ReportMetric(float64(lag.P50)/1e6, "p50-lag-ms")
	b.ReportMetric(float64(lag.P99)/1e6, "p99-lag-ms")
	b.ReportMetric(float64(2*per), "changes/op")
}

// BenchmarkNamespacesHeldBackTakeover measures what install_delay costs a
// takeover: the subordinate holds held sessions back from its kernel (a
// delay of an hour), then is promoted; BecomePrimary returns, and the
// daemon claims the addresses, once they are installed. It reports the
// promotion's time per op (one op: one promotion of held sessions).
func BenchmarkNamespacesHeldBackTakeover(b *testing.B) {
	for _, held := range []int{1000, 20000} {
		b.Run(strconv.Itoa(held), func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				a, bb := nstest.New(b), nstest.New(b)
				nstest.Veth(b, a, "198.51.100.1/24", bb, "198.51.100.2/24")
				ka, kb := openKernel(b, a, 0), openKernel(b, bb, 0)
				ctx, cancel := context.WithCancel(context.Background())
				_, eb := nsSyncing(b, ctx, a, bb, ka, kb, 5*time.Second, func(c *EngineConfig) { c.InstallDelay = time.Hour })
				if err := ka.Apply(ctx, nsSessions(held)); err != nil {
					b.Fatal(err)
				}
				waitFor(b, "the sessions held back", func() bool { return eb.Stats().HeldBack == held })
				b.StartTimer()
				if err := eb.BecomePrimary(ctx); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				cancel()
			}
		})
	}
}
