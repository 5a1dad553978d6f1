package sessions

import (
	"bufio"
	"context"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hagate/hagate/internal/nstest"
	"github.com/hagate/hagate/internal/seal"
	"github.com/hagate/hagate/internal/sessions/conntrack"
	"github.com/hagate/hagate/internal/sessions/session"
)

var _ ExpectBackend = (*conntrack.Kernel)(nil)

// ftpGatewayRuleset attaches the kernel's FTP helper to connections to port
// 21, as a gateway forwarding FTP does.
const ftpGatewayRuleset = `table inet hgftp {
	ct helper ftp-h { type "ftp" protocol tcp; l3proto inet; }
	chain ftp_forward { type filter hook forward priority filter; tcp dport 21 ct helper set "ftp-h"; }
}`

func nftApply(t *testing.T, ns *nstest.NS, ruleset string) {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns.Name, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft in %s: %v: %s", ns.Name, err, out)
	}
}

// openKernel opens the namespace's table with events for every entry, as
// the daemon does (workers 0: the default).
func openKernel(t testing.TB, ns *nstest.NS, workers int) *conntrack.Kernel {
	t.Helper()
	k, err := conntrack.Open(conntrack.Options{NetNSPath: ns.Path(), Workers: workers})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	if _, err := k.EventsForAll(); err != nil {
		t.Fatal(err)
	}
	return k
}

// nsExpectEngine starts an engine syncing expectations over the sync link
// address local, inside ns.
func nsExpectEngine(t *testing.T, ctx context.Context, ns *nstest.NS, id string, local netip.Addr, be Backend) *Engine {
	t.Helper()
	cfg := EngineConfig{
		NodeID: id, Group: 1, Keyring: testKeys(t), Mode: seal.Encrypt,
		ListenAddrs: []netip.AddrPort{netip.AddrPortFrom(local, DefaultPort)},
		Listen: func(addr string) (l net.Listener, err error) {
			err = ns.Do(func() error { l, err = net.Listen("tcp", addr); return err })
			return l, err
		},
		Dial: func(ctx context.Context, addr string) (c net.Conn, err error) {
			err = ns.Do(func() error {
				var d net.Dialer
				c, err = d.DialContext(ctx, "tcp", addr)
				return err
			})
			return c, err
		},
		Filter:      Filter{Connectionless: true, NAT: true},
		Expectation: true,
		Heartbeat:   100 * time.Millisecond, IdleTimeout: 2 * time.Second, IOTimeout: 2 * time.Second,
	}
	e, err := NewEngine(cfg, be)
	if err != nil {
		t.Fatal(err)
	}
	ectx, cancel := context.WithCancel(ctx)
	if err := e.Start(ectx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); e.Wait() })
	e.SetLocalAddrs([]netip.Addr{local})
	return e
}

// fakeFTPServer answers control connections on port 21 inside ns: a
// banner, then a PASV reply announcing 203.0.113.2 port 50000 (195*256+80).
// Each connection stays open until its client closes it.
func fakeFTPServer(t *testing.T, ns *nstest.NS) {
	t.Helper()
	var l net.Listener
	if err := ns.Do(func() (err error) { l, err = net.Listen("tcp", "203.0.113.2:21"); return err }); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(30 * time.Second))
				r := bufio.NewReader(c)
				c.Write([]byte("220 hagate test\r\n"))
				if _, err := r.ReadString('\n'); err != nil {
					return
				}
				c.Write([]byte("227 Entering Passive Mode (203,0,113,2,195,80).\r\n"))
				r.ReadString('\n') // until the client closes
			})
		}
	})
}

// ftpPASV opens a control connection from ns to the fake server and runs
// its PASV exchange; the connection stays open until the test ends.
func ftpPASV(t *testing.T, ns *nstest.NS) {
	t.Helper()
	var c net.Conn
	if err := ns.Do(func() (err error) {
		c, err = net.DialTimeout("tcp", "203.0.113.2:21", 5*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatalf("banner: %v", err)
	}
	if _, err := c.Write([]byte("PASV\r\n")); err != nil {
		t.Fatal(err)
	}
	if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "227 ") {
		t.Fatalf("PASV reply %q: %v", line, err)
	}
}

func dumpExpectMap(t *testing.T, k *conntrack.Kernel) map[session.ExpectKey]session.Expect {
	t.Helper()
	got := map[session.ExpectKey]session.Expect{}
	if err := k.DumpExpect(context.Background(), func(x session.Expect) error {
		got[x.ExpectKey] = x
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return got
}

// TestNamespacesFTPExpectation: a client opens an FTP control connection
// through gw1, whose FTP helper reads the server's PASV reply and creates an
// expectation for the data connection; gw1's engine syncs the control
// session (with its helper) and the expectation into gw2's kernel table, and
// removes it there when it ends on gw1. Then again with source NAT on gw1:
// the NAT helper's part of the expectation (the function that NATs the data
// connection like its master) is synced too.
func TestNamespacesFTPExpectation(t *testing.T) {
	start := time.Now()
	client, gw1, server, gw2 := nstest.New(t), nstest.New(t), nstest.New(t), nstest.New(t)
	nstest.VethNamed(t, "c", client, "192.0.2.2/24", gw1, "192.0.2.1/24")
	nstest.VethNamed(t, "s", gw1, "203.0.113.1/24", server, "203.0.113.2/24")
	nstest.VethNamed(t, "h", gw1, "198.51.100.1/24", gw2, "198.51.100.2/24")
	client.Run(t, "ip", "route", "add", "default", "via", "192.0.2.1")
	server.Run(t, "ip", "route", "add", "default", "via", "203.0.113.1")
	gw1.Run(t, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	nftApply(t, gw1, ftpGatewayRuleset)
	nftApply(t, gw2, ftpGatewayRuleset)
	k1, k2 := openKernel(t, gw1, 0), openKernel(t, gw2, 0)
	fakeFTPServer(t, server)
	t.Logf("topology ready after %s", time.Since(start)) // slow on a loaded host

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p1, p2 := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.2")
	e1 := nsExpectEngine(t, ctx, gw1, "gw1", p1, k1)
	e2 := nsExpectEngine(t, ctx, gw2, "gw2", p2, k2)
	if err := e2.BecomeSubordinate(ctx, "gw1"); err != nil {
		t.Fatal(err)
	}
	if err := e1.becomePrimaryMirrored(ctx); err != nil {
		t.Fatal(err)
	}
	e1.SetPeers([]netip.AddrPort{netip.AddrPortFrom(p2, DefaultPort)})

	key := session.ExpectKey{Family: session.FamilyIPv4, Proto: session.ProtoTCP, Tuple: session.Tuple{
		Src: session.Addr16(netip.MustParseAddr("192.0.2.2")), Dst: session.Addr16(netip.MustParseAddr("203.0.113.2")), DstPort: 50000}}
	waitKernelExpect := func(k *conntrack.Kernel, name string, present bool) session.Expect {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			x, ok := dumpExpectMap(t, k)[key]
			if ok == present {
				return x
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: expectation %s present=%v, want %v (gw1 %+v, gw2 %+v)", name, key, ok, present, e1.ExpectStats(), e2.ExpectStats())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for _, snat := range []bool{false, true} {
		t.Logf("snat=%v", snat)
		if snat {
			nftApply(t, gw1, `table ip hgnat {
	chain post { type nat hook postrouting priority srcnat; ip saddr 192.0.2.0/24 ip daddr 203.0.113.0/24 snat to 203.0.113.1; }
}`)
		}
		ftpPASV(t, client)
		x1 := waitKernelExpect(k1, "gw1 (the FTP helper)", true)
		t.Logf("gw1's helper created %s", x1)
		x2 := waitKernelExpect(k2, "gw2 (synced)", true)
		t.Logf("gw2 holds %s", x2)
		x2.Timeout = x1.Timeout
		if x2 != x1 {
			t.Errorf("gw2's copy differs:\n gw1 %+v\n gw2 %+v", x1, x2)
		}
		if snat && (!x1.NAT || x1.Fn.String() != "nat-follow-master") {
			t.Errorf("gw1's expectation under SNAT has no NAT part: %+v", x1)
		}
		var master session.Session
		if err := k2.Dump(ctx, func(s session.Session) error {
			if s.Key == x1.Master {
				master = s
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if master.Helper.String() != "ftp" {
			t.Errorf("gw2's copy of the control connection has helper %q, want ftp", master.Helper)
		}
		t.Logf("gw2 conntrack -L expect:\n%s", gw2.Run(t, "conntrack", "-L", "expect"))

		// The expectation ends on gw1 (as when the data connection
		// arrives): gw2's copy goes too.
		if err := k1.ApplyExpect(ctx, []session.ExpectChange{{Op: session.Delete, Expect: x1}}); err != nil {
			t.Fatal(err)
		}
		waitKernelExpect(k2, "gw2 after the end on gw1", false)
	}
	t.Logf("gw1 peers %+v; gw2 %+v", e1.Stats().Peers, e2.ExpectStats())
	// A reconnect on a loaded host resends the bulk: installs may repeat.
	if st := e2.ExpectStats(); st.Installed < 2 || len(st.Dropped) != 0 {
		t.Errorf("gw2's expectation stats %+v: want 2 or more installed, none dropped", st)
	}
}

// plug connects ns to the bridge br of the switch namespace sw through a
// veth named after n, with an address and a MAC address (the gateways share
// theirs, as members sharing a virtual MAC do). down leaves the port down.
func plug(t *testing.T, sw *nstest.NS, n string, ns *nstest.NS, addr, mac string, down bool) string {
	t.Helper()
	ifn := n + ns.Name[len(ns.Name)-5:]
	ifs := ifn + "p"
	if out, err := exec.Command("ip", "link", "add", ifn, "netns", ns.Name, "type", "veth", "peer", "name", ifs, "netns", sw.Name).CombinedOutput(); err != nil {
		t.Fatalf("veth: %v: %s", err, out)
	}
	sw.Run(t, "ip", "link", "set", ifs, "master", "br0", "up")
	ns.Run(t, "ip", "addr", "add", addr, "dev", ifn)
	if mac != "" {
		ns.Run(t, "ip", "link", "set", ifn, "address", mac)
	}
	if !down {
		ns.Run(t, "ip", "link", "set", ifn, "up")
	}
	return ifn
}

func bridgeNS(t *testing.T) *nstest.NS {
	sw := nstest.New(t)
	sw.Run(t, "ip", "link", "add", "br0", "type", "bridge")
	sw.Run(t, "ip", "link", "set", "br0", "up")
	return sw
}

// gatewayRuleset: the FTP helper, and a forwarding policy that lets only
// FTP control connections and what conntrack knows (established, or related
// through an expectation) through.
const gatewayRuleset = ftpGatewayRuleset + `
table inet hgfw {
	chain fw_policy { type filter hook forward priority filter + 10; policy drop;
		ct state established,related accept
		tcp dport 21 ct state new accept
	}
}`

// TestNamespacesFTPDataAfterFailover: gw1 forwards an FTP control
// connection and its PASV exchange; then gw1's links fail and gw2 takes
// over. The data connection, which gw2's policy admits only as RELATED,
// passes: gw2 holds the expectation gw1's helper created. A connection to a
// port no expectation announced is dropped.
func TestNamespacesFTPDataAfterFailover(t *testing.T) {
	start := time.Now()
	client, server, gw1, gw2 := nstest.New(t), nstest.New(t), nstest.New(t), nstest.New(t)
	swc, sws := bridgeNS(t), bridgeNS(t)
	plug(t, swc, "c", client, "192.0.2.2/24", "", false)
	plug(t, sws, "s", server, "203.0.113.2/24", "", false)
	gw1c := plug(t, swc, "c", gw1, "192.0.2.1/24", "02:00:5e:00:01:01", false)
	gw1s := plug(t, sws, "s", gw1, "203.0.113.1/24", "02:00:5e:00:02:01", false)
	gw2c := plug(t, swc, "c", gw2, "192.0.2.1/24", "02:00:5e:00:01:01", true)
	gw2s := plug(t, sws, "s", gw2, "203.0.113.1/24", "02:00:5e:00:02:01", true)
	nstest.VethNamed(t, "h", gw1, "198.51.100.1/24", gw2, "198.51.100.2/24")
	client.Run(t, "ip", "route", "add", "default", "via", "192.0.2.1")
	server.Run(t, "ip", "route", "add", "default", "via", "203.0.113.1")
	for _, gw := range []*nstest.NS{gw1, gw2} {
		gw.Run(t, "sysctl", "-qw", "net.ipv4.ip_forward=1")
		nftApply(t, gw, gatewayRuleset)
	}
	k1, k2 := openKernel(t, gw1, 0), openKernel(t, gw2, 0)
	fakeFTPServer(t, server)
	// The data ports: 50000, announced by the PASV reply, and 50001, not.
	for _, port := range []string{"50000", "50001"} {
		var l net.Listener
		if err := server.Do(func() (err error) { l, err = net.Listen("tcp", "203.0.113.2:"+port); return err }); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Write([]byte("data\n"))
				c.Close()
			}
		}()
	}
	t.Logf("topology ready after %s", time.Since(start)) // slow on a loaded host

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p1, p2 := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.2")
	e1 := nsExpectEngine(t, ctx, gw1, "gw1", p1, k1)
	e2 := nsExpectEngine(t, ctx, gw2, "gw2", p2, k2)
	if err := e2.BecomeSubordinate(ctx, "gw1"); err != nil {
		t.Fatal(err)
	}
	if err := e1.becomePrimaryMirrored(ctx); err != nil {
		t.Fatal(err)
	}
	e1.SetPeers([]netip.AddrPort{netip.AddrPortFrom(p2, DefaultPort)})

	ftpPASV(t, client)
	key := session.ExpectKey{Family: session.FamilyIPv4, Proto: session.ProtoTCP, Tuple: session.Tuple{
		Src: session.Addr16(netip.MustParseAddr("192.0.2.2")), Dst: session.Addr16(netip.MustParseAddr("203.0.113.2")), DstPort: 50000}}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, ok := dumpExpectMap(t, k2)[key]; ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("expectation not synced to gw2: gw1 %+v, gw2 %+v", e1.ExpectStats(), e2.ExpectStats())
		}
	}

	// Failover: gw1's links fail, gw2 takes the addresses.
	gw1.Run(t, "ip", "link", "set", gw1c, "down")
	gw1.Run(t, "ip", "link", "set", gw1s, "down")
	if err := e2.BecomePrimary(ctx); err != nil {
		t.Fatal(err)
	}
	gw2.Run(t, "ip", "link", "set", gw2c, "up")
	gw2.Run(t, "ip", "link", "set", gw2s, "up")

	dial := func(port string, timeout time.Duration) (string, error) {
		var c net.Conn
		err := client.Do(func() (err error) {
			c, err = net.DialTimeout("tcp", "203.0.113.2:"+port, timeout)
			return err
		})
		if err != nil {
			return "", err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(timeout))
		return bufio.NewReader(c).ReadString('\n')
	}
	// The links take a moment to come up: retry within a bound.
	var got string
	var err error
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); {
		if got, err = dial("50000", 2*time.Second); err == nil {
			break
		}
	}
	if err != nil || got != "data\n" {
		t.Fatalf("data connection through gw2 after failover: %q, %v", got, err)
	}
	var related bool
	if err := k2.Dump(ctx, func(s session.Session) error {
		if s.Orig.DstPort == 50000 && s.Status&session.StatusExpected != 0 {
			related = true
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !related {
		t.Error("gw2 holds no entry for the data connection marked EXPECTED")
	}
	// Control: a port no expectation announced is refused by the policy.
	if _, err := dial("50001", time.Second); err == nil {
		t.Error("connection to an unannounced port passed gw2's policy: the test proves nothing")
	}
	t.Logf("done after %s", time.Since(start))
}
