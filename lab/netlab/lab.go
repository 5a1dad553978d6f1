// Package lab builds and tears down the network-namespace test lab that
// hagate's integration tests, the demo and the benchmarks run in: a client,
// a server, two to four gateways and a switch namespace whose bridges join
// them, all on TEST-NET addresses.
//
//	                   client  eth0 192.0.2.100/24, default via 192.0.2.1
//	                      |
//	brlan ====+===========+==========+=============+=====  192.0.2.0/24
//	          | lan .11              | lan .12     | lan .13
//	       +--+--+                +--+--+       +--+--+
//	brha ==+ gw1 +=== ha .1 ======+ gw2 +=======+ gw3 +==  198.51.100.0/25    ha .K
//	brha2 =+     +=== ha2 .129 ===+     +=======+     +==  198.51.100.128/25  ha2 .128+K (optional)
//	       +--+--+                +--+--+       +--+--+
//	          | wan .11              | wan .12     | wan .13
//	brwan ====+===========+==========+=============+=====  203.0.113.0/24
//	                      |
//	                   server  eth0 203.0.113.100/24, default via 203.0.113.1
//
// Every node is a namespace named <prefix><pid><seq>-<node> (e.g.
// "hg4711a-gw1"). Every "|" above is a veth pair: the node end is named
// lan, wan, ha, ha2 (gateways) or eth0 (client, server); the other end is a
// port (gw1-lan, ..., client, server) of a bridge in the switch namespace
// "sw". Nothing is created in, or changed in, the caller's namespace; the
// one host-wide setting a lab user may change is nf_conntrack_max, and
// only when asked (nstest.RaiseConntrackMax). The namespaces are made and
// removed by internal/nstest, which the product's kernel tests use too.
//
// The virtual IPs 192.0.2.1 and 203.0.113.1 (and 2001:db8:1::1,
// 2001:db8:2::1) are on no gateway: holding them is the job of hagate, or
// of a test by hand. Each gateway forwards, tracks connections strictly
// (nf_conntrack_tcp_loose=0, be_liberal=0, and packets conntrack finds
// invalid are dropped, forwarded or addressed to the gateway, as a stateful
// firewall does, so a session the new
// primary does not know dies visibly), and source-NATs the LAN to the WAN
// virtual IP (snat, not masquerade: every gateway must translate to the
// shared address whether it holds it or not).
//
// Faults are injected in the switch, never inside a gateway: [Lab.LinkDown]
// takes the bridge port down (the gateway sees carrier loss), [Lab.Cut]
// silently drops everything through the port with a bridge-family nftables
// rule (the gateway's link stays up: a dead peer or broken switch), and
// [Lab.Loss] drops a random share of it.
//
// A Lab is safe for concurrent use. It shells out to ip, nft and sysctl:
// simple, and what an operator would type to reproduce a failure.
package netlab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"

	"github.com/hagate/hagate/internal/nstest"
)

// Options shape a lab. The zero value is a three-gateway IPv4 lab with
// SNAT and one HA link.
type Options struct {
	// Prefix starts every namespace name: 1 to 8 lowercase letters;
	// DefaultPrefix if empty.
	Prefix string
	// Gateways is the number of gateways, MinGateways..MaxGateways;
	// DefaultGateways if zero.
	Gateways int
	// HA2 adds a second HA link (ha2, bridge brha2) to every gateway.
	HA2 bool
	// IPv6 adds the IPv6 addresses and routes; without it IPv6 is disabled
	// in every lab namespace, which also silences its link-local chatter.
	IPv6 bool
	// NoNAT leaves out the gateways' SNAT rule.
	NoNAT bool
	// SNATRandomPorts makes the SNAT rule pick a random source port for
	// every new mapping (nftables fully-random) instead of keeping the
	// client's port when it is free. With the default, a new primary that
	// lacks a flow's conntrack entry usually maps it to the same port
	// again, so a UDP flow looks unbroken whether or not its entry was
	// synced; with random ports (as gateways that randomize or pool their
	// source ports do) it keeps its mapping only if the entry was synced.
	SNATRandomPorts bool
	// AllowInvalid forwards packets conntrack finds invalid instead of
	// dropping them (they are still counted).
	AllowInvalid bool
	// Transparent makes every gateway a bridge between its lan and wan
	// (transparent.go): client and server share 192.0.2.0/24.
	Transparent bool
	// Logf, if set, receives notes about cleanup trouble that does not
	// fail an operation.
	Logf func(format string, args ...any)
}

func (o Options) withDefaults() (Options, error) {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if !validPrefix(o.Prefix) {
		return o, fmt.Errorf("lab: invalid prefix %q (want 1-8 lowercase letters)", o.Prefix)
	}
	if o.Gateways == 0 {
		o.Gateways = DefaultGateways
	}
	if o.Gateways < MinGateways || o.Gateways > MaxGateways {
		return o, fmt.Errorf("lab: %d gateways, want %d..%d", o.Gateways, MinGateways, MaxGateways)
	}
	return o, nil
}

// Lab is a running lab. Make one with [New]; Close it when done.
type Lab struct {
	id   string
	opts Options
	gws  []string

	mu      sync.Mutex
	closed  bool
	created []string      // full namespace names, for Close
	procs   []*os.Process // started with Start, killed by Close
	cut     map[string]bool
	loss    map[string]int
}

// New builds a lab. On failure everything it had made is removed. It first
// removes the namespaces that crashed runs with the same prefix left
// behind ([CleanupStale]). Needs root.
func New(opts Options) (*Lab, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	l := &Lab{
		id:   newID(o.Prefix),
		opts: o,
		cut:  map[string]bool{},
		loss: map[string]int{},
	}
	for k := 1; k <= o.Gateways; k++ {
		l.gws = append(l.gws, Gateway(k))
	}
	if removed, err := CleanupStale(o.Prefix); err != nil {
		l.logf("lab: cleaning up stale labs: %v", err)
	} else if len(removed) > 0 {
		l.logf("lab: removed stale namespaces %v", removed)
	}
	if err := l.build(); err != nil {
		return nil, errors.Join(fmt.Errorf("lab: build %s: %w", l.id, err), l.Close())
	}
	return l, nil
}

// ID returns the lab's name prefix, e.g. "hg4711a".
func (l *Lab) ID() string { return l.id }

// Gateways returns the gateway node names, "gw1" first.
func (l *Lab) Gateways() []string { return append([]string(nil), l.gws...) }

// Nodes returns every node name: sw, client, server, then the gateways.
func (l *Lab) Nodes() []string { return append([]string{Switch, Client, Server}, l.gws...) }

// links returns a gateway's links in the order PowerOff cuts them.
func (l *Lab) links() []string {
	if l.opts.HA2 {
		return []string{HA, HA2, LAN, WAN}
	}
	return []string{HA, LAN, WAN}
}

func (l *Lab) logf(format string, args ...any) {
	if l.opts.Logf != nil {
		l.opts.Logf(format, args...)
	}
}

func (l *Lab) build() error {
	for _, node := range l.Nodes() {
		if err := l.addNS(node); err != nil {
			return err
		}
	}
	bridges := []string{LAN, WAN, HA}
	if l.opts.HA2 {
		bridges = append(bridges, HA2)
	}
	for _, b := range bridges {
		// No STP and no forward delay: a port forwards the moment it is up.
		// No multicast snooping: nothing here sends IGMP joins. No bridge
		// netfilter calls: the switch must not track or filter by IP.
		if err := l.ip(Switch, "link", "add", bridgeFor(b), "type", "bridge",
			"forward_delay", "0", "stp_state", "0", "mcast_snooping", "0", "nf_call_iptables", "0", "nf_call_ip6tables", "0"); err != nil {
			return fmt.Errorf("add bridge: %w", err)
		}
		if err := l.ip(Switch, "link", "set", bridgeFor(b), "up"); err != nil {
			return fmt.Errorf("bridge up: %w", err)
		}
	}
	if err := l.applyFaults(); err != nil {
		return err
	}
	if l.opts.Transparent {
		return l.buildTransparent()
	}

	if err := l.plug(Client, Eth0, LAN, ClientAddr, ClientAddr6); err != nil {
		return err
	}
	if err := l.plug(Server, Eth0, WAN, ServerAddr, ServerAddr6); err != nil {
		return err
	}
	if err := l.defaultRoute(Client, LANVIP, LANVIP6); err != nil {
		return err
	}
	if err := l.defaultRoute(Server, WANVIP, WANVIP6); err != nil {
		return err
	}
	for k, gw := range l.gws {
		if err := l.buildGateway(k+1, gw); err != nil {
			return err
		}
	}
	return nil
}

// addNS creates a node's namespace with loopback up and its sysctls set
// before any link exists, so every link inherits them.
func (l *Lab) addNS(node string) error {
	full := l.NS(node)
	// The name embeds our pid and a per-process counter, so a namespace
	// with it can only be left over by a dead process that had our pid.
	if err := nstest.Remove(full); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	if err := nstest.Add(full); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	l.mu.Lock()
	l.created = append(l.created, full)
	l.mu.Unlock()
	var kv []string
	if l.opts.IPv6 && node != Switch {
		// No duplicate address detection (addresses usable at once) and no
		// router solicitations or advertisements to wait for.
		for _, c := range []string{"all", "default"} {
			kv = append(kv,
				"net.ipv6.conf."+c+".accept_dad=0",
				"net.ipv6.conf."+c+".router_solicitations=0",
				"net.ipv6.conf."+c+".accept_ra=0")
		}
	} else {
		kv = append(kv, "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	}
	if strings.HasPrefix(node, "gw") {
		kv = append(kv, "net.ipv4.ip_forward=1")
		if l.opts.IPv6 {
			kv = append(kv, "net.ipv6.conf.all.forwarding=1")
		}
	}
	return l.sysctl(node, kv...)
}

func (l *Lab) sysctl(node string, kv ...string) error {
	if _, err := l.Exec(node, append([]string{"sysctl", "-q", "-w"}, kv...)...); err != nil {
		return fmt.Errorf("sysctl: %w", err)
	}
	return nil
}

// plug connects node's link to the switch bridge for bridgeLink and gives it
// its addresses (v6 only in an IPv6 lab).
func (l *Lab) plug(node, link, bridgeLink string, v4, v6 netip.Prefix) error {
	port := portName(node, link)
	if err := l.ip(node, "link", "add", link, "type", "veth", "peer", "name", port, "netns", l.NS(Switch)); err != nil {
		return fmt.Errorf("add veth: %w", err)
	}
	if err := l.ip(Switch, "link", "set", port, "master", bridgeFor(bridgeLink), "up"); err != nil {
		return fmt.Errorf("attach port: %w", err)
	}
	var addrs []netip.Prefix
	if v4.IsValid() {
		addrs = append(addrs, v4)
	}
	if l.opts.IPv6 && v6.IsValid() {
		addrs = append(addrs, v6)
	}
	for _, a := range addrs {
		if err := l.ip(node, "addr", "add", a.String(), "dev", link); err != nil {
			return fmt.Errorf("add address: %w", err)
		}
	}
	if err := l.ip(node, "link", "set", link, "up"); err != nil {
		return fmt.Errorf("link up: %w", err)
	}
	return nil
}

func (l *Lab) defaultRoute(node string, via4, via6 netip.Prefix) error {
	if err := l.ip(node, "route", "add", "default", "via", via4.Addr().String()); err != nil {
		return fmt.Errorf("default route: %w", err)
	}
	if l.opts.IPv6 {
		if err := l.ip(node, "-6", "route", "add", "default", "via", via6.Addr().String()); err != nil {
			return fmt.Errorf("default route: %w", err)
		}
	}
	return nil
}

func (l *Lab) buildGateway(k int, gw string) error {
	for _, link := range l.links() {
		v4, err := GatewayAddr(k, link)
		if err != nil {
			return err
		}
		v6, _ := GatewayAddr6(k, link) // invalid (none) for the HA links
		if err := l.plug(gw, link, link, v4, v6); err != nil {
			return fmt.Errorf("%s %s: %w", gw, link, err)
		}
	}
	var snatFlags []string
	if l.opts.SNATRandomPorts {
		snatFlags = append(snatFlags, "fully-random")
	}
	rules := gatewayRules(!l.opts.NoNAT, !l.opts.AllowInvalid, snatFlags...)
	if _, err := runInput(context.Background(), rules, "ip", "netns", "exec", l.NS(gw), "nft", "-f", "-"); err != nil {
		return fmt.Errorf("%s ruleset: %w", gw, err)
	}
	// The ruleset's ct and nat expressions make conntrack track in this
	// namespace; only now do its per-namespace sysctls surely exist.
	return l.sysctl(gw, "net.netfilter.nf_conntrack_tcp_loose=0", "net.netfilter.nf_conntrack_tcp_be_liberal=0")
}

// gatewayRules renders a gateway's nftables ruleset, with snatFlags (e.g.
// "fully-random") after the snat statement. It replaces the table
// atomically, so applying it twice is harmless.
func gatewayRules(snat, dropInvalid bool, snatFlags ...string) string {
	var b strings.Builder
	b.WriteString("table inet lab {}\ndelete table inet lab\ntable inet lab {\n")
	// Invalid packets are dropped on input too: conntrack does not undo the
	// NAT of a packet it finds invalid, so a reply to the virtual IP would
	// reach the gateway's own TCP stack and be answered with a reset.
	for _, hook := range []string{"forward", "input"} {
		fmt.Fprintf(&b, "\tchain %s {\n\t\ttype filter hook %s priority filter; policy accept;\n", hook, hook)
		if dropInvalid {
			b.WriteString("\t\tct state invalid counter drop\n")
		} else {
			b.WriteString("\t\tct state invalid counter\n")
		}
		b.WriteString("\t}\n")
	}
	if snat {
		fmt.Fprintf(&b, "\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n")
		fmt.Fprintf(&b, "\t\toifname %q ip saddr %s counter snat ip to %s", WAN, LANNet, WANVIP.Addr())
		for _, f := range snatFlags {
			b.WriteString(" " + f)
		}
		b.WriteString("\n")
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}
