package harness

// The split-brain witness against real daemons: two gateways, quorum on,
// and the server (203.0.113.100, which answers pings) as the witness, so
// three votes in all. When the heartbeat link between them breaks, only the
// member that still reaches the witness has a majority and holds the
// virtual IPs. A member's path to the witness is broken by cutting its wan
// port in the switch (its link keeps carrier, so link monitoring sees
// nothing: only the witness pings fail).

import (
	"slices"
	"testing"
	"time"

	"github.com/hagate/hagate/lab/netlab"
)

const witnessExtra = "split_brain:\n  quorum: true\n  witness: 203.0.113.100\n"

// waitWitness waits until gw's daemon counts the witness as up (or down).
func waitWitness(t *testing.T, c *Cluster, gw string, up bool) {
	t.Helper()
	if err := netlab.WaitFor(10*time.Second, 50*time.Millisecond, func() (bool, error) {
		st, err := c.Status(gw)
		if err != nil || len(st.Witness) != 1 {
			return false, nil
		}
		return st.Witness[0].Up == up, nil
	}); err != nil {
		t.Fatalf("%s: witness never counted %s: %v", gw, map[bool]string{true: "up", false: "down"}[up], err)
	}
	// The daemon's loop takes the change from the pinger's updates.
	time.Sleep(200 * time.Millisecond)
}

// splitFromWitness cuts loser's path to the witness, waits until its
// daemon notices, then cuts the heartbeat link between the two gateways
// (loser's ha port).
func splitFromWitness(t *testing.T, c *Cluster, loser string) {
	t.Helper()
	if err := c.Lab.Cut(loser, netlab.WAN); err != nil {
		t.Fatal(err)
	}
	waitWitness(t, c, loser, false)
	if err := c.Lab.Cut(loser, netlab.HA); err != nil {
		t.Fatal(err)
	}
}

func healAll(t *testing.T, c *Cluster, gw string) {
	t.Helper()
	for _, l := range []string{netlab.HA, netlab.WAN} {
		if err := c.Lab.Heal(gw, l); err != nil {
			t.Fatal(err)
		}
	}
}

// holdsAlone checks that only want holds the virtual IP, now and at every
// 10 ms poll for d.
func holdsAlone(t *testing.T, c *Cluster, want string, d time.Duration) {
	t.Helper()
	w := watchHolders(t, c, []string{want})
	time.Sleep(d)
	w.check(t)
}

func TestWitness(t *testing.T) {
	t.Parallel() // a lab of its own; nothing timed tightly
	t.Run("primary-reaches-witness", func(t *testing.T) {
		c := setup(t, 2, Options{Extra: witnessExtra}, netlab.Options{})
		c.StartAll()
		mustHolder(t, c, 15*time.Second, "gw1")
		waitWitness(t, c, "gw1", true)
		waitWitness(t, c, "gw2", true)
		// gw2 loses the witness, then the heartbeat link: 1 vote of 3.
		splitFromWitness(t, c, "gw2")
		// Well past the dead interval (0.5 s): gw2 has declared gw1 lost.
		holdsAlone(t, c, "gw1", 3*time.Second)
		if memberAlive(t, c, "gw2", "gw1") {
			t.Fatal("gw2 still hears gw1: the heartbeat link was not cut")
		}
		mustRole(t, c, "gw2", "subordinate", "")
		mustRole(t, c, "gw1", "primary", "gw1")
		healAll(t, c, "gw2")
		mustHolder(t, c, 10*time.Second, "gw1")
	})
	t.Run("subordinate-reaches-witness", func(t *testing.T) {
		c := setup(t, 2, Options{Extra: witnessExtra}, netlab.Options{})
		c.StartAll()
		mustHolder(t, c, 15*time.Second, "gw1")
		waitWitness(t, c, "gw2", true)
		// The primary loses the witness (still 2 votes with gw2), then
		// the heartbeat link: it steps down and gw2 takes over.
		splitFromWitness(t, c, "gw1")
		start := time.Now()
		mustHolder(t, c, 10*time.Second, "gw2")
		t.Logf("gw2 alone holds the virtual IP %s after the heartbeat link was cut", time.Since(start).Round(10*time.Millisecond))
		holdsAlone(t, c, "gw2", 2*time.Second)
		mustRole(t, c, "gw1", "subordinate", "")
		mustRole(t, c, "gw2", "primary", "gw2")
		healAll(t, c, "gw1")
		// gw1 has the higher priority but no uptime advantage: whoever
		// the election picks, one member holds the addresses again.
		mustHolder(t, c, 10*time.Second, "")
	})
	t.Run("no-rule", func(t *testing.T) {
		// The same faults without split_brain: FGCP's behaviour, each side
		// elects itself and both hold the addresses.
		c := setup(t, 2, Options{}, netlab.Options{})
		c.StartAll()
		mustHolder(t, c, 15*time.Second, "gw1")
		if err := c.Lab.Cut("gw2", netlab.WAN); err != nil {
			t.Fatal(err)
		}
		if err := c.Lab.Cut("gw2", netlab.HA); err != nil {
			t.Fatal(err)
		}
		var h []string
		if err := netlab.WaitFor(10*time.Second, 20*time.Millisecond, func() (bool, error) {
			h = c.Holders()
			return slices.Equal(h, []string{"gw1", "gw2"}), nil
		}); err != nil {
			t.Fatalf("holders %v, want both gw1 and gw2 without the split-brain rule", h)
		}
		healAll(t, c, "gw2")
		mustHolder(t, c, 10*time.Second, "")
	})
}
