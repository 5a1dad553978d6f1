package netlab

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hagate/hagate/internal/nstest"
)

// listenPort is where the server's test listener answers each connection
// with the source address it saw.
const listenPort = "7000"

// startEcho starts socat listeners on the server that write the peer's
// address back and close, and stops them when the test ends.
func startEcho(t *testing.T, l *Lab, v6 bool) {
	t.Helper()
	if _, err := exec.LookPath("socat"); err != nil {
		t.Skip("socat not installed")
	}
	log, err := os.Create(filepath.Join(t.TempDir(), "server.log"))
	if err != nil {
		t.Fatal(err)
	}
	listeners := [][]string{{"socat", "TCP4-LISTEN:" + listenPort + ",fork,reuseaddr", "SYSTEM:echo $SOCAT_PEERADDR"}}
	if v6 {
		listeners = append(listeners, []string{"socat", "TCP6-LISTEN:" + listenPort + ",fork,reuseaddr,ipv6only=1", "SYSTEM:echo $SOCAT_PEERADDR"})
	}
	for _, args := range listeners {
		cmd, err := l.Start(Server, log, args...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
	}
}

// dial connects from the client to the server's echo listener at host (an
// address, IPv6 in brackets) and returns the source address the server saw.
func dial(l *Lab, host string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := l.ExecContext(ctx, Client, "socat", "-u", "TCP:"+host+":"+listenPort+",connect-timeout=1", "-")
	return strings.Trim(strings.TrimSpace(out), "[]"), err
}

// waitDial waits until a connection to host gets through and the server
// sees want as its source.
func waitDial(t *testing.T, l *Lab, host, want string) {
	t.Helper()
	var got string
	var last error
	err := WaitFor(8*time.Second, 100*time.Millisecond, func() (bool, error) {
		got, last = dial(l, host)
		if last != nil {
			return false, nil
		}
		a, err := netip.ParseAddr(got)
		if err != nil {
			return false, fmt.Errorf("server saw unparsable source %q: %w", got, err)
		}
		return a == netip.MustParseAddr(want), nil
	})
	if err != nil {
		t.Fatalf("connect to %s: server saw %q, want %q (last error %v): %v", host, got, want, last, err)
	}
}

// mustFailDial checks that a connection attempt to host does not get
// through.
func mustFailDial(t *testing.T, l *Lab, host string) {
	t.Helper()
	if got, err := dial(l, host); err == nil {
		t.Fatalf("connect to %s got through (server saw %q), want it to fail", host, got)
	}
}

func mustExec(t *testing.T, l *Lab, node string, args ...string) {
	t.Helper()
	if _, err := l.Exec(node, args...); err != nil {
		t.Fatal(err)
	}
}

func ping(l *Lab, node, addr string) error {
	_, err := l.Exec(node, "ping", "-n", "-q", "-c", "1", "-W", "1", addr)
	return err
}

func waitPing(t *testing.T, l *Lab, node, addr string) {
	t.Helper()
	var last error
	err := WaitFor(5*time.Second, 100*time.Millisecond, func() (bool, error) {
		last = ping(l, node, addr)
		return last == nil, nil
	})
	if err != nil {
		t.Fatalf("ping %s from %s: %v (last: %v)", addr, node, err, last)
	}
}

func labNamespaces(t *testing.T, id string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(nstest.Dir, id+"-*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestLab(t *testing.T) {
	l := ForTest(t, Options{IPv6: true, HA2: true})
	startEcho(t, l, true)

	if got, want := len(labNamespaces(t, l.ID())), 3+DefaultGateways; got != want {
		t.Fatalf("lab has %d namespaces in %s, want %d", got, nstest.Dir, want)
	}
	for k, gw := range l.Gateways() {
		for _, link := range []string{LAN, WAN, HA, HA2} {
			p, _ := GatewayAddr(k+1, link)
			if !l.HasAddr(gw, link, p.String()) {
				t.Errorf("%s %s lacks %s", gw, link, p)
			}
		}
		p6, _ := GatewayAddr6(k+1, LAN)
		if !l.HasAddr(gw, LAN, p6.String()) {
			t.Errorf("%s lan lacks %s", gw, p6)
		}
	}
	if l.HasAddr("gw1", LAN, LANVIP.String()) {
		t.Fatal("gw1 holds the LAN virtual IP before anyone added it")
	}

	// Make gw1 the primary by hand.
	for _, a := range []struct{ link, addr string }{
		{LAN, LANVIP.String()}, {WAN, WANVIP.String()},
		{LAN, LANVIP6.String()}, {WAN, WANVIP6.String()},
	} {
		mustExec(t, l, "gw1", "ip", "addr", "add", a.addr, "dev", a.link)
	}
	if !l.HasAddr("gw1", LAN, "192.0.2.1") {
		t.Fatal("HasAddr does not see the LAN VIP without a length")
	}

	server4, server6 := ServerAddr.Addr().String(), "["+ServerAddr6.Addr().String()+"]"
	t.Run("snat", func(t *testing.T) {
		waitDial(t, l, server4, WANVIP.Addr().String())
	})
	t.Run("ipv6 routed", func(t *testing.T) {
		waitDial(t, l, server6, ClientAddr6.Addr().String())
	})
	t.Run("cut and heal", func(t *testing.T) {
		if err := l.Cut("gw1", LAN); err != nil {
			t.Fatal(err)
		}
		mustFailDial(t, l, server4)
		if s, err := l.Link("gw1", LAN); err != nil || !s.Carrier || !s.Up {
			t.Errorf("gw1 lan during a silent cut = %+v, %v; want up with carrier", s, err)
		}
		if err := l.Heal("gw1", LAN); err != nil {
			t.Fatal(err)
		}
		waitDial(t, l, server4, WANVIP.Addr().String())
	})
	t.Run("loss", func(t *testing.T) {
		if err := l.Loss("gw1", WAN, 100); err != nil {
			t.Fatal(err)
		}
		mustFailDial(t, l, server4)
		if err := l.Loss("gw1", WAN, 0); err != nil {
			t.Fatal(err)
		}
		waitDial(t, l, server4, WANVIP.Addr().String())
	})
	t.Run("link down and up", func(t *testing.T) {
		if err := l.LinkDown("gw1", WAN); err != nil {
			t.Fatal(err)
		}
		var s LinkState
		err := WaitFor(2*time.Second, 20*time.Millisecond, func() (bool, error) {
			var err error
			s, err = l.Link("gw1", WAN)
			return !s.Carrier && strings.Contains(strings.Join(s.Flags, ","), "NO-CARRIER"), err
		})
		if err != nil {
			t.Fatalf("gw1 wan after LinkDown = %+v: %v", s, err)
		}
		if !s.Up || s.OperState != "DOWN" {
			t.Errorf("gw1 wan after LinkDown = %+v, want admin up, operstate DOWN", s)
		}
		if err := l.LinkUp("gw1", WAN); err != nil {
			t.Fatal(err)
		}
		err = WaitFor(2*time.Second, 20*time.Millisecond, func() (bool, error) {
			var err error
			s, err = l.Link("gw1", WAN)
			return s.Carrier, err
		})
		if err != nil {
			t.Fatalf("gw1 wan after LinkUp = %+v: %v", s, err)
		}
		waitDial(t, l, server4, WANVIP.Addr().String())
	})
	t.Run("power off and on", func(t *testing.T) {
		gw2ha, _ := GatewayAddr(2, HA)
		gw2ha2, _ := GatewayAddr(2, HA2)
		gw3ha, _ := GatewayAddr(3, HA)
		waitPing(t, l, "gw1", gw2ha.Addr().String())
		waitPing(t, l, "gw1", gw2ha2.Addr().String())
		if err := l.PowerOff("gw2"); err != nil {
			t.Fatal(err)
		}
		if err := ping(l, "gw1", gw2ha.Addr().String()); err == nil {
			t.Error("gw1 reaches gw2 on ha after gw2 was powered off")
		}
		if err := ping(l, "gw1", gw2ha2.Addr().String()); err == nil {
			t.Error("gw1 reaches gw2 on ha2 after gw2 was powered off")
		}
		waitPing(t, l, "gw1", gw3ha.Addr().String()) // the others still talk
		if err := l.PowerOn("gw2"); err != nil {
			t.Fatal(err)
		}
		waitPing(t, l, "gw1", gw2ha.Addr().String())
	})
	t.Run("bad names", func(t *testing.T) {
		if err := l.Cut("gw9", LAN); err == nil {
			t.Error("Cut of a gateway the lab lacks succeeded")
		}
		if err := l.LinkDown("gw1", "eth0"); err == nil {
			t.Error("LinkDown of a link gateways lack succeeded")
		}
		if err := l.Loss("gw1", LAN, 101); err == nil {
			t.Error("Loss of 101% succeeded")
		}
	})

	if err := l.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if left := labNamespaces(t, l.ID()); len(left) > 0 {
		t.Errorf("namespaces left after Close: %v", left)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	if err := l.Cut("gw1", LAN); !errors.Is(err, ErrClosed) {
		t.Errorf("Cut after Close = %v, want ErrClosed", err)
	}
}

// TestLabNoNAT checks a two-gateway lab without SNAT: the server sees the
// client's own address.
func TestLabNoNAT(t *testing.T) {
	l := ForTest(t, Options{Gateways: 2, NoNAT: true})
	startEcho(t, l, false)
	if got := len(labNamespaces(t, l.ID())); got != 5 {
		t.Fatalf("lab has %d namespaces, want 5", got)
	}
	if l.HasAddr("gw2", HA2, "198.51.100.130/25") {
		t.Error("gw2 has ha2 without Options.HA2")
	}
	mustExec(t, l, "gw2", "ip", "addr", "add", LANVIP.String(), "dev", LAN)
	mustExec(t, l, "gw2", "ip", "addr", "add", WANVIP.String(), "dev", WAN)
	waitDial(t, l, ServerAddr.Addr().String(), ClientAddr.Addr().String())
}

// TestCleanupStale leaves namespaces as a crashed run would and checks that
// only those whose owner is gone are removed, with what ran inside them.
func TestCleanupStale(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	const prefix = "hgtest"
	// A pid that just exited stands for a crashed run.
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	stale := prefix + strconv.Itoa(gone.Process.Pid) + "a-sw"
	live := prefix + strconv.Itoa(os.Getpid()) + "zz-sw"
	other := prefix + strconv.Itoa(gone.Process.Pid) + "a-router" // not a lab node name
	for _, name := range []string{stale, live, other} {
		if _, err := run("ip", "netns", "add", name); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = nstest.Remove(name) })
	}
	sleeper := exec.Command("ip", "netns", "exec", stale, "sleep", "30")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sleeper.Process.Kill() })
	// ip enters the namespace only after it has started: wait until it has.
	err := WaitFor(5*time.Second, 10*time.Millisecond, func() (bool, error) {
		out, _ := run("ip", "netns", "pids", stale)
		return slices.Contains(strings.Fields(out), strconv.Itoa(sleeper.Process.Pid)), nil
	})
	if err != nil {
		t.Fatalf("sleeper never entered %s: %v", stale, err)
	}

	removed, err := CleanupStale(prefix)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || removed[0] != stale {
		t.Errorf("CleanupStale removed %v, want [%s]", removed, stale)
	}
	for name, want := range map[string]bool{stale: false, live: true, other: true} {
		_, err := os.Stat(filepath.Join(nstest.Dir, name))
		if exists := !errors.Is(err, fs.ErrNotExist); exists != want {
			t.Errorf("%s exists = %v, want %v", name, exists, want)
		}
	}
	done := make(chan error, 1)
	go func() { done <- sleeper.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			t.Error("process inside the stale namespace exited cleanly, want killed")
		}
	case <-time.After(5 * time.Second):
		t.Error("process inside the stale namespace still runs")
	}
}
