package harness

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hagate/hagate/lab/netlab"
)

// link_failed_signal: the primary loses its wan link, gw2 takes over, and
// gw1 takes its other data interface (lan) down for a moment: the switch
// port facing it loses carrier and comes back, which is what makes a real
// switch flush the MACs it learnt there. Without the option the port's
// carrier never changes (the failing counterpart).
func TestLinkFailedSignal(t *testing.T) {
	t.Parallel() // a lab of its own; nothing timed tightly
	for _, tc := range []struct {
		name   string
		extra  string
		signal bool
	}{{"signal", "link_failed_signal: true\nlink_failed_signal_duration: 500ms\n", true}, {"no-signal", "", false}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := setup(t, 2, Options{Extra: tc.extra}, netlab.Options{})
			c.StartAll()
			mustHolder(t, c, 15*time.Second, "gw1")
			before := carrierChanges(t, c, "gw1-"+netlab.LAN)
			if err := c.Lab.LinkDown("gw1", netlab.WAN); err != nil {
				t.Fatal(err)
			}
			mustHolder(t, c, 10*time.Second, "gw2")
			var after int
			err := netlab.WaitFor(5*time.Second, 50*time.Millisecond, func() (bool, error) {
				after = carrierChanges(t, c, "gw1-"+netlab.LAN)
				return after-before >= 2, nil
			})
			if signalled := err == nil; signalled != tc.signal {
				t.Fatalf("switch port gw1-lan carrier changes %d -> %d: signalled %v, want %v", before, after, signalled, tc.signal)
			}
			// It comes back: the member stays on its lan as a subordinate.
			if err := netlab.WaitFor(5*time.Second, 50*time.Millisecond, func() (bool, error) {
				st, err := c.Lab.Link("gw1", netlab.LAN)
				return err == nil && st.Up, nil
			}); err != nil {
				t.Fatalf("gw1's lan did not come back: %v", err)
			}
		})
	}
}

// carrierChanges reads a switch port's carrier change counter.
func carrierChanges(t *testing.T, c *Cluster, port string) int {
	t.Helper()
	out, err := c.Lab.Exec(netlab.Switch, "cat", "/sys/class/net/"+port+"/carrier_changes")
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("carrier_changes of %s: %q", port, out)
	}
	return n
}
