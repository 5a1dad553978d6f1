package netlab

import (
	"context"
	"fmt"
	"net/netip"
)

// The transparent lab (Options.Transparent): every gateway bridges its lan
// and wan ports in a bridge named [Bridge], and client and server share
// one subnet across the two switch bridges:
//
//	client 192.0.2.100 -- brlan == gwK lan [Bridge] wan == brwan -- server 192.0.2.200
//
// The ports have no address; [Bridge] has the gateway's LAN address (its
// management address). br_netfilter hands bridged IPv4 to the gateway's
// nftables and conntrack (net.bridge.bridge-nf-call-iptables=1 in each
// gateway's namespace), so the lab's strict tracking and invalid drops
// apply to bridged traffic as to routed. No SNAT: nothing is routed.

// Bridge is the bridge inside each gateway of a transparent lab.
const Bridge = "br0"

// BridgedServerAddr is the server's address in a transparent lab: on the
// client's subnet, behind the gateways' bridges.
var BridgedServerAddr = netip.MustParsePrefix("192.0.2.200/24")

// Transparent reports whether the gateways bridge (Options.Transparent).
func (l *Lab) Transparent() bool { return l.opts.Transparent }

// ServerAddress is the server's address: ServerAddr, or BridgedServerAddr
// in a transparent lab.
func (l *Lab) ServerAddress() netip.Prefix {
	if l.opts.Transparent {
		return BridgedServerAddr
	}
	return ServerAddr
}

func (l *Lab) buildTransparent() error {
	if err := l.plug(Client, Eth0, LAN, ClientAddr, netip.Prefix{}); err != nil {
		return err
	}
	if err := l.plug(Server, Eth0, WAN, BridgedServerAddr, netip.Prefix{}); err != nil {
		return err
	}
	for k, gw := range l.gws {
		if err := l.buildBridgingGateway(k+1, gw); err != nil {
			return fmt.Errorf("%s: %w", gw, err)
		}
	}
	return nil
}

func (l *Lab) buildBridgingGateway(k int, gw string) error {
	for _, link := range l.links() {
		var v4 netip.Prefix
		if link != LAN && link != WAN {
			var err error
			if v4, err = GatewayAddr(k, link); err != nil {
				return err
			}
		}
		if err := l.plug(gw, link, link, v4, netip.Prefix{}); err != nil {
			return fmt.Errorf("%s: %w", link, err)
		}
	}
	if err := l.ip(gw, "link", "add", Bridge, "type", "bridge", "forward_delay", "0", "stp_state", "0", "mcast_snooping", "0"); err != nil {
		return fmt.Errorf("add bridge: %w", err)
	}
	for _, port := range []string{LAN, WAN} {
		if err := l.ip(gw, "link", "set", port, "master", Bridge); err != nil {
			return fmt.Errorf("bridge port: %w", err)
		}
	}
	mgmt, _ := GatewayAddr(k, LAN)
	if err := l.ip(gw, "addr", "add", mgmt.String(), "dev", Bridge); err != nil {
		return fmt.Errorf("bridge address: %w", err)
	}
	if err := l.ip(gw, "link", "set", Bridge, "up"); err != nil {
		return fmt.Errorf("bridge up: %w", err)
	}
	rules := gatewayRules(false, !l.opts.AllowInvalid)
	if _, err := runInput(context.Background(), rules, "ip", "netns", "exec", l.NS(gw), "nft", "-f", "-"); err != nil {
		return fmt.Errorf("ruleset: %w", err)
	}
	return l.sysctl(gw, "net.bridge.bridge-nf-call-iptables=1",
		"net.netfilter.nf_conntrack_tcp_loose=0", "net.netfilter.nf_conntrack_tcp_be_liberal=0")
}
