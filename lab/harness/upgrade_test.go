package harness

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hagate/hagate/lab/netlab"
)

// The previous release, built once per test binary run from git.
var (
	oldOnce sync.Once
	oldBin  string
	oldErr  error
)

// previousRelease returns release 0.1.0's hagate command, built from git.
func previousRelease(t *testing.T) string {
	t.Helper()
	oldOnce.Do(func() {
		dir, err := os.MkdirTemp("", "hagate-release")
		if err != nil {
			oldErr = err
			return
		}
		oldBin, oldErr = BuildRelease(Release010, dir)
	})
	if oldErr != nil {
		t.Fatal(oldErr)
	}
	return oldBin
}

// dualWatch samples every 50 ms which gateways hold the virtual IP (over
// netlink in each gateway's namespace) and counts the samples where more
// than one did.
type dualWatch struct {
	stop    func()
	samples int
	dual    int
	first   string // the first dual sample, for the failure message
}

func watchDual(t *testing.T, c *Cluster) *dualWatch {
	t.Helper()
	w := &dualWatch{}
	w.stop = sampleHolders(t, c, 50*time.Millisecond, func(held []string, err error) {
		if err != nil {
			return // a namespace going away at the end
		}
		w.samples++
		if len(held) > 1 {
			w.dual++
			if w.first == "" {
				w.first = fmt.Sprintf("%s: %v", time.Now().Format("15:04:05.000"), held)
			}
		}
	})
	return w
}

// finish stops sampling; it reports the samples taken and the dual ones.
func (w *dualWatch) finish() (samples, dual int, first string) {
	w.stop()
	return w.samples, w.dual, w.first
}

// waitMember waits until viewer's status shows member in role (any role
// of a member in the cluster if "") with version.
func waitMember(t *testing.T, c *Cluster, viewer, member, role, version string) {
	t.Helper()
	var last string
	err := netlab.WaitFor(15*time.Second, 100*time.Millisecond, func() (bool, error) {
		st, err := c.Status(viewer)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		for _, m := range st.Members {
			if m.NodeID == member {
				last = fmt.Sprintf("%s %s", m.Role, m.Version)
				inRole := m.Role == role || role == "" && (m.Role == "primary" || m.Role == "subordinate")
				return inRole && m.Version == version, nil
			}
		}
		last = "not listed"
		return false, nil
	})
	if err != nil {
		t.Fatalf("%s's status: %s is %s, want %s %s", viewer, member, last, role, version)
	}
}

// waitSynced waits until gw (the current build) has the primary's session.
func waitSynced(t *testing.T, c *Cluster, gw string) {
	t.Helper()
	var out []byte
	err := netlab.WaitFor(15*time.Second, 200*time.Millisecond, func() (bool, error) {
		out, _ = exec.Command(c.Bin, "sessions", "--config", c.ConfigPath(gw)).CombinedOutput()
		return strings.Contains(string(out), "tcp 1"), nil
	})
	if err != nil {
		t.Fatalf("%s never had the session:\n%s", gw, out)
	}
}

// buildVersion is what the current build says it is.
func buildVersion(t *testing.T, bin string) string {
	t.Helper()
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(strings.TrimSpace(string(out)), "hagate ")
}

// The uninterruptible upgrade of FGCP, from release 0.1.0 to this build: a
// cluster of 0.1.0 carrying a TCP session through the virtual IP (session
// pickup on) has its subordinates upgraded one by one, the old primary
// stopped as `systemctl stop` does (SIGTERM: it hands over), and then
// upgraded too. The session carries on, no two members ever hold the
// addresses, and `hagate status` names each member's version on the way.
func TestRollingUpgradeFromPreviousRelease(t *testing.T) {
	t.Parallel() // each cluster is a lab of its own; nothing timed tightly
	for _, n := range []int{2, 3} {
		t.Run(fmt.Sprintf("%d-members", n), func(t *testing.T) {
			t.Parallel()
			c := setup(t, n, Options{Extra: pickupOn}, netlab.Options{})
			old, now := previousRelease(t), buildVersion(t, c.Bin)
			for _, gw := range c.Gateways() {
				c.UseBin(gw, old)
			}
			if err := c.StartAll(); err != nil {
				t.Fatal(err)
			}
			mustHolder(t, c, 15*time.Second, "gw1")
			s := startSession(t, c)
			w := watchDual(t, c)

			// Subordinates first, the lowest priority first.
			for k := n; k >= 2; k-- {
				gw := netlab.Gateway(k)
				if err := c.Stop(gw); err != nil {
					t.Fatal(err)
				}
				c.UseBin(gw, c.Bin)
				if err := c.Start(gw); err != nil {
					t.Fatal(err)
				}
				waitMember(t, c, gw, "gw1", "primary", "0.1.0")
				waitMember(t, c, gw, gw, "subordinate", now)
				// The members upgraded before it: both of this build, they
				// speak the newest heartbeat version to each other again.
				for j := k + 1; j <= n; j++ {
					waitMember(t, c, gw, netlab.Gateway(j), "subordinate", now)
				}
				waitSynced(t, c, gw)
			}
			out, _ := exec.Command(c.Bin, "status", "--config", c.ConfigPath("gw2")).CombinedOutput()
			t.Logf("hagate status on gw2, gw1 still on 0.1.0:\n%s", out)
			if !strings.Contains(string(out), "0.1.0") || !strings.Contains(string(out), now) {
				t.Fatalf("status does not name both versions (0.1.0 and %s):\n%s", now, out)
			}

			// The handover: the old primary stops, gw2 takes over with the
			// session; then gw1 comes back on this build. Its HA uptime is
			// within uptime_margin of the others' (all restarted minutes
			// apart at most), so priority decides and gw1 may well take
			// the primary role back, as FGCP's does after an upgrade: the
			// session must survive that second handover too.
			if err := c.Stop("gw1"); err != nil {
				t.Fatal(err)
			}
			mustHolder(t, c, 10*time.Second, "gw2")
			c.UseBin("gw1", c.Bin)
			if err := c.Start("gw1"); err != nil {
				t.Fatal(err)
			}
			waitMember(t, c, "gw2", "gw1", "", now)
			time.Sleep(3 * time.Second) // gw1's hello holddown (2s), then the election
			mustHolder(t, c, 10*time.Second, "")
			out, _ = exec.Command(c.Bin, "status", "--config", c.ConfigPath("gw2")).CombinedOutput()
			t.Logf("hagate status on gw2, every member upgraded:\n%s", out)
			samples, dual, first := w.finish()
			survived, rep := finish(t, s)
			t.Logf("%d members: %d holder samples (every 50ms), %d with two holders; session: %s", n, samples, dual, rep)
			if dual != 0 {
				t.Errorf("two members held the virtual IPs in %d of %d samples, first at %s", dual, samples, first)
			}
			if !survived {
				t.Errorf("the session did not survive the upgrade: %s", rep)
			}
			if h := c.Holders(); len(h) != 1 {
				t.Errorf("holders after the upgrade %v, want one", h)
			}
		})
	}
}

// A member of the previous release started beside a primary of this build
// (a rollback, a restored image) joins as a subordinate: it reads the
// heartbeats this build sends it (version 2) and never takes the addresses.
// The control: the same member with another cluster's key hears nobody and
// takes them, which the sampling sees.
func TestPreviousReleaseJoinsCurrentPrimary(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		keys map[string]string
		dual bool
	}{{"same-key", nil, false}, {"control-other-key", map[string]string{"gw2": KeyFor("another cluster")}, true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := setup(t, 2, Options{Keys: tc.keys}, netlab.Options{})
			old, now := previousRelease(t), buildVersion(t, c.Bin)
			if err := c.Start("gw1"); err != nil {
				t.Fatal(err)
			}
			mustHolder(t, c, 15*time.Second, "gw1")
			w := watchDual(t, c)
			c.UseBin("gw2", old)
			if err := c.Start("gw2"); err != nil {
				t.Fatal(err)
			}
			if !tc.dual {
				waitMember(t, c, "gw1", "gw2", "subordinate", "0.1.0")
				waitMember(t, c, "gw1", "gw1", "primary", now)
			}
			// Past gw2's hello holddown (2s) with margin: when an unheard
			// member takes the addresses.
			time.Sleep(5 * time.Second)
			samples, dual, first := w.finish()
			t.Logf("%d holder samples (every 50ms), %d with two holders", samples, dual)
			if (dual > 0) != tc.dual {
				t.Fatalf("two holders in %d of %d samples (first %q), want any: %v", dual, samples, first, tc.dual)
			}
			if tc.dual {
				return
			}
			if st, err := c.Status("gw2"); err != nil || st.Role != "subordinate" || st.PrimaryID != "gw1" {
				t.Fatalf("gw2 (0.1.0) status: role %q primary %q (%v), want subordinate of gw1", st.Role, st.PrimaryID, err)
			}
		})
	}
}
