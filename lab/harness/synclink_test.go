package harness

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hagate/hagate/lab/netlab"
)

// With two HA links, cutting the first one moves the session sync to the
// second: a session opened during the cut is synced and survives the
// primary's power loss. With the sync restricted to the first link
// (session_pickup.links), the same cut stops the sync and the session dies:
// the test can fail.
func TestSyncMovesToTheSecondLink(t *testing.T) {
	t.Parallel() // a lab of its own; nothing timed tightly
	for _, tc := range []struct {
		name  string
		links string
		want  bool
	}{{"both-links", "", true}, {"first-link-only", "  links: [" + netlab.HA + "]\n", false}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := setup(t, 2, Options{HA2: true, Extra: pickupOn + tc.links}, netlab.Options{HA2: true})
			c.StartAll()
			mustHolder(t, c, 15*time.Second, "gw1")
			if err := c.Lab.Cut("gw1", netlab.HA); err != nil {
				t.Fatal(err)
			}
			time.Sleep(2 * time.Second) // the dead interval, then the redial
			s := startSession(t, c)
			out, err := exec.Command(c.Bin, "sessions", "--config", c.ConfigPath("gw2")).CombinedOutput()
			if err != nil {
				t.Fatalf("hagate sessions on gw2: %v\n%s", err, out)
			}
			if synced := strings.Contains(string(out), "tcp 1"); synced != tc.want {
				t.Errorf("session synced to gw2: %v, want %v\n%s", synced, tc.want, out)
			}
			if err := c.PowerOff("gw1"); err != nil {
				t.Fatal(err)
			}
			mustHolder(t, c, 10*time.Second, "gw2")
			survived, rep := finish(t, s)
			t.Logf("session: %s", rep)
			if survived != tc.want {
				t.Fatalf("survived %v, want %v: %s", survived, tc.want, rep)
			}
		})
	}
}
