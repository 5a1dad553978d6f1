package harness

import (
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/hagate/hagate/lab/netlab"
)

// Transparent mode: two gateways bridge the client's and the server's
// halves of 192.0.2.0/24 (netlab's transparent lab); only the primary's
// bridge forwards.

const strictPickup = pickupOn + "  tcp_window_tracking: true\n"

// noRelearn makes the switch drop the relearning frames (ethertype
// 0x88b5) as they arrive, before it learns from them (the bridge learns
// after its prerouting hook, before forwarding): as if the new primary had
// sent none.
const noRelearn = "add table bridge norelearn; add chain bridge norelearn pre { type filter hook prerouting priority -10; }; add rule bridge norelearn pre ether type 0x88b5 counter drop"

// A TCP echo session through the primary's bridge survives the primary's
// power loss, with session pickup under strict tracking: the new primary
// sends the relearning frames from the addresses the old one had learnt,
// so the switches move client and server to its ports at once. The
// failing counterpart drops those frames in the switch: the switches keep
// sending both hosts' frames to the dead primary's ports (their links stay
// up, as behind a media converter), and the session stays stalled until
// the hosts' ARP entries expire and their broadcasts relearn the path, or
// the switch's entries age out (300 s).
func TestTransparentFailover(t *testing.T) {
	t.Parallel() // a lab of its own; nothing timed tightly
	for _, tc := range []struct {
		name    string
		relearn bool
	}{{"relearn", true}, {"no-relearn", false}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := setup(t, 2, Options{Extra: strictPickup}, netlab.Options{Transparent: true})
			c.StartAll()
			mustHolder(t, c, 15*time.Second, "gw1")
			if !tc.relearn {
				if _, err := c.Lab.Exec(netlab.Switch, "nft", noRelearn); err != nil {
					t.Fatal(err)
				}
			}
			s := startSession(t, c)
			// gw2 has fetched gw1's learnt addresses: client and server.
			err := netlab.WaitFor(10*time.Second, 200*time.Millisecond, func() (bool, error) {
				st, err := c.Status("gw2")
				return err == nil && st.Bridge != nil && st.Bridge.Learnt >= 2 && st.Fenced, nil
			})
			if err != nil {
				st, _ := c.Status("gw2")
				t.Fatalf("gw2 never fetched gw1's forwarding database (status %+v): %v", st.Bridge, err)
			}
			if err := c.PowerOff("gw1"); err != nil {
				t.Fatal(err)
			}
			mustHolder(t, c, 10*time.Second, "gw2")
			if tc.relearn {
				time.Sleep(3 * time.Second)
				r, err := s.Stop()
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("relearning frames: longest gap %s (%s)", r.MaxGap.Round(time.Millisecond), r)
				if !r.Survived {
					t.Fatalf("session died: %s\n%s", r, c.Log("gw2"))
				}
				return
			}
			// Still stalled well after the failover; then how long it
			// takes, up to a bound.
			time.Sleep(5 * time.Second)
			if r, err := s.Progress(); err != nil || !r.GapOpen || r.MaxGap < 5*time.Second {
				t.Fatalf("without the relearning frames the session recovered within 5 s of the failover (%+v, %v): the frames are not what moves the switches", r, err)
			}
			recovered := netlab.WaitFor(20*time.Second, 200*time.Millisecond, func() (bool, error) {
				r, err := s.Progress()
				return err == nil && !r.GapOpen, nil
			}) == nil
			r, err := s.Stop()
			if err != nil {
				t.Fatal(err)
			}
			// gw2 did send them: the switch dropped them.
			out, err := c.Lab.Exec(netlab.Switch, "nft", "list", "table", "bridge", "norelearn")
			if m := packetsRe.FindStringSubmatch(out); err != nil || m == nil || m[1] == "0" {
				t.Errorf("the switch dropped no relearning frame (%v):\n%s", err, out)
			}
			t.Logf("no relearning frames: recovered %v, longest gap %s (%s)", recovered, r.MaxGap.Round(time.Millisecond), r)
		})
	}
}

// The subordinate's blocked ports are what keeps two bridges in parallel
// from looping: one broadcast from the client reaches the server once.
// With fencing off both bridges forward, and the broadcast circles
// brlan, gw1, brwan, gw2, brlan... reaching the server again on every
// turn (until the lab switch's storm guard drops it).
func TestTransparentBlockedPortsNoLoop(t *testing.T) {
	t.Parallel() // a lab of its own; nothing timed tightly
	for _, tc := range []struct {
		name  string
		extra string
		loop  bool
	}{{"fenced", "", false}, {"fence-off", fenceOff, true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := setup(t, 2, Options{Extra: tc.extra}, netlab.Options{Transparent: true})
			c.StartAll()
			mustHolder(t, c, 15*time.Second, "gw1")
			if st, err := c.Status("gw2"); err != nil || st.Fenced == tc.loop {
				t.Fatalf("gw2 status: fenced=%v (err %v), want %v", st.Fenced, err, !tc.loop)
			}
			probe := `add table netdev probe; add chain netdev probe in { type filter hook ingress device "eth0" priority 0; }; add rule netdev probe in ip saddr ` +
				netlab.ClientAddr.Addr().String() + " icmp type echo-request counter"
			if _, err := c.Lab.Exec(netlab.Server, "nft", probe); err != nil {
				t.Fatal(err)
			}
			// Let the new primary's gratuitous ARPs pass (with fencing off
			// they loop too, and use up the storm guard's burst).
			time.Sleep(2500 * time.Millisecond)
			c.Lab.Exec(netlab.Client, "ping", "-b", "-c1", "-W1", "-q", "192.0.2.255") // answers or not: counted at the server
			time.Sleep(500 * time.Millisecond)
			out, err := c.Lab.Exec(netlab.Server, "nft", "list", "chain", "netdev", "probe", "in")
			if err != nil {
				t.Fatal(err)
			}
			m := packetsRe.FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("no counter in:\n%s", out)
			}
			copies, _ := strconv.Atoi(m[1])
			// The guard's drops: the loop's turns cut short (every
			// broadcast of the run, the gateways' own ARP included).
			guard, _ := c.Lab.Exec(netlab.Switch, "nft", "list", "chain", "bridge", "lab", "forward")
			dropped := "?"
			if m := guardRe.FindStringSubmatch(guard); m != nil {
				dropped = m[1]
			}
			t.Logf("%s: one broadcast reached the server %d times; the switch's storm guard dropped %s looping frames", tc.name, copies, dropped)
			if looped := copies > 1; looped != tc.loop || copies == 0 {
				t.Fatalf("one broadcast reached the server %d times, want loop=%v", copies, tc.loop)
			}
		})
	}
}

var guardRe = regexp.MustCompile(`packets (\d+) bytes \d+ drop comment "storm guard"`)
