package harness

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hagate/hagate/lab/echo"
	"github.com/hagate/hagate/lab/netlab"
)

// Session pickup for connectionless sessions: UDP synced too.
const pickupUDP = "session_pickup:\n  enabled: true\n  connectionless: true\n"

// Session pickup for TCP only (the default), written out.
const pickupTCPOnly = "session_pickup:\n  enabled: true\n  connectionless: false\n"

// udpFlowEntry returns gw's conntrack entry for the echo flow from the
// client's address local ("192.0.2.100:40377"), or "" if it has none.
func udpFlowEntry(t *testing.T, c *Cluster, gw, local string) string {
	t.Helper()
	ap, err := netip.ParseAddrPort(local)
	if err != nil {
		t.Fatalf("client address %q: %v", local, err)
	}
	out, _ := c.Lab.Exec(gw, "conntrack", "-L", "-p", "udp", "--orig-src", ap.Addr().String(),
		"--sport", strconv.Itoa(int(ap.Port())), "--dport", strconv.Itoa(EchoPort))
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "udp") {
			lines = append(lines, strings.TrimSpace(l))
		}
	}
	return strings.Join(lines, "\n")
}

// udpPowerLoss runs the UDP test once: a two-gateway cluster with
// extra in its configuration, a UDP flow from the client through the
// virtual IP (a datagram every 50 ms, source-NATed), then a power loss of
// the primary gw1, and 2 s of the flow through gw2. It returns the
// client's final report, and whether gw2 held the flow's conntrack entry
// before the fault.
//
// The gateways' SNAT picks a random source port for every new mapping
// (netlab.Options.SNATRandomPorts). With the lab's default, which keeps the
// client's port when it is free, a new primary without the flow's entry
// would map the flow to the very port the old one used, and the flow
// would look unbroken without session pickup: the test could not fail.
// Real gateways often give a new mapping another port (random or pooled
// source ports, or the client's port already taken), and then a UDP
// service that keeps per-peer state (the echo server here) sees a new
// peer: the flow broke. With random ports the flow keeps its mapping
// exactly when the new primary holds its synced entry, which is what
// session pickup for connectionless sessions promises. A stateful forward
// rule (the server's datagrams accepted only for established flows) would
// not do: the client speaks first, so the new primary makes a fresh entry
// at the flow's next datagram and accepts the replies to it; only the
// port mapping tells the old flow from a new one.
func udpPowerLoss(t *testing.T, extra string) (r echo.Report, synced bool) {
	t.Helper()
	c := setup(t, 2, Options{Extra: extra}, netlab.Options{SNATRandomPorts: true})
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	mustHolder(t, c, 15*time.Second, "gw1")
	if err := c.StartEchoServer(); err != nil {
		t.Fatal(err)
	}
	s, err := c.OpenUDPSession(50*time.Millisecond, 5*time.Second)
	if err != nil {
		t.Fatalf("UDP flow never started: %v", err)
	}
	rolesAtOpen := c.Roles("gw2")
	// Give the primary time to sync the flow, and record what each
	// gateway holds of it.
	time.Sleep(time.Second)
	p, err := s.Progress()
	if err != nil {
		t.Fatal(err)
	}
	entry1, entry2 := udpFlowEntry(t, c, "gw1", p.Local), udpFlowEntry(t, c, "gw2", p.Local)
	t.Logf("gw1's entry for the flow: %s", entry1)
	t.Logf("gw2's entry for the flow before the fault: %s", entry2)
	if entry1 == "" {
		t.Fatal("gw1 has no conntrack entry for the flow it forwards")
	}
	// The test is about the failover it makes: a role change of the
	// flow's lifetime before it (the subordinate missing heartbeats on an
	// overloaded machine) breaks its premise, and is worth telling apart
	// from a flow that session pickup lost.
	if roles := c.Roles("gw2"); roles != rolesAtOpen {
		t.Fatalf("gw2 changed roles after the flow opened, before the fault (a false failover); its role changes:\n%s", roles)
	}
	if err := c.PowerOff("gw1"); err != nil {
		t.Fatal(err)
	}
	mustHolder(t, c, 10*time.Second, "gw2")
	time.Sleep(2 * time.Second)
	r, err = s.Stop()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("gw2's entry for the flow after the fault: %s", udpFlowEntry(t, c, "gw2", p.Local))
	t.Logf("echo server:\n%s", c.EchoServerLog())
	t.Logf("flow: %s", r)
	return r, entry2 != ""
}

// The test: a UDP flow through the virtual IP with SNAT survives a
// power loss of the primary when session pickup syncs connectionless
// sessions: the new primary holds the flow's entry, keeps its source port
// mapping, and the server goes on echoing; datagrams are lost only while
// no gateway forwarded (one run of consecutive datagrams, none after).
func TestUDPSessionSurvivesPowerLoss(t *testing.T) {
	t.Parallel() // a lab of its own; nothing timed tightly
	r, synced := udpPowerLoss(t, pickupUDP)
	if !synced {
		t.Error("gw2 did not hold the flow's conntrack entry before the fault")
	}
	if !r.Survived {
		t.Fatalf("UDP flow did not survive the failover: %s %v", r, r.Errors)
	}
	t.Logf("largest gap %s; %d datagrams lost, in one run", r.MaxGap.Round(time.Millisecond), r.Lost)
}

// The same test without the synced entry must show the flow breaking,
// proof that the test can fail: with session pickup off, and with it on
// for TCP only (connectionless: false), the new primary makes a new entry
// with another source port, and the server reports the flow moved.
func TestUDPSessionBreaksWithoutPickup(t *testing.T) {
	t.Parallel() // a lab of its own; nothing timed tightly
	for _, tc := range []struct{ name, extra string }{
		{"pickup-off", pickupOff},
		{"tcp-only", pickupTCPOnly},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, synced := udpPowerLoss(t, tc.extra)
			if synced {
				t.Error("gw2 held the flow's entry although UDP is not synced")
			}
			if r.Survived {
				t.Fatalf("UDP flow survived without its synced entry: %s", r)
			}
			if !strings.Contains(strings.Join(r.Errors, "; "), "another source address") {
				t.Fatalf("the flow failed, but not because the server saw it from a new source port: %s %v", r, r.Errors)
			}
		})
	}
}
