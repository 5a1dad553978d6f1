package harness

import (
	"strings"
	"testing"
	"time"

	"github.com/hagate/hagate/lab/netlab"
)

// The primary's daemon crashes (kill -9; the unit's ExecStopPost releases
// the virtual IPs) while the gateway itself keeps forwarding.
func TestSessionSurvivesDaemonCrash(t *testing.T) {
	t.Parallel() // a lab of its own; nothing timed tightly
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

// A member restarts after a crash and, within seconds, the primary shuts
// down while the third member's wan link is down: the restarted member must
// take over with the sessions, so it takes them from the primary during its
// hello holddown already (it would replace gw2, by priority, so it stays
// in hello for the whole holddown). The soak found this: the member used to refuse the sync until
// its holddown ended, then took over with an empty table and the sessions
// died.
func TestSessionSurvivesHandoverDuringHolddown(t *testing.T) {
	t.Parallel() // a lab of its own; nothing timed tightly
	o, lo := SoakClusterOptions()
	o.Extra += pickupOn
	o.Holddown = 4 * time.Second
	c := setup(t, 3, o, lo)
	c.StartAll()
	mustHolder(t, c, 20*time.Second, "gw1")
	s := startSession(t, c)
	if err := c.Kill("gw1"); err != nil {
		t.Fatal(err)
	}
	if err := c.Release("gw1"); err != nil {
		t.Fatal(err)
	}
	mustHolder(t, c, 10*time.Second, "gw2")
	if err := c.Start("gw1"); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	if err := netlab.WaitFor(4*time.Second, 50*time.Millisecond, func() (bool, error) {
		return strings.Contains(c.Log("gw1"), "bulk received"), nil
	}); err != nil {
		t.Fatalf("restarted gw1 got no bulk sync within 4 s of its start: %v\n%s", err, c.Log("gw1"))
	}
	if st, err := c.Status("gw1"); err != nil || st.Role != "hello" {
		t.Fatalf("gw1 %s after its start: role %q (%v), want hello: it would replace gw2 and so waits for its whole holddown", time.Since(started).Round(time.Millisecond), st.Role, err)
	}
	if err := c.Lab.LinkDown("gw3", netlab.WAN); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop("gw2"); err != nil {
		t.Fatal(err)
	}
	mustHolder(t, c, 10*time.Second, "gw1")
	time.Sleep(3 * time.Second) // TCP's retransmission backoff after the holddown
	survived, rep := finish(t, s)
	t.Logf("session: %s", rep)
	if !survived {
		t.Fatalf("session did not survive the handover to a member in hello: %s\n%s", rep, c.Log("gw1"))
	}
}
