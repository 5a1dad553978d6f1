package harness

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hagate/hagate/lab/netlab"
)

// editConfig replaces old with new in gw's configuration file.
func editConfig(t *testing.T, c *Cluster, gw, old, new string) {
	t.Helper()
	b, err := os.ReadFile(c.ConfigPath(gw))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("%s's configuration has no %q", gw, old)
	}
	if err := os.WriteFile(c.ConfigPath(gw), []byte(strings.Replace(string(b), old, new, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
}

// reload runs `hagate reload` for gw and returns its output. It names the
// control socket, so that the command does not read the (edited) file
// itself: the daemon must refuse what is wrong in it.
func reload(c *Cluster, gw string) (string, error) {
	out, err := exec.Command(c.Bin, "reload", "--socket", c.Socket(gw)).CombinedOutput()
	return string(out), err
}

// waitPriority waits until gw's status shows it with priority p.
func waitPriority(t *testing.T, c *Cluster, gw string, p int) {
	t.Helper()
	got := 0
	if err := netlab.WaitFor(5*time.Second, 50*time.Millisecond, func() (bool, error) {
		st, err := c.Status(gw)
		for _, m := range st.Members {
			if err == nil && m.Self {
				got = m.Priority
			}
		}
		return got == p, nil
	}); err != nil {
		t.Fatalf("%s's priority %d, want %d", gw, got, p)
	}
}

// Live reconfiguration on a running cluster: the primary's priority changes
// with `hagate reload` and with SIGHUP (systemctl reload) without a role
// change, since with override off the HA uptime decides first; an invalid
// file and a change to a setting fixed for the daemon's life are refused
// with the reason and the running configuration stays. With override on,
// the same lower priority hands over: the reload applies what the new
// settings call for.
func TestReloadOnRunningCluster(t *testing.T) {
	t.Parallel()
	for _, override := range []bool{false, true} {
		name := map[bool]string{false: "override-off", true: "override-on"}[override]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			// gw1 starts alone and is primary for a while before gw2
			// comes: its uptime is longer by more than the margin.
			c := setup(t, 2, Options{Override: override, UptimeMargin: time.Second}, netlab.Options{})
			if err := c.Start("gw1"); err != nil {
				t.Fatal(err)
			}
			mustHolder(t, c, 15*time.Second, "gw1")
			time.Sleep(2 * time.Second)
			if err := c.Start("gw2"); err != nil {
				t.Fatal(err)
			}
			waitMember(t, c, "gw1", "gw2", "subordinate", buildVersion(t, c.Bin))
			roles := c.Roles("gw1") + c.Roles("gw2")

			editConfig(t, c, "gw1", "priority: 200", "priority: 100") // below gw2's 150
			out, err := reload(c, "gw1")
			if err != nil {
				t.Fatalf("hagate reload: %v\n%s", err, out)
			}
			t.Logf("hagate reload: %s", strings.TrimSpace(out))
			waitPriority(t, c, "gw1", 100)
			if override {
				mustHolder(t, c, 10*time.Second, "gw2")
				return
			}
			time.Sleep(time.Second) // a failover would show by now
			mustHolder(t, c, time.Second, "gw1")
			if now := c.Roles("gw1") + c.Roles("gw2"); now != roles {
				t.Fatalf("role changes after the reload:\n%s\nwant none after:\n%s", now, roles)
			}

			// A typo'd key: refused, named with its line; the running
			// configuration stays.
			editConfig(t, c, "gw1", "override: false", "overide: false")
			out, err = reload(c, "gw1")
			t.Logf("hagate reload of a typo: %s", strings.TrimSpace(out))
			if err == nil || !strings.Contains(out, "overide") || !strings.Contains(out, "line 4") {
				t.Fatalf("reload of a typo'd key: %v, want refused naming overide and line 4:\n%s", err, out)
			}
			editConfig(t, c, "gw1", "overide: false", "override: false")

			// A setting fixed for the daemon's life: refused with the reason.
			editConfig(t, c, "gw1", "node_id: gw1", "node_id: gw9")
			out, err = reload(c, "gw1")
			t.Logf("hagate reload of node_id: %s", strings.TrimSpace(out))
			if err == nil || !strings.Contains(out, "node_id cannot change") {
				t.Fatalf("reload of node_id: %v, want refused with the reason:\n%s", err, out)
			}
			editConfig(t, c, "gw1", "node_id: gw9", "node_id: gw1")
			waitPriority(t, c, "gw1", 100)

			// SIGHUP does the same as reload: a typo is refused and logged,
			// a new priority applied.
			editConfig(t, c, "gw1", "override: false", "overide: false")
			if err := c.Reload("gw1"); err != nil {
				t.Fatal(err)
			}
			if err := netlab.WaitFor(5*time.Second, 50*time.Millisecond, func() (bool, error) {
				return strings.Contains(c.Log("gw1"), "SIGHUP: configuration not reloaded"), nil
			}); err != nil {
				t.Fatalf("SIGHUP with a typo: no refusal logged")
			}
			editConfig(t, c, "gw1", "overide: false", "override: false")
			editConfig(t, c, "gw1", "priority: 100", "priority: 90")
			if err := c.Reload("gw1"); err != nil {
				t.Fatal(err)
			}
			waitPriority(t, c, "gw1", 90)
			mustHolder(t, c, time.Second, "gw1")
			if now := c.Roles("gw1") + c.Roles("gw2"); now != roles {
				t.Fatalf("role changes after SIGHUP:\n%s\nwant none after:\n%s", now, roles)
			}
		})
	}
}
