package harness

import (
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hagate/hagate/internal/daemon"
	"github.com/hagate/hagate/lab/netlab"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// setup builds hagate once per test binary, a lab with n gateways and the
// cluster's configuration, and starts the server's echo listener.
func setup(t *testing.T, n int, o Options, lo netlab.Options) *Cluster {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	if testing.Short() {
		t.Skip("namespace cluster tests are not short")
	}
	if _, err := exec.LookPath("socat"); err != nil {
		t.Skip("socat not installed")
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "hagate-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath, buildErr = Build(dir)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	// The scratch directory goes last, once the lab and every process
	// in it are gone (t.TempDir's would go before the lab, while a
	// process started in a namespace may still write there).
	dir, err := os.MkdirTemp("", "hagate-lab-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Logf("scratch directory: %v", err)
		}
	})
	lo.Gateways = n
	l := netlab.ForTest(t, lo)
	c, err := New(l, binPath, dir, n, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		if t.Failed() {
			for _, gw := range c.Gateways() {
				t.Logf("---- %s log ----\n%s", gw, c.Log(gw))
			}
		}
	})
	if _, err := l.Start(netlab.Server, nil, "socat", "TCP-LISTEN:7000,fork,reuseaddr", "EXEC:cat"); err != nil {
		t.Fatal(err)
	}
	return c
}

// echoOnce opens a new TCP connection from the client to the server through the
// cluster and checks the bytes come back.
func echoOnce(c *Cluster) error {
	out, err := c.Lab.Exec(netlab.Client, "sh", "-c", "echo through-the-cluster | socat -t1 -T3 - TCP:"+netlab.ServerAddr.Addr().String()+":7000,connect-timeout=3")
	if err != nil {
		return err
	}
	if !strings.Contains(out, "through-the-cluster") {
		return &echoError{out}
	}
	return nil
}

type echoError struct{ out string }

func (e *echoError) Error() string { return "echo came back as " + e.out }

// settledRoles waits until the notify hooks have recorded gw1 as primary
// and gw2 as subordinate, and returns what they recorded.
func settledRoles(t *testing.T, c *Cluster) string {
	t.Helper()
	if err := netlab.WaitFor(5*time.Second, 50*time.Millisecond, func() (bool, error) {
		return strings.Contains(c.Roles("gw1"), "primary") && strings.Contains(c.Roles("gw2"), "subordinate"), nil
	}); err != nil {
		t.Fatalf("notify hooks: gw1 %q gw2 %q", c.Roles("gw1"), c.Roles("gw2"))
	}
	return c.Roles("gw1") + c.Roles("gw2")
}

func mustHolder(t *testing.T, c *Cluster, within time.Duration, want string) string {
	t.Helper()
	got, err := c.WaitHolder(within, want)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestDeviceFailoverAndRejoin(t *testing.T) {
	c := setup(t, 3, Options{UptimeMargin: 3 * time.Second}, netlab.Options{})
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	mustHolder(t, c, 15*time.Second, "gw1")
	st, err := c.Status("gw2")
	if err != nil {
		t.Fatal(err)
	}
	if st.PrimaryID != "gw1" || st.Role != "subordinate" || len(st.Members) != 3 {
		t.Fatalf("gw2 status: primary %q role %q members %d", st.PrimaryID, st.Role, len(st.Members))
	}
	if err := echoOnce(c); err != nil {
		t.Fatalf("through gw1: %v", err)
	}

	// Power loss of the primary: heartbeat link first, then the rest.
	start := time.Now()
	if err := c.PowerOff("gw1"); err != nil {
		t.Fatal(err)
	}
	mustHolder(t, c, 10*time.Second, "gw2")
	t.Logf("takeover after power loss: %s", time.Since(start).Round(time.Millisecond))
	if err := echoOnce(c); err != nil {
		t.Fatalf("through gw2: %v", err)
	}
	if !strings.Contains(c.Roles("gw2"), "primary device") {
		t.Fatalf("notify on gw2 did not record the takeover: %q", c.Roles("gw2"))
	}

	// gw1 returns after longer than the uptime margin: it rejoins as a
	// subordinate despite its higher priority.
	time.Sleep(4 * time.Second)
	if err := c.PowerOn("gw1"); err != nil {
		t.Fatal(err)
	}
	if err := netlab.WaitFor(15*time.Second, 100*time.Millisecond, func() (bool, error) {
		st, err := c.Status("gw1")
		return err == nil && st.Role == "subordinate" && st.PrimaryID == "gw2", nil
	}); err != nil {
		t.Fatalf("gw1 did not rejoin as subordinate: %v", err)
	}
	// The crashed gw1 had left its addresses behind; its restart as a
	// subordinate removed them.
	time.Sleep(time.Second)
	if h := c.Holders(); len(h) != 1 || h[0] != "gw2" {
		t.Fatalf("holders after rejoin: %v", h)
	}
}

func TestLinkFailover(t *testing.T) {
	c := setup(t, 2, Options{}, netlab.Options{})
	c.StartAll()
	mustHolder(t, c, 15*time.Second, "gw1")
	if err := c.Lab.LinkDown("gw1", netlab.WAN); err != nil {
		t.Fatal(err)
	}
	mustHolder(t, c, 5*time.Second, "gw2")
	if !strings.Contains(c.Log("gw2"), "reason=link") {
		t.Fatalf("gw2 took over, but not for a link failure")
	}
	if err := echoOnce(c); err != nil {
		t.Fatalf("through gw2: %v", err)
	}
}

func TestOverridePreempts(t *testing.T) {
	c := setup(t, 2, Options{Override: true}, netlab.Options{})
	c.StartAll()
	mustHolder(t, c, 15*time.Second, "gw1")
	c.PowerOff("gw1")
	mustHolder(t, c, 10*time.Second, "gw2")
	c.PowerOn("gw1")
	mustHolder(t, c, 15*time.Second, "gw1")
}

func TestShutdownHandsOver(t *testing.T) {
	c := setup(t, 2, Options{Interval: 500 * time.Millisecond, LostThreshold: 10, Holddown: 5 * time.Second}, netlab.Options{})
	c.StartAll()
	mustHolder(t, c, 15*time.Second, "gw1")
	start := time.Now()
	if err := c.Stop("gw1"); err != nil {
		t.Fatal(err)
	}
	// The dead interval is 5 s; a handover is announced, so it must not
	// take anywhere near that.
	mustHolder(t, c, 2500*time.Millisecond, "gw2")
	t.Logf("handover on SIGTERM: %s", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(c.Log("gw2"), "shut down") {
		t.Fatal("gw2 log does not say the primary shut down")
	}
}

func TestFailoverCommand(t *testing.T) {
	c := setup(t, 2, Options{}, netlab.Options{})
	c.StartAll()
	mustHolder(t, c, 15*time.Second, "gw1")
	out, err := exec.Command(c.Bin, "failover", "--config", c.ConfigPath("gw1")).CombinedOutput()
	if err != nil {
		t.Fatalf("hagate failover: %v: %s", err, out)
	}
	mustHolder(t, c, 5*time.Second, "gw2")
	out, err = exec.Command(c.Bin, "status", "--config", c.ConfigPath("gw1")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "failover set") {
		t.Fatalf("status after failover: %v\n%s", err, out)
	}
	t.Logf("hagate status on gw1:\n%s", out)
	hist, err := exec.Command(c.Bin, "history", "--config", c.ConfigPath("gw2")).CombinedOutput()
	if err != nil || !strings.Contains(string(hist), "became primary") {
		t.Fatalf("history: %v\n%s", err, hist)
	}
}

func TestWrongKeyNeverJoins(t *testing.T) {
	c := setup(t, 3, Options{Keys: map[string]string{"gw3": KeyFor("a key from another cluster")}}, netlab.Options{})
	c.Start("gw1")
	c.Start("gw2")
	mustHolder(t, c, 15*time.Second, "gw1")
	c.Start("gw3")
	time.Sleep(3 * time.Second)
	for _, gw := range []string{"gw1", "gw2"} {
		st, err := c.Status(gw)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range st.Members {
			if m.NodeID == "gw3" {
				t.Fatalf("%s lists gw3 as a member", gw)
			}
		}
	}
	st, err := c.Status("gw3")
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Members) != 1 {
		t.Fatalf("gw3 sees %d members", len(st.Members))
	}
}

// A key rollover, as docs/design.md describes it, without a failover.
func TestKeyRolloverWithoutDowntime(t *testing.T) {
	c := setup(t, 2, Options{}, netlab.Options{})
	c.StartAll()
	mustHolder(t, c, 15*time.Second, "gw1")
	before := settledRoles(t, c)
	newKey := KeyFor("the cluster key of next year")
	for _, keys := range [][]string{{Key, newKey}, {newKey, Key}, {newKey}} {
		for _, gw := range c.Gateways() {
			if err := c.WriteKey(gw, keys...); err != nil {
				t.Fatal(err)
			}
			if err := c.Reload(gw); err != nil {
				t.Fatal(err)
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
	time.Sleep(time.Second)
	if after := c.Roles("gw1") + c.Roles("gw2"); after != before {
		t.Fatalf("role changes during the rollover:\n%s", after)
	}
	st, err := c.Status("gw2")
	if err != nil || st.PrimaryID != "gw1" || !st.Members[1].Alive {
		t.Fatalf("gw2 after rollover: %v %+v", err, st.Members)
	}
	if !strings.Contains(c.Log("gw2"), "key file reloaded") {
		t.Fatal("gw2 did not log the reload")
	}
	// The old key alone no longer joins: gw2 goes back to it and is cut off.
	c.WriteKey("gw2", Key)
	c.Reload("gw2")
	if err := netlab.WaitFor(5*time.Second, 50*time.Millisecond, func() (bool, error) {
		st, err := c.Status("gw1")
		return err == nil && len(st.Members) == 2 && !st.Members[1].Alive, nil
	}); err != nil {
		t.Fatalf("gw1 still hears gw2 with the retired key: %v", err)
	}
}

// FGCP's fast heartbeats: 50 ms x 3 on an idle machine, no false failover.
func TestFastHeartbeatsNoFalseFailover(t *testing.T) {
	c := setup(t, 2, Options{Interval: 50 * time.Millisecond, LostThreshold: 3, Holddown: time.Second}, netlab.Options{})
	c.StartAll()
	mustHolder(t, c, 10*time.Second, "gw1")
	before := settledRoles(t, c)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if h := c.Holders(); len(h) != 1 || h[0] != "gw1" {
			t.Fatalf("holders %v", h)
		}
		time.Sleep(25 * time.Millisecond)
	}
	if after := c.Roles("gw1") + c.Roles("gw2"); after != before {
		t.Fatalf("role changes at 50ms x 3:\n%s", after)
	}
	// And the detection is that fast: power loss of gw1.
	start := time.Now()
	c.PowerOff("gw1")
	mustHolder(t, c, 5*time.Second, "gw2")
	t.Logf("takeover at 50ms x 3: %s", time.Since(start).Round(time.Millisecond))
}

// IPv6 virtual IPs move with the IPv4 ones, usable at once (no DAD), and the
// client reaches the server over IPv6 through the new primary.
func TestIPv6Failover(t *testing.T) {
	c := setup(t, 2, Options{IPv6: true}, netlab.Options{IPv6: true})
	if _, err := c.Lab.Start(netlab.Server, nil, "socat", "TCP6-LISTEN:7006,fork,reuseaddr", "EXEC:cat"); err != nil {
		t.Fatal(err)
	}
	echo6 := func() error {
		out, err := c.Lab.Exec(netlab.Client, "sh", "-c", "echo over-ipv6 | socat -t1 -T3 - TCP6:["+netlab.ServerAddr6.Addr().String()+"]:7006,connect-timeout=3")
		if err != nil {
			return err
		}
		if !strings.Contains(out, "over-ipv6") {
			return &echoError{out}
		}
		return nil
	}
	c.StartAll()
	mustHolder(t, c, 15*time.Second, "gw1")
	if !c.Lab.HasAddr("gw1", netlab.LAN, netlab.LANVIP6.String()) || c.Lab.HasAddr("gw2", netlab.LAN, netlab.LANVIP6.String()) {
		t.Fatal("IPv6 virtual IP not on the primary alone")
	}
	if err := netlab.WaitFor(5*time.Second, 200*time.Millisecond, func() (bool, error) { return echo6() == nil, nil }); err != nil {
		t.Fatalf("IPv6 through gw1: %v", echo6())
	}
	c.PowerOff("gw1")
	mustHolder(t, c, 10*time.Second, "gw2")
	if !c.Lab.HasAddr("gw2", netlab.WAN, netlab.WANVIP6.String()) {
		t.Fatal("gw2 lacks the IPv6 virtual IP")
	}
	// The unsolicited neighbour advertisement moves the client's neighbour
	// entry for the virtual IP to gw2 without waiting for it to go stale.
	if err := netlab.WaitFor(5*time.Second, 200*time.Millisecond, func() (bool, error) { return echo6() == nil, nil }); err != nil {
		t.Fatalf("IPv6 through gw2: %v", echo6())
	}
}

// With virtual_mac the primary's virtual IP interfaces take the FGCP-style
// MAC, the client's ARP entry for the virtual IP keeps that MAC across a
// failover, and a subordinate keeps its own MAC.
func TestVirtualMAC(t *testing.T) {
	c := setup(t, 2, Options{VirtualMAC: true}, netlab.Options{})
	mac := func(node, ifname string) string {
		out, _ := c.Lab.Exec(node, "cat", "/sys/class/net/"+ifname+"/address")
		return strings.TrimSpace(out)
	}
	own2 := mac("gw2", netlab.LAN)
	c.StartAll()
	mustHolder(t, c, 15*time.Second, "gw1")
	const vmac = "00:09:0f:09:07:00" // group 7, first interface (lan)
	if got := mac("gw1", netlab.LAN); got != vmac {
		t.Fatalf("gw1 lan MAC %s, want %s", got, vmac)
	}
	if got := mac("gw2", netlab.LAN); got != own2 {
		t.Fatalf("subordinate gw2 changed its MAC to %s", got)
	}
	if err := echoOnce(c); err != nil {
		t.Fatal(err)
	}
	c.PowerOff("gw1")
	mustHolder(t, c, 10*time.Second, "gw2")
	if got := mac("gw2", netlab.LAN); got != vmac {
		t.Fatalf("gw2 lan MAC %s, want %s", got, vmac)
	}
	if err := echoOnce(c); err != nil {
		t.Fatal(err)
	}
	neigh, _ := c.Lab.Exec(netlab.Client, "ip", "neigh", "show", netlab.LANVIP.Addr().String())
	if !strings.Contains(neigh, vmac) {
		t.Fatalf("client's neighbour entry for the virtual IP: %s", neigh)
	}
	// Stepping down restores the interface's own MAC.
	c.Stop("gw2")
	if got := mac("gw2", netlab.LAN); got != own2 {
		t.Fatalf("gw2 lan MAC after stop %s, want its own %s", got, own2)
	}
}

// Remote link failover (FGCP's ping servers): the primary's ping server
// stops answering it, the other member takes over; a flapping target does
// not bounce the cluster back, and once the target answers steadily again
// the former primary stays subordinate: the remote-link failure reset its
// HA uptime (FGCP's rule for a member's own link failures), and override is
// off. The uptime margin is short so that the reset decides.
func TestPingServerFailover(t *testing.T) {
	extra := "ping_servers:\n  - interface: wan\n    target: " + netlab.ServerAddr.Addr().String() +
		"\n    interval: 100ms\n    failures: 3\nping_flip_timeout: 3s\n"
	c := setup(t, 2, Options{Extra: extra, UptimeMargin: 2 * time.Second}, netlab.Options{})
	c.StartAll()
	mustHolder(t, c, 15*time.Second, "gw1")
	gw1wan, _ := netlab.GatewayAddr(1, netlab.WAN)
	block := func(on bool) {
		t.Helper()
		c.Lab.Exec(netlab.Server, "nft", "delete", "table", "inet", "pingblock")
		if on {
			rules := "table inet pingblock { chain in { type filter hook input priority 0; ip saddr " +
				gw1wan.Addr().String() + " icmp type echo-request drop; }; }"
			if out, err := c.Lab.Exec(netlab.Server, "nft", rules); err != nil {
				t.Fatalf("nft: %v %s", err, out)
			}
		}
	}
	// Wait until both members count their ping server.
	if err := netlab.WaitFor(10*time.Second, 100*time.Millisecond, func() (bool, error) {
		st, err := c.Status("gw2")
		return err == nil && len(st.Members) == 2 && st.Members[0].PingUp == 1 && st.Members[1].PingUp == 1, nil
	}); err != nil {
		st, err := c.Status("gw2")
		t.Fatalf("ping servers never counted as up: %v %+v", err, st.Members)
	}
	block(true)
	mustHolder(t, c, 5*time.Second, "gw2")
	if !strings.Contains(c.Log("gw2"), "ping servers") {
		t.Fatal("gw2's takeover does not name the ping servers")
	}
	// The target flaps for 2 s: gw1 must not take the role back.
	for i := 0; i < 10; i++ {
		block(i%2 == 1)
		time.Sleep(200 * time.Millisecond)
		if h := c.Holders(); len(h) != 1 || h[0] != "gw2" {
			t.Fatalf("flapping ping server bounced the cluster: holders %v", h)
		}
	}
	block(false)
	// Answering steadily again (past the 3 s flip timeout), gw1 counts its
	// ping server again but stays subordinate: gw2's uptime now leads by
	// more than the margin.
	if err := netlab.WaitFor(8*time.Second, 100*time.Millisecond, func() (bool, error) {
		st, err := c.Status("gw1")
		return err == nil && len(st.Members) == 2 && st.Members[0].PingUp == 1, nil
	}); err != nil {
		t.Fatalf("gw1's ping server never counted again: %v", err)
	}
	time.Sleep(3 * time.Second)
	if h := c.Holders(); len(h) != 1 || h[0] != "gw2" {
		t.Fatalf("gw1 took the role back after its remote link recovered: holders %v", h)
	}
	out, _ := exec.Command(c.Bin, "status", "--config", c.ConfigPath("gw1")).CombinedOutput()
	if !strings.Contains(string(out), "PING SERVER") {
		t.Fatalf("status does not show the ping server:\n%s", out)
	}
}

// Split brain: the heartbeat link of the primary is cut while its data
// links work. FGCP's behaviour (the default): both sides have a primary,
// and status says so. With quorum, the member cut off from the majority
// steps down and the majority keeps one primary.
func TestSplitBrain(t *testing.T) {
	t.Run("fgcp", func(t *testing.T) {
		c := setup(t, 3, Options{}, netlab.Options{})
		c.StartAll()
		mustHolder(t, c, 15*time.Second, "gw1")
		c.Lab.Cut("gw1", netlab.HA)
		if err := netlab.WaitFor(5*time.Second, 50*time.Millisecond, func() (bool, error) {
			h := c.Holders()
			return len(h) == 2, nil
		}); err != nil {
			t.Fatalf("holders %v, want gw1 and gw2", c.Holders())
		}
		var st daemon.Status
		if err := netlab.WaitFor(3*time.Second, 50*time.Millisecond, func() (bool, error) {
			st, _ = c.Status("gw1")
			return st.SplitBrain && strings.Contains(strings.Join(st.Warnings, "\n"), "split brain"), nil
		}); err != nil {
			t.Fatalf("gw1 status does not warn of the split: %v", st.Warnings)
		}
		c.Lab.Heal("gw1", netlab.HA)
		mustHolder(t, c, 5*time.Second, "")
	})
	t.Run("quorum", func(t *testing.T) {
		c := setup(t, 3, Options{Extra: "split_brain:\n  quorum: true\n"}, netlab.Options{})
		c.StartAll()
		mustHolder(t, c, 15*time.Second, "gw1")
		c.Lab.Cut("gw1", netlab.HA)
		mustHolder(t, c, 5*time.Second, "gw2")
		time.Sleep(time.Second)
		mustHolder(t, c, time.Second, "gw2")
		if !strings.Contains(c.Log("gw1"), "no quorum") {
			t.Fatal("gw1 does not log the lost quorum")
		}
	})
}
