package config

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
)

// overlay returns minimal with the mappings of override merged in: a key in
// override replaces the same key in minimal (lists are replaced whole).
func overlay(t *testing.T, override string) string {
	t.Helper()
	var base, over yaml.Node
	if err := yaml.Unmarshal([]byte(minimal), &base); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal([]byte(override), &over); err != nil {
		t.Fatalf("override %q: %v", override, err)
	}
	if len(over.Content) > 0 {
		merge(base.Content[0], over.Content[0])
	}
	out, err := yaml.Marshal(&base)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func merge(dst, src *yaml.Node) {
	for i := 0; i+1 < len(src.Content); i += 2 {
		k, v := src.Content[i], src.Content[i+1]
		found := false
		for j := 0; j+1 < len(dst.Content); j += 2 {
			if dst.Content[j].Value != k.Value {
				continue
			}
			found = true
			if v.Kind == yaml.MappingNode && dst.Content[j+1].Kind == yaml.MappingNode {
				merge(dst.Content[j+1], v)
			} else {
				dst.Content[j+1] = v
			}
		}
		if !found {
			dst.Content = append(dst.Content, k, v)
		}
	}
}

func TestRules(t *testing.T) {
	tests := []struct {
		name     string
		override string
		want     map[string]string // key -> substring of its message; nil: valid
	}{
		// Keys and types.
		{"unknown key", "heartbeet: {}", map[string]string{"heartbeet": `unknown key, did you mean "heartbeat"?`}},
		{"unknown nested key", "heartbeat: {intervall: 1s}", map[string]string{"heartbeat.intervall": `did you mean "interval"?`}},
		{"FortiOS spelling", "heartbeat: {lost-threshold: 3}", map[string]string{"heartbeat.lost-threshold": `did you mean "lost_threshold"?`}},
		{"unknown key in list entry", "virtual_ips: [{interface: lan, address: 192.0.2.1/24, vlan: 3}]", map[string]string{"virtual_ips[0].vlan": "unknown key"}},
		{"odd key quoted in path", "'a b': 1", map[string]string{`"a b"`: "unknown key"}},
		{"merge key", "heartbeat: {<<: {port: 5}}", map[string]string{`heartbeat."<<"`: "merge keys"}},
		{"not an integer", "priority: high", map[string]string{"priority": `must be an integer, got "high"`}},
		{"float for integer", "priority: 1.5", map[string]string{"priority": "must be an integer, got 1.5"}},
		{"quoted integer", `priority: "5"`, map[string]string{"priority": `must be an integer, got "5" (write it without quotes)`}},
		{"huge integer", "priority: 99999999999999999999999", map[string]string{"priority": "must be an integer"}},
		{"list for integer", "priority: [1]", map[string]string{"priority": "must be an integer, got a list"}},
		{"not a bool", "override: maybe", map[string]string{"override": `must be true or false, got "maybe"`}},
		{"quoted bool", `override: "true"`, map[string]string{"override": `got "true" (write it without quotes)`}},
		{"bare integer duration", "heartbeat: {interval: 200}", map[string]string{"heartbeat.interval": `must be a duration with a unit, e.g. "200s" or "200ms"; got the bare number 200`}},
		{"bare float duration", "uptime_margin: 1.5", map[string]string{"uptime_margin": "the bare number 1.5"}},
		{"bad duration", "uptime_margin: soon", map[string]string{"uptime_margin": `"soon" is not a duration`}},
		{"string for list", "monitor: lan", map[string]string{"monitor": `must be a list, got "lan" (for one entry write [lan])`}},
		{"scalar for mapping", "gratuitous_arp: 5", map[string]string{"gratuitous_arp": "must be a mapping of keys, got 5"}},
		{"mapping for string", "node_id: {a: b}", map[string]string{"node_id": "must be a string, got a mapping"}},
		{"empty list entry", "monitor: [lan, ~]", map[string]string{"monitor[1]": "empty list entry"}},
		{"address for prefix", "virtual_ips: [{interface: lan, address: 192.0.2.1}]", map[string]string{"virtual_ips[0].address": `"192.0.2.1" is not a prefix (want e.g. 192.0.2.1/24)`}},
		{"IPv6 address for prefix", "virtual_ips: [{interface: lan, address: '2001:db8::1'}]", map[string]string{"virtual_ips[0].address": "want e.g. 2001:db8::1/64"}},
		{"garbage prefix", "session_pickup: {filter: {addresses: [lan]}}", map[string]string{"session_pickup.filter.addresses[0]": `"lan" is not a prefix`}},
		{"prefix for address", "split_brain: {witness: 192.0.2.9/24}", map[string]string{"split_brain.witness": "write the address without a prefix length"}},
		{"bad peer", "heartbeat: {links: [{interface: ha, peers: [198.51.100.2, peer2]}]}", map[string]string{"heartbeat.links[0].peers[1]": `"peer2" is not an IP address`}},
		{"zone beyond uint16", "session_pickup: {filter: {zones: [70000]}}", map[string]string{"session_pickup.filter.zones[0]": "must be between 0 and 65535, got 70000"}},
		{"negative mark", "session_pickup: {filter: {marks: [{value: -1}]}}", map[string]string{"session_pickup.filter.marks[0].value": "must be between 0 and 4294967295, got -1"}},

		// node_id.
		{"node_id missing", "node_id: ~", map[string]string{"node_id": "required"}},
		{"node_id empty", `node_id: ""`, map[string]string{"node_id": "required"}},
		{"node_id too long", "node_id: " + strings.Repeat("a", 33), map[string]string{"node_id": "at most 32 characters"}},
		{"node_id longest", "node_id: " + strings.Repeat("a", 32), nil},
		{"node_id bad character", "node_id: gw/1", map[string]string{"node_id": `has '/'`}},
		{"node_id all allowed characters", "node_id: Gw-1_a.b", nil},

		// Scalars with ranges.
		{"group_id too big", "group_id: 1024", map[string]string{"group_id": "must be between 0 and 1023, got 1024"}},
		{"group_id negative", "group_id: -1", map[string]string{"group_id": "between 0 and 1023"}},
		{"group_id max", "group_id: 1023", nil},
		{"priority too big", "priority: 256", map[string]string{"priority": "must be between 0 and 255, got 256"}},
		{"priority negative", "priority: -1", map[string]string{"priority": "between 0 and 255"}},
		{"priority max", "priority: 255", nil},
		{"uptime_margin negative", "uptime_margin: -1s", map[string]string{"uptime_margin": "must not be negative"}},
		{"failover_hold_time negative", "failover_hold_time: -1s", map[string]string{"failover_hold_time": "must not be negative"}},
		{"failover_hold_time set", "failover_hold_time: 10m", nil},
		{"ping_flip_timeout negative", "ping_flip_timeout: -1m", map[string]string{"ping_flip_timeout": "must not be negative"}},
		{"log_level", "log_level: verbose", map[string]string{"log_level": `must be one of debug, info, warn, error; got "verbose"`}},
		{"log_level debug", "log_level: debug", nil},
		{"metrics_listen no port", "metrics_listen: 127.0.0.1", map[string]string{"metrics_listen": "is not host:port"}},
		{"metrics_listen port 0", "metrics_listen: ':0'", map[string]string{"metrics_listen": "between 1 and 65535"}},
		{"metrics_listen named port", "metrics_listen: 'localhost:http'", map[string]string{"metrics_listen": "between 1 and 65535"}},
		{"metrics_listen all addresses", "metrics_listen: ':9703'", nil},
		{"metrics_listen IPv6", "metrics_listen: '[::1]:9703'", nil},
		{"control_socket empty", `control_socket: ""`, map[string]string{"control_socket": "must not be empty"}},
		{"control_socket too long", "control_socket: /" + strings.Repeat("s", 107), map[string]string{"control_socket": "longer than a unix socket allows"}},
		{"state_dir empty", `state_dir: ""`, map[string]string{"state_dir": "must not be empty"}},

		// Heartbeat.
		{"interval too short", "heartbeat: {interval: 5ms}", map[string]string{"heartbeat.interval": "must be between 10ms and 10s, got 5ms"}},
		{"interval too long", "heartbeat: {interval: 11s}", map[string]string{"heartbeat.interval": "between 10ms and 10s"}},
		{"interval bounds", "heartbeat: {interval: 10ms}", nil},
		{"lost_threshold zero", "heartbeat: {lost_threshold: 0}", map[string]string{"heartbeat.lost_threshold": "must be between 1 and 60, got 0"}},
		{"lost_threshold too big", "heartbeat: {lost_threshold: 61}", map[string]string{"heartbeat.lost_threshold": "between 1 and 60"}},
		{"heartbeat port zero", "heartbeat: {port: 0}", map[string]string{"heartbeat.port": "must be between 1 and 65535, got 0"}},
		{"heartbeat port too big", "heartbeat: {port: 65536}", map[string]string{"heartbeat.port": "between 1 and 65535"}},
		{"heartbeat realtime priority too big", "heartbeat: {realtime_priority: 100}", map[string]string{"heartbeat.realtime_priority": "between 0 and 99"}},
		{"heartbeat realtime priority negative", "heartbeat: {realtime_priority: -1}", map[string]string{"heartbeat.realtime_priority": "between 0 and 99, got -1"}},
		{"no links", "heartbeat: {links: []}", map[string]string{"heartbeat.links": "at least one link"}},
		{"links absent", "heartbeat: {links: ~}", map[string]string{"heartbeat.links": "at least one link"}},
		{"link interface missing", "heartbeat: {links: [{peers: [198.51.100.2]}]}", map[string]string{"heartbeat.links[0].interface": "interface name required"}},
		{"link interface slash", "heartbeat: {links: [{interface: eth/0, peers: [198.51.100.2]}]}", map[string]string{"heartbeat.links[0].interface": `contains '/'`}},
		{"link interface colon", "heartbeat: {links: [{interface: 'eth0:1', peers: [198.51.100.2]}]}", map[string]string{"heartbeat.links[0].interface": `contains ':'`}},
		{"link interface space", "heartbeat: {links: [{interface: 'eth 0', peers: [198.51.100.2]}]}", map[string]string{"heartbeat.links[0].interface": "whitespace"}},
		{"link interface dot", "heartbeat: {links: [{interface: '.', peers: [198.51.100.2]}]}", map[string]string{"heartbeat.links[0].interface": "not a valid interface name"}},
		{"link interface dotdot", "heartbeat: {links: [{interface: '..', peers: [198.51.100.2]}]}", map[string]string{"heartbeat.links[0].interface": "not a valid interface name"}},
		{"link interface too long", "heartbeat: {links: [{interface: abcdefghijklmnop, peers: [198.51.100.2]}]}", map[string]string{"heartbeat.links[0].interface": "longer than 15"}},
		{"link interface 15 characters", "heartbeat: {links: [{interface: abcdefghijklmno, peers: [198.51.100.2]}]}", nil},
		{"link interfaces repeated", "heartbeat: {links: [{interface: ha, peers: [198.51.100.2]}, {interface: ha, peers: [198.51.100.3]}]}", map[string]string{"heartbeat.links[1].interface": "is already heartbeat.links[0]"}},
		{"link priority", "heartbeat: {links: [{interface: ha, priority: 300, peers: [198.51.100.2]}]}", map[string]string{"heartbeat.links[0].priority": "must be between 0 and 255, got 300"}},
		{"link without peers", "heartbeat: {links: [{interface: ha}]}", map[string]string{"heartbeat.links[0].peers": "at least one peer"}},
		{"links list different numbers of peers", "heartbeat: {links: [{interface: ha1, peers: [198.51.100.2, 198.51.100.3]}, {interface: ha2, peers: [203.0.113.2]}]}",
			map[string]string{"heartbeat.links[1].peers": "lists 1 peers, heartbeat.links[0] lists 2"}},
		{"links list the same number of peers", "heartbeat: {links: [{interface: ha1, peers: [198.51.100.2]}, {interface: ha2, peers: [203.0.113.2]}]}", nil},

		// Paths the daemon opens from / under systemd.
		{"relative key_file", "key_file: cluster.key", map[string]string{"key_file": `"cluster.key" is a relative path`}},
		{"relative state_dir", "state_dir: var/lib/hagate", map[string]string{"state_dir": "relative path"}},
		{"relative control_socket", "control_socket: hagate.sock", map[string]string{"control_socket": "relative path"}},
		{"relative notify", "notify: ./notify.sh", map[string]string{"notify": "relative path"}},
		{"absolute paths", "{key_file: /etc/k, state_dir: /var/lib/h, control_socket: /run/h.sock, notify: /etc/n.sh}", nil},

		// Split brain.
		{"quorum with two members and no witness", "split_brain: {quorum: true}", map[string]string{"split_brain.quorum": "never becomes primary"}},
		{"quorum with two members and a witness", "split_brain: {quorum: true, witness: 192.0.2.9}", nil},
		{"quorum with three members", "split_brain: {quorum: true}\nheartbeat: {links: [{interface: ha, peers: [198.51.100.2, 198.51.100.3]}]}", nil},
		{"witness without quorum", "split_brain: {witness: 192.0.2.9}", map[string]string{"split_brain.witness": "no effect without split_brain.quorum"}},
		{"peers repeated", "heartbeat: {links: [{interface: ha, peers: [198.51.100.2, 198.51.100.2]}]}", map[string]string{"heartbeat.links[0].peers[1]": "is already heartbeat.links[0].peers[0]"}},
		{"peer multicast", "heartbeat: {links: [{interface: ha, peers: [224.0.0.18]}]}", map[string]string{"heartbeat.links[0].peers[0]": "multicast"}},
		{"peer unspecified", "heartbeat: {links: [{interface: ha, peers: ['::']}]}", map[string]string{"heartbeat.links[0].peers[0]": "unspecified"}},
		{"peer broadcast", "heartbeat: {links: [{interface: ha, peers: [255.255.255.255]}]}", map[string]string{"heartbeat.links[0].peers[0]": "broadcast"}},
		{"peer with zone", "heartbeat: {links: [{interface: ha, peers: ['fe80::2%ha']}]}", map[string]string{"heartbeat.links[0].peers[0]": "has a zone"}},
		{"peer IPv4-mapped", "heartbeat: {links: [{interface: ha, peers: ['::ffff:198.51.100.2']}]}", map[string]string{"heartbeat.links[0].peers[0]": "write it as 198.51.100.2"}},
		{"peer link-local IPv6", "heartbeat: {links: [{interface: ha, peers: ['fe80::2']}]}", nil},
		{"same peer on two links", "heartbeat: {links: [{interface: ha1, peers: [198.51.100.2]}, {interface: ha2, peers: [198.51.100.2]}]}", nil},
		{"hello_holddown below dead interval", "hello_holddown: 1s", map[string]string{"hello_holddown": "must be at least the dead interval (heartbeat.interval x heartbeat.lost_threshold = 1.2s), got 1s"}},
		{"hello_holddown equal to dead interval", "hello_holddown: 1200ms", nil},
		{"hello_holddown default follows long dead interval", "heartbeat: {interval: 10s, lost_threshold: 60}", nil},

		// Security.
		{"key_file required", "key_file: ~", map[string]string{"key_file": "required while security.authentication is true"}},
		{"no key without authentication", "key_file: ~\nsecurity: {authentication: false}", nil},
		{"encryption without authentication", "security: {authentication: false, encryption: true}", map[string]string{"security.encryption": "cannot be true while security.authentication is false"}},
		{"negative clock skew", "security: {max_clock_skew: -1s}", map[string]string{"security.max_clock_skew": "must not be negative"}},
		{"passphrase", "security: {passphrase: true}", nil},
		{"passphrase without authentication", "key_file: ~\nsecurity: {authentication: false, passphrase: true}", map[string]string{"security.passphrase": "cannot be true while security.authentication is false"}},

		// Virtual IPs and monitor.
		{"vip interface", "virtual_ips: [{interface: 'a/b', address: 192.0.2.1/24}]", map[string]string{"virtual_ips[0].interface": "contains '/'"}},
		{"vip interface missing", "virtual_ips: [{address: 192.0.2.1/24}]", map[string]string{"virtual_ips[0].interface": "required"}},
		{"vip address missing", "virtual_ips: [{interface: lan}]", map[string]string{"virtual_ips[0].address": "required"}},
		{"vip network address", "virtual_ips: [{interface: lan, address: 192.0.2.0/24}]", map[string]string{"virtual_ips[0].address": "192.0.2.0 is the network address of 192.0.2.0/24"}},
		{"vip broadcast address", "virtual_ips: [{interface: lan, address: 192.0.2.255/24}]", map[string]string{"virtual_ips[0].address": "is the broadcast address of 192.0.2.0/24"}},
		{"vip IPv6 network address", "virtual_ips: [{interface: lan, address: '2001:db8::/64'}]", map[string]string{"virtual_ips[0].address": "network address"}},
		{"vip /31 and /32 take any address", "virtual_ips: [{interface: a, address: 192.0.2.0/31}, {interface: b, address: 192.0.2.3/31}, {interface: c, address: 192.0.2.8/32}, {interface: d, address: '2001:db8::/127'}]", nil},
		{"vip multicast", "virtual_ips: [{interface: lan, address: 224.0.0.1/24}]", map[string]string{"virtual_ips[0].address": "multicast"}},
		{"vip repeated", "virtual_ips: [{interface: lan, address: 192.0.2.1/24}, {interface: wan, address: 192.0.2.1/25}]", map[string]string{"virtual_ips[1].address": "is already virtual_ips[0]"}},
		{"monitor name", "monitor: [lan, 'w an']", map[string]string{"monitor[1]": "whitespace"}},
		{"monitor repeated", "monitor: [lan, wan, lan]", map[string]string{"monitor[2]": `"lan" is listed twice`}},
		{"virtual_mac", "virtual_mac: true\nvirtual_ips: [{interface: lan, address: 192.0.2.1/24}, {interface: lan, address: 192.0.2.2/24}, {interface: wan, address: 203.0.113.1/24}]", nil},
		{"virtual_mac interfaces", "virtual_mac: true\nvirtual_ips: [" + vipsOnInterfaces(257) + "]", map[string]string{"virtual_mac": "on 257 interfaces"}},
		{"fence interfaces", "fence: {interfaces: [lan, dmz]}", nil},
		{"fence over a heartbeat link", "fence: {interfaces: [lan, ha]}", map[string]string{"fence.interfaces[1]": `"ha" is a heartbeat link`}},
		{"fence interfaces repeated", "fence: {interfaces: [lan, lan]}", map[string]string{"fence.interfaces[1]": "listed twice"}},
		{"fence off", "fence: {enabled: false}", nil},
		{"link_failed_signal", "link_failed_signal: true\nlink_failed_signal_duration: 2s", nil},
		{"link_failed_signal_duration short", "link_failed_signal_duration: 1ms", map[string]string{"link_failed_signal_duration": "between 10ms and 10s"}},
		{"link_failed_signal_duration long", "link_failed_signal_duration: 11s", map[string]string{"link_failed_signal_duration": "between 10ms and 10s"}},
		{"transparent", "transparent: {bridge: br0, ports: [lan, wan]}", nil},
		{"transparent without ports", "transparent: {bridge: br0}", map[string]string{"transparent.ports": "at least one port"}},
		{"transparent ports without bridge", "transparent: {ports: [lan]}", map[string]string{"transparent.bridge": "required"}},
		{"transparent port is an HA link", "transparent: {bridge: br0, ports: [lan, ha]}", map[string]string{"transparent.ports[1]": "heartbeat link"}},
		{"transparent port is the bridge", "transparent: {bridge: br0, ports: [br0]}", map[string]string{"transparent.ports[0]": "the bridge itself"}},
		{"gratuitous_arp count", "gratuitous_arp: {count: 101}", map[string]string{"gratuitous_arp.count": "must be between 0 and 100, got 101"}},
		{"gratuitous_arp count negative", "gratuitous_arp: {count: -1}", map[string]string{"gratuitous_arp.count": "between 0 and 100"}},
		{"gratuitous_arp interval short", "gratuitous_arp: {interval: 5ms}", map[string]string{"gratuitous_arp.interval": "must be between 10ms and 1m0s, got 5ms"}},
		{"gratuitous_arp interval long", "gratuitous_arp: {interval: 61s}", map[string]string{"gratuitous_arp.interval": "between 10ms and 1m0s"}},
		{"gratuitous_arp FGCP-like", "gratuitous_arp: {count: 100, interval: 8s}", nil},

		// Session pickup.
		{"pickup link not a heartbeat link", "session_pickup: {links: [lan]}", map[string]string{"session_pickup.links[0]": `"lan" is not a heartbeat link interface`}},
		{"pickup link repeated", "session_pickup: {links: [ha, ha]}", map[string]string{"session_pickup.links[1]": "listed twice"}},
		{"pickup delay negative", "session_pickup: {delay: -1s}", map[string]string{"session_pickup.delay": "must not be negative"}},
		{"dump_interval negative", "session_pickup: {dump_interval: -1s}", map[string]string{"session_pickup.dump_interval": "must not be negative, got -1s"}},
		{"dump_interval off", "session_pickup: {dump_interval: 0}", nil},
		{"dump_interval set", "session_pickup: {dump_interval: 30s}", nil},
		{"pickup port", "session_pickup: {port: 70000}", map[string]string{"session_pickup.port": "between 1 and 65535"}},
		{"max_sessions zero", "session_pickup: {max_sessions: 0}", map[string]string{"session_pickup.max_sessions": "must be between 1 and 100000000, got 0"}},
		{"max_sessions too big", "session_pickup: {max_sessions: 100000001}", map[string]string{"session_pickup.max_sessions": "between 1 and 100000000"}},
		{"backend", "session_pickup: {backend: disk}", map[string]string{"session_pickup.backend": `must be kernel or memory, got "disk"`}},
		{"backend memory", "session_pickup: {enabled: true, backend: memory, connectionless: true, expectation: true, delay: 30s}", nil},
		{"mark mask zero", "session_pickup: {filter: {marks: [{value: 0, mask: 0}]}}", map[string]string{"session_pickup.filter.marks[0].mask": "must not be 0"}},
		{"mark value outside mask", "session_pickup: {filter: {marks: [{value: 0x100, mask: 0xff}]}}", map[string]string{"session_pickup.filter.marks[0].value": "0x100 has bits outside mask 0xff"}},

		// Split brain and ping servers.
		{"witness multicast", "split_brain: {quorum: true, witness: 224.0.0.1}", map[string]string{"split_brain.witness": "multicast"}},
		{"witness", "split_brain: {quorum: true, witness: 192.0.2.9}", nil},
		{"ping server not monitored", "ping_servers: [{interface: wan, target: 203.0.113.254}]", map[string]string{"ping_servers[0].interface": `"wan" is not in monitor`}},
		{"ping server", "monitor: [wan]\nping_servers: [{interface: wan, target: 203.0.113.254, interval: 100ms, failures: 100}]", nil},
		{"ping server target missing", "monitor: [wan]\nping_servers: [{interface: wan}]", map[string]string{"ping_servers[0].target": "address required"}},
		{"ping server target broadcast", "monitor: [wan]\nping_servers: [{interface: wan, target: 255.255.255.255}]", map[string]string{"ping_servers[0].target": "broadcast"}},
		{"ping server interval", "monitor: [wan]\nping_servers: [{interface: wan, target: 203.0.113.254, interval: 50ms}]", map[string]string{"ping_servers[0].interval": "must be between 100ms and 1m0s, got 50ms"}},
		{"ping server failures", "monitor: [wan]\nping_servers: [{interface: wan, target: 203.0.113.254, failures: 0}]", map[string]string{"ping_servers[0].failures": "must be between 1 and 100, got 0"}},
		{"ping server priority", "monitor: [wan]\nping_servers: [{interface: wan, target: 203.0.113.254, priority: 51}]", map[string]string{"ping_servers[0].priority": "must be between 1 and 50, got 51"}},
		{"ping threshold above the priorities", "monitor: [wan]\nping_failover_threshold: 6\nping_servers: [{interface: wan, target: 203.0.113.254, priority: 2}, {interface: wan, target: 203.0.113.253, priority: 3}]", map[string]string{"ping_failover_threshold": "6 is above the sum of the ping servers' priorities (5)"}},
		{"ping threshold reachable", "monitor: [wan]\nping_failover_threshold: 5\nping_servers: [{interface: wan, target: 203.0.113.254, priority: 2}, {interface: wan, target: 203.0.113.253, priority: 3}]", nil},
		{"ping threshold without servers", "ping_failover_threshold: 1", map[string]string{"ping_failover_threshold": "above the sum"}},
		{"check", "checks: [{name: proxy, command: [/usr/bin/true, -x], interval: 1s, timeout: 500ms, fall: 3, rise: 2, weight: -20}]", nil},
		{"check relative command", "checks: [{name: proxy, command: [true]}]", map[string]string{"checks[0].command": "relative path"}},
		{"check no command", "checks: [{name: proxy}]", map[string]string{"checks[0].command": "required"}},
		{"check no name", "checks: [{command: [/bin/true]}]", map[string]string{"checks[0].name": "required"}},
		{"check repeated name", "checks: [{name: a, command: [/bin/true]}, {name: a, command: [/bin/true]}]", map[string]string{"checks[1].name": "also the name of checks[0]"}},
		{"check timeout above interval", "checks: [{name: a, command: [/bin/true], interval: 1s, timeout: 2s}]", map[string]string{"checks[0].timeout": "must be between"}},
		{"check weight", "checks: [{name: a, command: [/bin/true], weight: -300}]", map[string]string{"checks[0].weight": "must be between -253 and 253"}},
		{"ping server repeated", "monitor: [wan]\nping_servers: [{interface: wan, target: 203.0.113.254}, {interface: wan, target: 203.0.113.254}]", map[string]string{"ping_servers[1]": "same interface and target as ping_servers[0]"}},

		// Several problems at once: all reported, none repeated.
		{"all problems reported", "priority: 300\ngroup_id: 2000\nheartbeat: {interval: 1, links: [{interface: ha, priority: 300, peers: [198.51.100.2, nope]}]}\nvirtual_ips: [{interface: lan, address: 192.0.2.1}]\nfoo: 1", map[string]string{
			"priority":                    "between 0 and 255",
			"group_id":                    "between 0 and 1023",
			"heartbeat.interval":          "bare number",
			"heartbeat.links[0].priority": "between 0 and 255",
			"heartbeat.links[0].peers[1]": "not an IP address",
			"virtual_ips[0].address":      "is not a prefix",
			"foo":                         "unknown key",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := overlay(t, tt.override)
			c, err := Parse([]byte(doc))
			got := map[string]string{}
			for _, e := range errorsOf(t, err) {
				if _, dup := got[e.Key]; dup {
					t.Errorf("key %q reported twice: %v", e.Key, err)
				}
				got[e.Key] = e.Msg
				if e.Key == "" {
					t.Errorf("error without a key: %v", e)
				}
			}
			if (err == nil) != (c != nil) {
				t.Errorf("Parse returned config %v with error %v: want exactly one", c != nil, err)
			}
			gotKeys, wantKeys := map[string]bool{}, map[string]bool{}
			for k := range got {
				gotKeys[k] = true
			}
			for k := range tt.want {
				wantKeys[k] = true
			}
			if diff := cmp.Diff(wantKeys, gotKeys); diff != "" {
				t.Fatalf("error keys (-want +got):\n%s\ndocument:\n%s\nerror: %v", diff, doc, err)
			}
			for k, sub := range tt.want {
				if !strings.Contains(got[k], sub) {
					t.Errorf("%s: message %q does not contain %q", k, got[k], sub)
				}
			}
		})
	}
}

// vipsOnInterfaces returns n flow-style virtual IPs, each on its own interface.
func vipsOnInterfaces(n int) string {
	var parts []string
	for i := range n {
		parts = append(parts, fmt.Sprintf("{interface: v%d, address: '2001:db8:%x::1/64'}", i, i))
	}
	return strings.Join(parts, ", ")
}

func TestDocumentErrors(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		key  string
		line int
		msg  string
	}{
		{"unknown key names its line", "node_id: gw1\nkey_file: /k\nheartbeat:\n  links:\n    - interface: ha\n      peers: [198.51.100.2]\nheartbeet: {}\n", "heartbeet", 7, "unknown key"},
		{"repeated key", minimal + "node_id: gw2\n", "node_id", 7, "key repeated (first at line 1)"},
		{"two documents", minimal + "---\nnode_id: gw2\n", "", 7, "more than one YAML document"},
		{"top level list", "- a\n- b\n", "", 0, "the top level must be a mapping of keys, got a list"},
		{"top level scalar", "hello\n", "", 0, "the top level must be a mapping of keys"},
		{"syntax error", "node_id: [gw1\n", "", 1, "invalid YAML"},
		{"tab indentation", "heartbeat:\n\tinterval: 1s\n", "", 2, "invalid YAML"},
		{"bad alias", "node_id: *nope\n", "", 0, "unknown anchor"},
		{"recursive alias", "heartbeat: &h\n  links: *h\n", "heartbeat.links", 2, "must be a list, got a mapping"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc))
			for _, e := range errorsOf(t, err) {
				if e.Key == tt.key && strings.Contains(e.Msg, tt.msg) {
					if tt.line != 0 && e.Line != tt.line {
						t.Errorf("%v: line %d, want %d", e, e.Line, tt.line)
					}
					return
				}
			}
			t.Errorf("Parse(%q) = %v; want an error for key %q containing %q", tt.doc, err, tt.key, tt.msg)
		})
	}
}

func TestEmptyDocument(t *testing.T) {
	for _, doc := range []string{"", "\n", "# nothing\n", "---\n", "~\n"} {
		_, err := Parse([]byte(doc))
		got := map[string]bool{}
		for _, e := range errorsOf(t, err) {
			got[e.Key] = true
		}
		want := map[string]bool{"node_id": true, "key_file": true, "heartbeat.links": true}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Parse(%q) error keys (-want +got):\n%s", doc, diff)
		}
	}
}

func TestErrorCap(t *testing.T) {
	var b strings.Builder
	b.WriteString(minimal)
	for i := range 200 {
		b.WriteString("bogus")
		b.WriteString(strings.Repeat("x", i))
		b.WriteString(": 1\n")
	}
	errs := errorsOf(t, func() error { _, err := Parse([]byte(b.String())); return err }())
	if len(errs) != maxErrors+1 || !strings.Contains(errs[maxErrors].Msg, "and 150 more problems") {
		t.Errorf("got %d errors, last %v; want %d and a count of the rest", len(errs), errs[len(errs)-1], maxErrors+1)
	}
}

func TestAliasBomb(t *testing.T) {
	// 200 aliases to a link with 1000 peers: a 20 KB file that expands to
	// 200,000 values. The decoder must stop at its budget.
	var b strings.Builder
	b.WriteString("node_id: gw1\nkey_file: /k\npeers: &p [")
	for i := range 1000 {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "198.51.%d.%d", 100+i/250, 1+i%250)
	}
	b.WriteString("]\nheartbeat:\n  links:\n    - &l {interface: ha, peers: *p}\n")
	for range 199 {
		b.WriteString("    - *l\n")
	}
	_, err := Parse([]byte(b.String()))
	if err == nil || !strings.Contains(err.Error(), "document too large") {
		t.Errorf("Parse of an alias bomb = %.300v; want a document too large error", err)
	}
}
