package netif

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// frameWait bounds the wait for announced frames to arrive.
const frameWait = 3 * time.Second

var (
	vip4 = netip.MustParsePrefix("192.0.2.10/24")
	vip6 = netip.MustParsePrefix("2001:db8::10/64")
)

func TestGARPFrames(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	addr := netip.MustParseAddr("192.0.2.10")
	frames, err := garpFrames(mac, addr)
	if err != nil {
		t.Fatal(err)
	}
	type garp struct {
		Op       arp.Operation
		EthDst   string
		SHA, THA string
		SPA, TPA netip.Addr
	}
	var got []garp
	for _, f := range frames {
		e, p := parseARP(t, f)
		got = append(got, garp{p.Operation, e.Destination.String(),
			p.SenderHardwareAddr.String(), p.TargetHardwareAddr.String(), p.SenderIP, p.TargetIP})
	}
	want := []garp{
		{arp.OperationRequest, "ff:ff:ff:ff:ff:ff", mac.String(), "00:00:00:00:00:00", addr, addr},
		{arp.OperationReply, "ff:ff:ff:ff:ff:ff", mac.String(), mac.String(), addr, addr},
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("frames mismatch (-want +got):\n%s", diff)
	}
	if _, err := garpFrames(mac, netip.MustParseAddr("2001:db8::1")); err == nil {
		t.Error("garpFrames accepted an IPv6 address")
	}
}

func TestUnsolicitedNA(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	addr := netip.MustParseAddr("2001:db8::10")
	b, err := ndp.MarshalMessage(unsolicitedNA(addr, mac, true))
	if err != nil {
		t.Fatal(err)
	}
	m, err := ndp.ParseMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	na, ok := m.(*ndp.NeighborAdvertisement)
	if !ok {
		t.Fatalf("message is %T", m)
	}
	if !na.Override || na.Solicited || !na.Router || na.TargetAddress != addr {
		t.Errorf("advertisement %+v: want override, unsolicited, router, target %s", na, addr)
	}
	if got := targetLLA(na); !bytes.Equal(got, mac) {
		t.Errorf("target link-layer address %s, want %s", got, mac)
	}
}

func TestAnnounceErrors(t *testing.T) {
	n := newTestNS(t)
	veth(t, n, "a0", n, "b0")
	for _, tc := range []struct {
		ifname string
		addr   netip.Addr
	}{
		{"nosuch0", netip.MustParseAddr("192.0.2.10")},
		{"a0", netip.Addr{}},
		{"a0", netip.MustParseAddr("ff02::1")},
		{"lo", netip.MustParseAddr("192.0.2.10")}, // no Ethernet address
	} {
		if err := n.h.Announce(tc.ifname, tc.addr); err == nil {
			t.Errorf("Announce(%s, %s) succeeded", tc.ifname, tc.addr)
		}
	}
}

// lab is two namespaces joined by a veth pair: the gateway side "gw0" holds
// the virtual IPs, the host side "host0" watches what arrives.
type lab struct {
	gw, host *testNS
	gwMAC    net.HardwareAddr
}

func newLab(t *testing.T) *lab {
	t.Helper()
	l := &lab{gw: newTestNS(t), host: newTestNS(t)}
	veth(t, l.gw, "gw0", l.host, "host0")
	l.gwMAC = l.gw.mac(t, "gw0")
	for _, p := range []netip.Prefix{vip4, vip6} {
		if err := l.gw.h.AddAddress("gw0", p); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"192.0.2.20/24", "2001:db8::20/64"} {
		if err := l.host.h.AddAddress("host0", netip.MustParsePrefix(p)); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

func TestAnnounceIPv4(t *testing.T) {
	l := newLab(t)
	// By default Linux only refreshes neighbour entries it already has;
	// arp_accept=1 lets a gratuitous ARP create one, which proves the
	// kernel took the frame as a valid announcement.
	l.host.sysctl(t, "net/ipv4/conf/all/arp_accept", "1")
	l.host.sysctl(t, "net/ipv4/conf/host0/arp_accept", "1")
	c := l.host.capture(t, "host0", unix.ETH_P_ARP)

	if err := l.gw.h.Announce("gw0", vip4.Addr()); err != nil {
		t.Fatalf("Announce: %v", err)
	}

	var req, rep int
	readFrames(t, c, frameWait, func(frames [][]byte) bool {
		req, rep = countGARP(t, frames, l.gwMAC, vip4.Addr())
		return req >= 1 && rep >= 1
	})
	if req != 1 || rep != 1 {
		t.Errorf("received %d gratuitous requests and %d replies, want 1 and 1", req, rep)
	}
	if !eventually(frameWait, func() bool { return neighMAC(t, l.host, "host0", vip4.Addr()).String() == l.gwMAC.String() }) {
		t.Errorf("host's neighbour table has %s at %q, want %s",
			vip4.Addr(), neighMAC(t, l.host, "host0", vip4.Addr()), l.gwMAC)
	}
}

func TestAnnounceIPv6(t *testing.T) {
	requireRoot(t)
	for _, forwarding := range []bool{false, true} {
		t.Run(map[bool]string{false: "host", true: "router"}[forwarding], func(t *testing.T) {
			l := newLab(t)
			if forwarding {
				l.gw.sysctl(t, "net/ipv6/conf/gw0/forwarding", "1")
			}
			// The host already knows the address at a stale MAC, as after
			// a takeover: only an advertisement with the Override flag
			// replaces it (an unknown address would not be learnt at all
			// by a host that does not forward).
			stale := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99}
			l.host.addNeigh(t, "host0", vip6.Addr(), stale)
			c := l.host.capture(t, "host0", unix.ETH_P_IPV6)

			if err := l.gw.h.Announce("gw0", vip6.Addr()); err != nil {
				t.Fatalf("Announce: %v", err)
			}

			var nas []*ndp.NeighborAdvertisement
			readFrames(t, c, frameWait, func(frames [][]byte) bool {
				nas = collectNA(t, frames, l.gwMAC, vip6.Addr())
				return len(nas) >= 1
			})
			if len(nas) != 1 {
				t.Fatalf("received %d advertisements for %s, want 1", len(nas), vip6.Addr())
			}
			na := nas[0]
			if !na.Override || na.Solicited || na.Router != forwarding {
				t.Errorf("advertisement %+v: want override, unsolicited, router=%v", na, forwarding)
			}
			if got := targetLLA(na); !bytes.Equal(got, l.gwMAC) {
				t.Errorf("target link-layer address %s, want %s", got, l.gwMAC)
			}
			if !eventually(frameWait, func() bool { return neighMAC(t, l.host, "host0", vip6.Addr()).String() == l.gwMAC.String() }) {
				t.Errorf("host's neighbour table has %s at %q, want %s",
					vip6.Addr(), neighMAC(t, l.host, "host0", vip6.Addr()), l.gwMAC)
			}
		})
	}
}

// countGARP counts the gratuitous ARP requests and replies for addr sent
// from mac among frames.
func countGARP(t *testing.T, frames [][]byte, mac net.HardwareAddr, addr netip.Addr) (req, rep int) {
	t.Helper()
	for _, f := range frames {
		e, p := parseARP(t, f)
		if !bytes.Equal(e.Source, mac) || !bytes.Equal(e.Destination, ethernet.Broadcast) ||
			!bytes.Equal(p.SenderHardwareAddr, mac) || p.SenderIP != addr || p.TargetIP != addr {
			continue
		}
		switch p.Operation {
		case arp.OperationRequest:
			req++
		case arp.OperationReply:
			if bytes.Equal(p.TargetHardwareAddr, mac) {
				rep++
			}
		}
	}
	return req, rep
}

func parseARP(t *testing.T, f []byte) (*ethernet.Frame, *arp.Packet) {
	t.Helper()
	var e ethernet.Frame
	if err := e.UnmarshalBinary(f); err != nil {
		t.Fatalf("parse Ethernet frame: %v", err)
	}
	var p arp.Packet
	if err := p.UnmarshalBinary(e.Payload); err != nil {
		t.Fatalf("parse ARP: %v", err)
	}
	return &e, &p
}

// collectNA returns the neighbour advertisements for target sent from mac to
// all nodes with hop limit 255 (anything else a receiver would drop).
func collectNA(t *testing.T, frames [][]byte, mac net.HardwareAddr, target netip.Addr) []*ndp.NeighborAdvertisement {
	t.Helper()
	const ethLen, ipLen = 14, 40
	var out []*ndp.NeighborAdvertisement
	for _, f := range frames {
		if len(f) < ethLen+ipLen || !bytes.Equal(f[6:12], mac) {
			continue
		}
		ip := f[ethLen : ethLen+ipLen]
		dst, _ := netip.AddrFromSlice(ip[24:40])
		if ip[6] != unix.IPPROTO_ICMPV6 || ip[7] != 255 || dst != allNodes {
			continue
		}
		m, err := ndp.ParseMessage(f[ethLen+ipLen:])
		if err != nil {
			continue // another ICMPv6 message type than ndp parses
		}
		if na, ok := m.(*ndp.NeighborAdvertisement); ok && na.TargetAddress == target {
			out = append(out, na)
		}
	}
	return out
}

func targetLLA(na *ndp.NeighborAdvertisement) net.HardwareAddr {
	for _, o := range na.Options {
		if lla, ok := o.(*ndp.LinkLayerAddress); ok && lla.Direction == ndp.Target {
			return lla.Addr
		}
	}
	return nil
}

// neighMAC returns the MAC the namespace's neighbour table has for addr on
// ifname, or nil.
func neighMAC(t *testing.T, n *testNS, ifname string, addr netip.Addr) net.HardwareAddr {
	t.Helper()
	l, err := n.nl.LinkByName(ifname)
	if err != nil {
		t.Fatal(err)
	}
	family := netlink.FAMILY_V4
	if addr.Is6() {
		family = netlink.FAMILY_V6
	}
	neighs, err := n.nl.NeighList(l.Attrs().Index, family)
	if err != nil {
		t.Fatalf("neighbours: %v", err)
	}
	for _, nb := range neighs {
		if a, ok := netip.AddrFromSlice(nb.IP); ok && a.Unmap() == addr {
			return nb.HardwareAddr
		}
	}
	return nil
}

// addNeigh puts a STALE neighbour entry for addr at mac on ifname.
func (n *testNS) addNeigh(t *testing.T, ifname string, addr netip.Addr, mac net.HardwareAddr) {
	t.Helper()
	l, err := n.nl.LinkByName(ifname)
	if err != nil {
		t.Fatal(err)
	}
	family := netlink.FAMILY_V4
	if addr.Is6() {
		family = netlink.FAMILY_V6
	}
	err = n.nl.NeighAdd(&netlink.Neigh{
		LinkIndex:    l.Attrs().Index,
		Family:       family,
		State:        netlink.NUD_STALE,
		IP:           addr.AsSlice(),
		HardwareAddr: mac,
	})
	if err != nil {
		t.Fatalf("add neighbour %s at %s: %v", addr, mac, err)
	}
}
