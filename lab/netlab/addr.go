package netlab

import (
	"fmt"
	"net/netip"
)

// Node names, as accepted by [Lab.NS], [Lab.Exec] and friends. Gateways are
// named by [Gateway].
const (
	Switch = "sw"
	Client = "client"
	Server = "server"
)

// Link names inside a gateway: exactly what hagate configurations name.
// Client and server have a single link, [Eth0].
const (
	LAN  = "lan"
	WAN  = "wan"
	HA   = "ha"
	HA2  = "ha2"
	Eth0 = "eth0"
)

// Bounds on the number of gateways in a lab.
const (
	MinGateways     = 2
	MaxGateways     = 4
	DefaultGateways = 3
)

// The lab's addressing plan. Everything is TEST-NET (RFC 5737) or the IPv6
// documentation prefix (RFC 3849). The virtual IPs are not put on any
// gateway by the lab: that is the HA daemon's (or the test's) job.
var (
	LANVIP     = netip.MustParsePrefix("192.0.2.1/24")
	WANVIP     = netip.MustParsePrefix("203.0.113.1/24")
	ClientAddr = netip.MustParsePrefix("192.0.2.100/24")
	ServerAddr = netip.MustParsePrefix("203.0.113.100/24")

	LANVIP6     = netip.MustParsePrefix("2001:db8:1::1/64")
	WANVIP6     = netip.MustParsePrefix("2001:db8:2::1/64")
	ClientAddr6 = netip.MustParsePrefix("2001:db8:1::100/64")
	ServerAddr6 = netip.MustParsePrefix("2001:db8:2::100/64")

	// LANNet is the client-side network the gateways source-NAT.
	LANNet = netip.MustParsePrefix("192.0.2.0/24")
)

// Gateway returns the node name of gateway k (1-based): "gw1", "gw2", ...
func Gateway(k int) string { return fmt.Sprintf("gw%d", k) }

// GatewayAddr returns the fixed IPv4 address of gateway k (1-based) on link:
// lan 192.0.2.1K/24, wan 203.0.113.1K/24, ha 198.51.100.K/25,
// ha2 198.51.100.(128+K)/25.
func GatewayAddr(k int, link string) (netip.Prefix, error) {
	if k < 1 || k > MaxGateways {
		return netip.Prefix{}, fmt.Errorf("lab: gateway %d out of range 1..%d", k, MaxGateways)
	}
	var s string
	switch link {
	case LAN:
		s = fmt.Sprintf("192.0.2.%d/24", 10+k)
	case WAN:
		s = fmt.Sprintf("203.0.113.%d/24", 10+k)
	case HA:
		s = fmt.Sprintf("198.51.100.%d/25", k)
	case HA2:
		s = fmt.Sprintf("198.51.100.%d/25", 128+k)
	default:
		return netip.Prefix{}, fmt.Errorf("lab: gateway has no link %q", link)
	}
	return netip.ParsePrefix(s)
}

// GatewayAddr6 returns the fixed IPv6 address of gateway k (1-based) on lan
// (2001:db8:1::1K/64) or wan (2001:db8:2::1K/64). The HA links are IPv4 only.
func GatewayAddr6(k int, link string) (netip.Prefix, error) {
	if k < 1 || k > MaxGateways {
		return netip.Prefix{}, fmt.Errorf("lab: gateway %d out of range 1..%d", k, MaxGateways)
	}
	var s string
	switch link {
	case LAN:
		s = fmt.Sprintf("2001:db8:1::1%d/64", k)
	case WAN:
		s = fmt.Sprintf("2001:db8:2::1%d/64", k)
	default:
		return netip.Prefix{}, fmt.Errorf("lab: gateway link %q has no IPv6 address", link)
	}
	return netip.ParsePrefix(s)
}

// bridgeFor names the switch bridge that a gateway link plugs into.
func bridgeFor(link string) string { return "br" + link }

// portName names the switch-side end of node's link: "gw1-lan", or plain
// "client"/"server" for their single eth0. Kept under IFNAMSIZ (15).
func portName(node, link string) string {
	if link == Eth0 {
		return node
	}
	return node + "-" + link
}
