package netif

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestNormPrefix(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{in: "192.0.2.10/24", want: "192.0.2.10/24"},
		{in: "2001:db8::10/64", want: "2001:db8::10/64"},
		{in: "::ffff:192.0.2.10/120", want: "192.0.2.10/24"},
		{in: "::ffff:192.0.2.10/64", wantErr: true},
	}
	for _, tt := range tests {
		got, err := normPrefix(netip.MustParsePrefix(tt.in))
		if tt.wantErr {
			if err == nil {
				t.Errorf("normPrefix(%s) = %s, want error", tt.in, got)
			}
			continue
		}
		if err != nil || got.String() != tt.want {
			t.Errorf("normPrefix(%s) = %s, %v; want %s", tt.in, got, err, tt.want)
		}
	}
	if _, err := normPrefix(netip.Prefix{}); err == nil {
		t.Error("normPrefix(zero) succeeded")
	}
}

func TestAddresses(t *testing.T) {
	n := newTestNS(t)
	veth(t, n, "vip0", n, "peer0")

	tests := []struct {
		name   string
		prefix netip.Prefix
		family int
	}{
		{"IPv4", netip.MustParsePrefix("192.0.2.10/24"), netlink.FAMILY_V4},
		{"IPv6", netip.MustParsePrefix("2001:db8::10/64"), netlink.FAMILY_V6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.prefix
			checkHas(t, n.h, "vip0", p, false)
			if err := n.h.AddAddress("vip0", p); err != nil {
				t.Fatalf("AddAddress: %v", err)
			}
			checkHas(t, n.h, "vip0", p, true)
			if err := n.h.AddAddress("vip0", p); err != nil {
				t.Fatalf("AddAddress again: %v", err)
			}
			checkHas(t, n.h, "vip0", netip.PrefixFrom(p.Addr(), p.Bits()+8), false)

			a := kernelAddr(t, n, "vip0", tt.family, p)
			if a.Flags&unix.IFA_F_TENTATIVE != 0 || a.Flags&unix.IFA_F_DADFAILED != 0 {
				t.Errorf("address flags %#x: tentative or dadfailed", a.Flags)
			}
			if p.Addr().Is6() && a.Flags&unix.IFA_F_NODAD == 0 {
				t.Errorf("IPv6 address flags %#x: want nodad", a.Flags)
			}

			local, err := n.h.LocalAddrs()
			if err != nil {
				t.Fatalf("LocalAddrs: %v", err)
			}
			if !slices.Contains(local, p.Addr()) {
				t.Errorf("LocalAddrs() = %v, missing %s", local, p.Addr())
			}

			if err := n.h.DelAddress("vip0", p); err != nil {
				t.Fatalf("DelAddress: %v", err)
			}
			checkHas(t, n.h, "vip0", p, false)
			if err := n.h.DelAddress("vip0", p); err != nil {
				t.Fatalf("DelAddress again: %v", err)
			}
			local, err = n.h.LocalAddrs()
			if err != nil {
				t.Fatalf("LocalAddrs: %v", err)
			}
			if slices.Contains(local, p.Addr()) {
				t.Errorf("LocalAddrs() = %v, still has %s", local, p.Addr())
			}
		})
	}
}

func TestAddressErrors(t *testing.T) {
	n := newTestNS(t)
	veth(t, n, "vip0", n, "peer0")
	p := netip.MustParsePrefix("2001:db8::10/64")

	if err := n.h.AddAddress("vip0", p); err != nil {
		t.Fatalf("AddAddress: %v", err)
	}
	// The same IPv6 address with another prefix length is not "already
	// there": the caller asked for something the kernel refused.
	if err := n.h.AddAddress("vip0", netip.MustParsePrefix("2001:db8::10/80")); err == nil {
		t.Error("AddAddress with another prefix length succeeded")
	}

	for name, err := range map[string]error{
		"add": n.h.AddAddress("nosuch0", p),
		"del": n.h.DelAddress("nosuch0", p),
		"has": func() error { _, err := n.h.HasAddress("nosuch0", p); return err }(),
	} {
		if !errors.Is(err, ErrNoInterface) {
			t.Errorf("%s on a missing interface: %v, want ErrNoInterface", name, err)
		}
	}
	err := n.h.AddAddress("nosuch0", p)
	if want := "add 2001:db8::10/64 to nosuch0: "; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error %q does not start with %q", err, want)
	}
}

func TestLocalAddrsAllInterfaces(t *testing.T) {
	n := newTestNS(t)
	veth(t, n, "a0", n, "b0")
	want := []netip.Addr{
		netip.MustParseAddr("192.0.2.1"),
		netip.MustParseAddr("198.51.100.1"),
		netip.MustParseAddr("2001:db8::1"),
	}
	for _, step := range []struct {
		ifname string
		p      string
	}{{"a0", "192.0.2.1/24"}, {"b0", "198.51.100.1/24"}, {"b0", "2001:db8::1/64"}} {
		if err := n.h.AddAddress(step.ifname, netip.MustParsePrefix(step.p)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := n.h.LocalAddrs()
	if err != nil {
		t.Fatal(err)
	}
	// The kernel adds link-local addresses of its own; keep ours.
	got = slices.DeleteFunc(got, func(a netip.Addr) bool { return a.IsLinkLocalUnicast() })
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("LocalAddrs() mismatch (-want +got):\n%s", diff)
	}
}

func checkHas(t *testing.T, h *Handle, ifname string, p netip.Prefix, want bool) {
	t.Helper()
	got, err := h.HasAddress(ifname, p)
	if err != nil {
		t.Fatalf("HasAddress(%s, %s): %v", ifname, p, err)
	}
	if got != want {
		t.Errorf("HasAddress(%s, %s) = %v, want %v", ifname, p, got, want)
	}
}

func kernelAddr(t *testing.T, n *testNS, ifname string, family int, p netip.Prefix) netlink.Addr {
	t.Helper()
	l, err := n.nl.LinkByName(ifname)
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := n.nl.AddrList(l, family)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if q, ok := prefixOf(a.IPNet); ok && q == p {
			return a
		}
	}
	t.Fatalf("%s not on %s: %v", p, ifname, addrs)
	return netlink.Addr{}
}
