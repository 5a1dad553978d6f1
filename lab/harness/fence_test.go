package harness

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hagate/hagate/lab/netlab"
)

const fenceOff = "fence:\n  enabled: false\n"

// Only the primary forwards: a client whose ARP entry for the LAN virtual
// IP points at the subordinate's own MAC (a static or stale entry) sends
// its packets there; the fenced subordinate drops them, so the server never
// sees them. With fencing off the subordinate forwards them (the failing
// counterpart). No SNAT, so the server can count the client's packets by
// their source.
func TestSubordinateDoesNotForwardStray(t *testing.T) {
	t.Parallel() // a lab of its own; nothing timed tightly
	for _, tc := range []struct {
		name    string
		extra   string
		forward bool
	}{{"fenced", "", false}, {"fence-off", fenceOff, true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := setup(t, 2, Options{Extra: tc.extra}, netlab.Options{NoNAT: true})
			c.StartAll()
			mustHolder(t, c, 15*time.Second, "gw1")
			if _, err := c.WaitHolder(5*time.Second, "gw1"); err != nil {
				t.Fatal(err)
			}
			if st, err := c.Status("gw2"); err != nil || st.Fenced == tc.forward {
				t.Fatalf("gw2 status: fenced=%v (err %v), want %v", st.Fenced, err, !tc.forward)
			}
			probe := "add table inet probe; add chain inet probe in { type filter hook input priority 0; }; add rule inet probe in ip saddr " +
				netlab.ClientAddr.Addr().String() + " icmp type echo-request counter"
			if _, err := c.Lab.Exec(netlab.Server, "nft", probe); err != nil {
				t.Fatal(err)
			}
			mac, err := c.Lab.Exec("gw2", "cat", "/sys/class/net/"+netlab.LAN+"/address")
			if err != nil {
				t.Fatal(err)
			}
			vip := netlab.LANVIP.Addr().String()
			if _, err := c.Lab.Exec(netlab.Client, "ip", "neigh", "replace", vip, "lladdr", strings.TrimSpace(mac), "dev", netlab.Eth0, "nud", "permanent"); err != nil {
				t.Fatal(err)
			}
			// The replies (if any) come back through gw1, which has not
			// seen the requests and drops them as invalid: count at the
			// server, not at the client.
			c.Lab.Exec(netlab.Client, "ping", "-c3", "-i0.2", "-W1", "-q", netlab.ServerAddr.Addr().String())
			got := serverCount(t, c)
			if forwarded := got > 0; forwarded != tc.forward {
				t.Fatalf("the server saw %d of the 3 requests sent through the subordinate, want forwarded=%v", got, tc.forward)
			}
			// The primary's path is untouched by the subordinate's fence.
			if _, err := c.Lab.Exec(netlab.Client, "ip", "neigh", "del", vip, "dev", netlab.Eth0); err != nil {
				t.Fatal(err)
			}
			if err := echoOnce(c); err != nil {
				t.Fatalf("through the primary: %v", err)
			}
		})
	}
}

var (
	packetsRe = regexp.MustCompile(`packets (\d+)`)
	loweredRe = regexp.MustCompile(`msg="fence lowered: forwarding" took=(\S+)`)
)

// serverCount reads the server's probe counter.
func serverCount(t *testing.T, c *Cluster) int {
	t.Helper()
	out, err := c.Lab.Exec(netlab.Server, "nft", "list", "chain", "inet", "probe", "in")
	if err != nil {
		t.Fatal(err)
	}
	m := packetsRe.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no counter in:\n%s", out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// The fence does not lengthen a failover: the power-loss pickup test with
// fencing on and off; the session survives both and the longest gap of
// each is logged (measured, not asserted: the machine is shared).
func TestFenceFailoverGap(t *testing.T) {
	t.Parallel() // a lab of its own; nothing timed tightly
	for _, tc := range []struct{ name, extra string }{{"fenced", pickupOn}, {"fence-off", pickupOn + fenceOff}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := setup(t, 2, Options{Extra: tc.extra}, netlab.Options{})
			c.StartAll()
			mustHolder(t, c, 15*time.Second, "gw1")
			s := startSession(t, c)
			if err := c.PowerOff("gw1"); err != nil {
				t.Fatal(err)
			}
			mustHolder(t, c, 10*time.Second, "gw2")
			time.Sleep(3 * time.Second)
			r, err := s.Stop()
			if err != nil {
				t.Fatal(err)
			}
			// What lowering the fence took on the new primary, between its
			// sessions being usable and its addresses claimed.
			var lowered []string
			for _, m := range loweredRe.FindAllStringSubmatch(c.Log("gw2"), -1) {
				lowered = append(lowered, m[1])
			}
			t.Logf("%s: longest gap %s (%s); gw2's fence lowered in %v", tc.name, r.MaxGap.Round(time.Millisecond), r, lowered)
			if !r.Survived {
				t.Fatalf("session died: %s", r)
			}
		})
	}
}
