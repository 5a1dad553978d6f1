package harness

import (
	"testing"
	"time"
)

// The primary's daemon crashes (kill -9; the unit's ExecStopPost releases
// the virtual IPs) while the gateway itself keeps forwarding.
func TestSessionSurvivesDaemonCrash(t *testing.T) {
	o, lo := SoakClusterOptions()
	o.Extra += pickupOn
	c := setup(t, 3, o, lo)
	c.StartAll()
	mustHolder(t, c, 15*time.Second, "gw1")
	s := startSession(t, c)
	if err := c.Kill("gw1"); err != nil {
		t.Fatal(err)
	}
	if err := c.Release("gw1"); err != nil {
		t.Fatal(err)
	}
	mustHolder(t, c, 10*time.Second, "gw2")
	survived, rep := finish(t, s)
	t.Logf("session: %s", rep)
	if !survived {
		t.Fatalf("session did not survive a crash of the primary's daemon: %s", rep)
	}
}
