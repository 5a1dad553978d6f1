package sim

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/hagate/hagate/internal/checksum"
	"github.com/hagate/hagate/internal/cluster"
)

// configSync turns on the ruleset sync of a member's configuration.
func configSync(cf *cluster.Config) { cf.SyncedParts = []checksum.Part{checksum.Ruleset} }

// tracked starts tracking every member's ruleset, all the same.
func tracked(c *Cluster) *Cluster {
	c.ConfigSyncDelay = 300 * time.Millisecond
	for _, m := range c.Members {
		c.SetRuleset(m.ID, 1)
	}
	return c
}

// A change on the primary reaches every subordinate (the fetch and apply
// take ConfigSyncDelay); a primary that changes its ruleset every 100 ms
// ends with every member on its last state. Without the sync the change
// stays on the primary.
func TestSimConfigChangeReachesSubordinates(t *testing.T) {
	for _, sync := range []bool{true, false} {
		mod := configSync
		if !sync {
			mod = nil
		}
		c := tracked(three(21, mod))
		mustSettle(t, c, "gw1")
		c.SetRuleset("gw1", 2)
		took, ok := c.RunUntil(5*time.Second, c.InSync)
		if ok != sync {
			t.Fatalf("sync %v: in sync %v after %s: %s", sync, ok, took, c.Rulesets())
		}
		if !sync {
			continue
		}
		t.Logf("in sync %s after the primary's change (sync delay %s)", took, c.ConfigSyncDelay)
		for v := uint64(3); v < 23; v++ {
			c.SetRuleset("gw1", v)
			c.Run(100 * time.Millisecond)
		}
		if _, ok := c.RunUntil(2*time.Second, c.InSync); !ok || c.Member("gw2").Ruleset != 22 {
			t.Fatalf("after the primary's burst of changes: %s", c.Rulesets())
		}
		if len(c.Violations) > 0 {
			t.Fatal(c.Violations)
		}
	}
}

// A subordinate whose kernel refuses the primary's ruleset stays out of
// sync and ranks below the member in sync: when the primary dies, gw3
// (priority 100, in sync) takes over, not gw2 (priority 150). Without the
// sync gw2 would. Once gw2 accepts again, it syncs from the new primary
// within the retry.
func TestSimOutOfSyncMemberRanksBelow(t *testing.T) {
	for _, sync := range []bool{true, false} {
		mod := configSync
		want := "gw3"
		if !sync {
			mod, want = nil, "gw2"
		}
		c := tracked(three(22, mod))
		c.Member("gw2").RefusesSync = true
		mustSettle(t, c, "gw1")
		c.SetRuleset("gw1", 2)
		c.Run(2 * time.Second)
		c.Kill("gw1")
		if _, ok := c.RunUntil(5*time.Second, func() bool { return onePrimary(c) }); !ok {
			t.Fatalf("no primary after gw1 died: %v", c)
		}
		if p := c.Primaries(); p[0] != want {
			t.Fatalf("sync %v: %s took over, want %s (%s)", sync, p[0], want, c.Rulesets())
		}
		if !sync {
			continue
		}
		c.Member("gw2").RefusesSync = false
		if took, ok := c.RunUntil(35*time.Second, c.InSync); !ok {
			t.Fatalf("gw2 never synced from gw3: %s", c.Rulesets())
		} else {
			t.Logf("gw2 synced %s after its kernel accepts again", took)
		}
		if len(c.Violations) > 0 {
			t.Fatal(c.Violations)
		}
	}
}

// Random schedules: rulesets changed by hand on any member (the primary's
// change is the cluster's, a subordinate's is undone), members killed and
// restarted, every 0.5 to 3 s for a minute; the order of effects holds
// throughout, and once the faults stop every member ends on the
// primary's ruleset.
func TestSimConfigRandomSchedules(t *testing.T) {
	for seed := uint64(1); seed <= 40; seed++ {
		c := tracked(three(seed, func(cf *cluster.Config) { configSync(cf); cf.SessionPickup = true }))
		c.SyncDelay, c.PromoteDelay = 50*time.Millisecond, 100*time.Millisecond
		rng := rand.New(rand.NewPCG(seed, 7))
		next := uint64(10)
		for end := c.Now.Add(time.Minute); c.Now.Before(end); {
			m := c.Members[rng.IntN(len(c.Members))]
			switch rng.IntN(4) {
			case 0, 1:
				next++
				c.SetRuleset(m.ID, next)
			case 2:
				running := 0
				for _, o := range c.Members {
					if o.Running {
						running++
					}
				}
				if running > 1 {
					c.Kill(m.ID)
				}
			case 3:
				if !m.Running {
					c.Start(m.ID)
				}
			}
			c.Run(time.Duration(500+rng.IntN(2500)) * time.Millisecond)
		}
		for _, m := range c.Members {
			if !m.Running {
				c.Start(m.ID)
			}
		}
		if _, ok := c.RunUntil(holddown+10*time.Second, func() bool { return settled(c) && c.InSync() }); !ok {
			t.Fatalf("seed %d: not settled in sync: %v %s", seed, c, c.Rulesets())
		}
		if len(c.Violations) > 0 {
			t.Fatalf("seed %d: %v", seed, c.Violations)
		}
	}
}
