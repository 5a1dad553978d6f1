package netlab

import (
	"net/netip"
	"testing"
)

func TestGatewayAddr(t *testing.T) {
	tests := []struct {
		k    int
		link string
		want string // "" means an error
	}{
		{1, LAN, "192.0.2.11/24"},
		{3, LAN, "192.0.2.13/24"},
		{1, WAN, "203.0.113.11/24"},
		{4, WAN, "203.0.113.14/24"},
		{1, HA, "198.51.100.1/25"},
		{2, HA, "198.51.100.2/25"},
		{1, HA2, "198.51.100.129/25"},
		{4, HA2, "198.51.100.132/25"},
		{0, LAN, ""},
		{MaxGateways + 1, LAN, ""},
		{1, Eth0, ""},
		{1, "", ""},
	}
	for _, tt := range tests {
		got, err := GatewayAddr(tt.k, tt.link)
		if tt.want == "" {
			if err == nil {
				t.Errorf("GatewayAddr(%d, %q) = %v, want an error", tt.k, tt.link, got)
			}
			continue
		}
		if err != nil || got != netip.MustParsePrefix(tt.want) {
			t.Errorf("GatewayAddr(%d, %q) = %v, %v; want %s", tt.k, tt.link, got, err, tt.want)
		}
	}
}

func TestGatewayAddr6(t *testing.T) {
	tests := []struct {
		k    int
		link string
		want string
	}{
		{1, LAN, "2001:db8:1::11/64"},
		{2, WAN, "2001:db8:2::12/64"},
		{1, HA, ""},
		{1, HA2, ""},
		{5, LAN, ""},
	}
	for _, tt := range tests {
		got, err := GatewayAddr6(tt.k, tt.link)
		if tt.want == "" {
			if err == nil {
				t.Errorf("GatewayAddr6(%d, %q) = %v, want an error", tt.k, tt.link, got)
			}
			continue
		}
		if err != nil || got != netip.MustParsePrefix(tt.want) {
			t.Errorf("GatewayAddr6(%d, %q) = %v, %v; want %s", tt.k, tt.link, got, err, tt.want)
		}
	}
}

// TestAddressPlan checks that the fixed addresses sit in the networks of the
// virtual IPs they share a segment with, that none of them collides with a
// virtual IP, and that ha and ha2 are separate /25s.
func TestAddressPlan(t *testing.T) {
	seen := map[netip.Addr]string{}
	add := func(p netip.Prefix, what string) {
		if prev, dup := seen[p.Addr()]; dup {
			t.Errorf("%s and %s share %s", prev, what, p.Addr())
		}
		seen[p.Addr()] = what
	}
	for _, v := range []struct {
		p    netip.Prefix
		what string
	}{
		{LANVIP, "lan vip"}, {WANVIP, "wan vip"}, {ClientAddr, "client"}, {ServerAddr, "server"},
		{LANVIP6, "lan vip6"}, {WANVIP6, "wan vip6"}, {ClientAddr6, "client6"}, {ServerAddr6, "server6"},
	} {
		add(v.p, v.what)
	}
	if !LANVIP.Masked().Contains(ClientAddr.Addr()) || LANVIP.Masked() != LANNet {
		t.Errorf("client %v and LAN VIP %v are not on LANNet %v", ClientAddr, LANVIP, LANNet)
	}
	if !WANVIP.Masked().Contains(ServerAddr.Addr()) {
		t.Errorf("server %v is not on the WAN VIP's network %v", ServerAddr, WANVIP)
	}
	ha, _ := GatewayAddr(1, HA)
	ha2, _ := GatewayAddr(1, HA2)
	if ha.Masked().Overlaps(ha2.Masked()) {
		t.Errorf("ha %v and ha2 %v overlap", ha.Masked(), ha2.Masked())
	}
	for k := 1; k <= MaxGateways; k++ {
		for _, link := range []string{LAN, WAN, HA, HA2} {
			p, err := GatewayAddr(k, link)
			if err != nil {
				t.Fatal(err)
			}
			add(p, Gateway(k)+" "+link)
			if link == LAN && p.Masked() != LANVIP.Masked() || link == WAN && p.Masked() != WANVIP.Masked() {
				t.Errorf("%s %s %v is off its segment", Gateway(k), link, p)
			}
			if link == HA && p.Masked() != ha.Masked() || link == HA2 && p.Masked() != ha2.Masked() {
				t.Errorf("%s %s %v is off its segment", Gateway(k), link, p)
			}
		}
		for _, link := range []string{LAN, WAN} {
			p, err := GatewayAddr6(k, link)
			if err != nil {
				t.Fatal(err)
			}
			add(p, Gateway(k)+" "+link+"6")
		}
	}
}

func TestPortName(t *testing.T) {
	tests := []struct{ node, link, want string }{
		{"gw1", LAN, "gw1-lan"},
		{"gw4", HA2, "gw4-ha2"},
		{Client, Eth0, "client"},
		{Server, Eth0, "server"},
	}
	for _, tt := range tests {
		if got := portName(tt.node, tt.link); got != tt.want || len(got) > 15 {
			t.Errorf("portName(%q, %q) = %q, want %q (at most 15 bytes)", tt.node, tt.link, got, tt.want)
		}
	}
}
