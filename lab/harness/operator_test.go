package harness

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hagate/hagate/internal/cluster"
	"github.com/hagate/hagate/lab/netlab"
)

// The operator's commands on a running cluster: hagate reset-uptime sets
// the member's HA uptime back to about zero; hagate failover's flag
// survives a crash and restart of the daemon (kept in state_dir), so the
// member comes back ranking last and gw2 stays primary; --unset removes
// it; hagate history --clear leaves only the entry saying it was cleared.
func TestOperatorCommands(t *testing.T) {
	c := setup(t, 2, Options{}, netlab.Options{})
	c.StartAll()
	mustHolder(t, c, 15*time.Second, "gw1")
	hagate := func(gw string, args ...string) string {
		t.Helper()
		out, err := exec.Command(c.Bin, append(args, "--config", c.ConfigPath(gw))...).CombinedOutput()
		if err != nil {
			t.Fatalf("hagate %v on %s: %v\n%s", args, gw, err, out)
		}
		return string(out)
	}
	self := func(gw string) cluster.Member {
		t.Helper()
		st, err := c.Status(gw)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range st.Members {
			if m.Self {
				return m
			}
		}
		t.Fatalf("%s's status lists no member as itself", gw)
		return cluster.Member{}
	}
	uptime := func(gw string) float64 { return self(gw).UptimeSeconds }

	time.Sleep(3 * time.Second)
	before := uptime("gw2")
	hagate("gw2", "reset-uptime")
	if after := uptime("gw2"); before < 3 || after > 2 {
		t.Fatalf("gw2's uptime %.1fs before hagate reset-uptime, %.1fs after: want >= 3 then near 0", before, after)
	}

	hagate("gw1", "failover")
	mustHolder(t, c, 5*time.Second, "gw2")
	if err := c.Kill("gw1"); err != nil {
		t.Fatal(err)
	}
	if err := c.Start("gw1"); err != nil {
		t.Fatal(err)
	}
	if err := netlab.WaitFor(10*time.Second, 200*time.Millisecond, func() (bool, error) {
		_, err := c.Status("gw1")
		return err == nil && self("gw1").FailoverSet, nil
	}); err != nil {
		t.Fatalf("after a restart gw1's failover flag is not set: %v\n%s", err, c.Log("gw1"))
	}
	time.Sleep(3 * time.Second) // past gw1's hello holddown: it would take over if it could
	mustHolder(t, c, time.Second, "gw2")
	hagate("gw1", "failover", "--unset")
	if err := c.Stop("gw1"); err != nil {
		t.Fatal(err)
	}
	if err := c.Start("gw1"); err != nil {
		t.Fatal(err)
	}
	if err := netlab.WaitFor(10*time.Second, 200*time.Millisecond, func() (bool, error) {
		_, err := c.Status("gw1")
		return err == nil && !self("gw1").FailoverSet, nil
	}); err != nil {
		t.Fatalf("after --unset and a restart gw1's failover flag is still set: %v", err)
	}

	if out := hagate("gw2", "history"); !strings.Contains(out, "became primary") {
		t.Fatalf("history before --clear:\n%s", out)
	}
	hagate("gw2", "history", "--clear")
	if out := hagate("gw2", "history"); strings.Contains(out, "became primary") || !strings.Contains(out, "history cleared") {
		t.Fatalf("history after --clear:\n%s", out)
	}
}
