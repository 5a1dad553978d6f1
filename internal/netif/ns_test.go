package netif

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/hagate/hagate/internal/nstest"
)

// Helpers for tests against the kernel. Each test makes its own network
// namespaces (internal/nstest), removed when the test ends.

func requireRoot(t *testing.T) {
	t.Helper()
	nstest.RequireRoot(t)
}

// testNS is one test namespace: a Handle under test and a plain netlink
// handle for setting the scene.
type testNS struct {
	ns netns.NsHandle
	h  *Handle
	nl *netlink.Handle
}

func newTestNS(t *testing.T) *testNS {
	t.Helper()
	ns, err := netns.GetFromPath(nstest.New(t).Path())
	if err != nil {
		t.Fatalf("open namespace: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	h, err := NewAt(ns)
	if err != nil {
		t.Fatalf("NewAt: %v", err)
	}
	t.Cleanup(func() { h.Close() })
	nh, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink handle: %v", err)
	}
	t.Cleanup(nh.Close)
	n := &testNS{ns: ns, h: h, nl: nh}
	// The tests count every address in the namespace: loopback goes back
	// to how a new namespace has it, down and without 127.0.0.1 and ::1.
	n.setLink(t, "lo", false)
	lo, err := nh.LinkByName("lo")
	if err != nil {
		t.Fatalf("link lo: %v", err)
	}
	addrs, err := nh.AddrList(lo, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatalf("addresses of lo: %v", err)
	}
	for _, a := range addrs {
		if err := nh.AddrDel(lo, &a); err != nil {
			t.Fatalf("remove %s from lo: %v", a.IPNet, err)
		}
	}
	return n
}

// veth creates a veth pair, nameA in a and nameB in b (which may be a), and
// sets both ends up.
func veth(t *testing.T, a *testNS, nameA string, b *testNS, nameB string) {
	t.Helper()
	la := netlink.NewLinkAttrs()
	la.Name = nameA
	v := &netlink.Veth{LinkAttrs: la, PeerName: nameB, PeerNamespace: netlink.NsFd(int(b.ns))}
	if err := a.nl.LinkAdd(v); err != nil {
		t.Fatalf("add veth %s/%s: %v", nameA, nameB, err)
	}
	a.setLink(t, nameA, true)
	b.setLink(t, nameB, true)
}

func (n *testNS) setLink(t *testing.T, name string, up bool) {
	t.Helper()
	l, err := n.nl.LinkByName(name)
	if err != nil {
		t.Fatalf("link %s: %v", name, err)
	}
	if up {
		err = n.nl.LinkSetUp(l)
	} else {
		err = n.nl.LinkSetDown(l)
	}
	if err != nil {
		t.Fatalf("set %s up=%v: %v", name, up, err)
	}
}

func (n *testNS) mac(t *testing.T, name string) net.HardwareAddr {
	t.Helper()
	l, err := n.nl.LinkByName(name)
	if err != nil {
		t.Fatalf("link %s: %v", name, err)
	}
	return l.Attrs().HardwareAddr
}

// sysctl writes a sysctl of the namespace, e.g. "net/ipv4/conf/all/arp_accept".
// It reports whether the sysctl exists.
func (n *testNS) sysctl(t *testing.T, key, value string) bool {
	t.Helper()
	var exists = true
	err := n.h.do(func() error {
		err := os.WriteFile("/proc/sys/"+key, []byte(value), 0o644)
		if os.IsNotExist(err) {
			exists = false
			return nil
		}
		return err
	})
	if err != nil {
		t.Fatalf("sysctl %s=%s: %v", key, value, err)
	}
	return exists
}

// capture opens a packet socket on ifname in the namespace, receiving frames
// of one EtherType (both directions).
func (n *testNS) capture(t *testing.T, ifname string, etherType int) *packet.Conn {
	t.Helper()
	l, err := n.h.link(ifname)
	if err != nil {
		t.Fatal(err)
	}
	var c *packet.Conn
	err = n.h.do(func() error {
		var err error
		c, err = packet.Listen(stdInterface(l), packet.Raw, etherType, nil)
		return err
	})
	if err != nil {
		t.Fatalf("capture on %s: %v", ifname, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readFrames reads frames from c until count returns true for the frames
// read so far or timeout passes, and returns them all.
func readFrames(t *testing.T, c *packet.Conn, timeout time.Duration, enough func([][]byte) bool) [][]byte {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		t.Fatal(err)
	}
	var frames [][]byte
	buf := make([]byte, 2048)
	for !enough(frames) {
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			t.Fatalf("read frame: %v", err)
		}
		frames = append(frames, append([]byte(nil), buf[:n]...))
	}
	return frames
}

// eventually polls cond every 20ms until it holds or timeout passes. For
// kernel state that has no event to wait on (the neighbour table).
func eventually(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}
