package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// contractExample is the configuration other packages are written against.
const contractExample = `node_id: gw1
group_id: 7
priority: 200
override: false
uptime_margin: 300s
key_file: /etc/hagate/cluster.key
control_socket: /run/hagate/hagate.sock
metrics_listen: 127.0.0.1:9703
notify: /etc/hagate/notify.sh
heartbeat:
  interval: 200ms
  lost_threshold: 6
  port: 703
  links:
    - interface: ha
      priority: 100
      peers: [198.51.100.3, 198.51.100.4]
monitor: [lan, wan]
virtual_ips:
  - interface: lan
    address: 192.0.2.1/24
  - interface: wan
    address: 203.0.113.1/24
gratuitous_arp:
  count: 5
  interval: 1s
`

// minimal is the smallest valid configuration.
const minimal = `node_id: gw1
key_file: /etc/hagate/cluster.key
heartbeat:
  links:
    - interface: ha
      peers: [198.51.100.2]
`

var cmpOpts = []cmp.Option{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
	cmpopts.EquateEmpty(),
}

func mustParse(t *testing.T, doc string) *Config {
	t.Helper()
	c, err := Parse([]byte(doc))
	if err != nil {
		t.Fatalf("Parse:\n%s\nerror:\n%v", doc, err)
	}
	return c
}

// errorsOf flattens the joined errors Parse returns.
func errorsOf(t *testing.T, err error) []*Error {
	t.Helper()
	var leaves []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		leaves = j.Unwrap()
	} else if err != nil {
		leaves = []error{err}
	}
	var out []*Error
	for _, e := range leaves {
		var ce *Error
		if !errors.As(e, &ce) {
			t.Fatalf("error %v (%T) is not a *config.Error", e, e)
		}
		out = append(out, ce)
	}
	return out
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func TestContractExample(t *testing.T) {
	got := mustParse(t, contractExample)
	want := &Config{
		NodeID:        "gw1",
		GroupID:       7,
		Priority:      200,
		UptimeMargin:  300 * time.Second,
		HelloHolddown: 5 * time.Second, // max(5s, 2 x 1.2s)
		KeyFile:       "/etc/hagate/cluster.key",
		ControlSocket: "/run/hagate/hagate.sock",
		StateDir:      "/var/lib/hagate",
		MetricsListen: "127.0.0.1:9703",
		Notify:        "/etc/hagate/notify.sh",
		LogLevel:      "info",
		LogFormat:     "text",
		Heartbeat: Heartbeat{
			Interval:      200 * time.Millisecond,
			LostThreshold: 6,
			Port:          703,
			Links: []HeartbeatLink{{
				Interface: "ha",
				Priority:  100,
				Peers:     addrs("198.51.100.3", "198.51.100.4"),
			}},
		},
		Monitor: []string{"lan", "wan"},
		VirtualIPs: []VirtualIP{
			{Interface: "lan", Address: netip.MustParsePrefix("192.0.2.1/24")},
			{Interface: "wan", Address: netip.MustParsePrefix("203.0.113.1/24")},
		},
		GratuitousARP: GratuitousARP{Enabled: ptr(true), Count: 5, Interval: time.Second},
		Security: Security{
			Authentication: ptr(true),
			Encryption:     ptr(true),
			MaxClockSkew:   60 * time.Second, MinSyncVersion: 3,
		},
		SessionPickup: SessionPickup{
			NAT:         ptr(true),
			Port:        703,
			Links:       []string{"ha"},
			MaxSessions: 2_000_000,
			Backend:     "kernel",
			AntiEntropy: 5 * time.Second, MaxHeldBack: 100_000,
		},
		PingFlipTimeout:          60 * time.Minute,
		PingSlaveForceReset:      ptr(true),
		ConfigSync:               defaultConfigSync,
		VirtualMAC:               true,
		Fence:                    Fence{Enabled: true},
		LinkFailedSignalDuration: time.Second,
	}
	if diff := cmp.Diff(want, got, cmpOpts...); diff != "" {
		t.Errorf("Parse(contract example) mismatch (-want +got):\n%s", diff)
	}
	if got.ClusterSize() != 3 {
		t.Errorf("ClusterSize() = %d, want 3", got.ClusterSize())
	}
	if got.DeadInterval() != 1200*time.Millisecond {
		t.Errorf("DeadInterval() = %v, want 1.2s", got.DeadInterval())
	}
}

func TestDefaults(t *testing.T) {
	got := mustParse(t, minimal+`
session_pickup:
  filter:
    marks: [{value: 1}]
ping_servers:
  - {interface: ha, target: 192.0.2.254}
monitor: [ha]
`)
	want := &Config{
		NodeID:        "gw1",
		Priority:      128,
		UptimeMargin:  300 * time.Second,
		HelloHolddown: 5 * time.Second,
		KeyFile:       "/etc/hagate/cluster.key",
		ControlSocket: "/run/hagate/hagate.sock",
		StateDir:      "/var/lib/hagate",
		LogLevel:      "info",
		LogFormat:     "text",
		Heartbeat: Heartbeat{
			Interval:      200 * time.Millisecond,
			LostThreshold: 6,
			Port:          703,
			Links:         []HeartbeatLink{{Interface: "ha", Priority: 100, Peers: addrs("198.51.100.2")}},
		},
		Monitor:       []string{"ha"},
		GratuitousARP: GratuitousARP{Enabled: ptr(true), Count: 5, Interval: time.Second},
		Security:      Security{Authentication: ptr(true), Encryption: ptr(true), MaxClockSkew: time.Minute, MinSyncVersion: 3},
		SessionPickup: SessionPickup{
			NAT:         ptr(true),
			Port:        703,
			Links:       []string{"ha"},
			MaxSessions: 2_000_000,
			Backend:     "kernel",
			AntiEntropy: 5 * time.Second, MaxHeldBack: 100_000,
			Filter: SessionFilter{Marks: []MarkMatch{{Value: 1, Mask: 0xffffffff}}},
		},
		PingServers: []PingServer{{
			Interface: "ha",
			Target:    netip.MustParseAddr("192.0.2.254"),
			Interval:  time.Second,
			Failures:  5,
			Priority:  1,
		}},
		PingFlipTimeout:          time.Hour,
		PingSlaveForceReset:      ptr(true),
		ConfigSync:               defaultConfigSync,
		VirtualMAC:               true,
		Fence:                    Fence{Enabled: true},
		LinkFailedSignalDuration: time.Second,
	}
	if diff := cmp.Diff(want, got, cmpOpts...); diff != "" {
		t.Errorf("defaults mismatch (-want +got):\n%s", diff)
	}
}

func TestDerivedDefaults(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want func(*Config) any
		val  any
	}{
		{
			"hello_holddown is twice the dead interval above 5s",
			"node_id: a\nkey_file: /k\nheartbeat: {interval: 1s, lost_threshold: 10, links: [{interface: ha, peers: [198.51.100.2]}]}\n",
			func(c *Config) any { return c.HelloHolddown }, 20 * time.Second,
		},
		{
			"hello_holddown explicit",
			minimal + "hello_holddown: 2s\n",
			func(c *Config) any { return c.HelloHolddown }, 2 * time.Second,
		},
		{
			"encryption follows authentication false",
			"node_id: a\nsecurity: {authentication: false}\nheartbeat: {links: [{interface: ha, peers: [198.51.100.2]}]}\n",
			func(c *Config) any { return [2]bool{c.AuthEnabled(), c.EncryptionEnabled()} }, [2]bool{false, false},
		},
		{
			"encryption off, authentication on",
			minimal + "security: {encryption: false}\n",
			func(c *Config) any { return [2]bool{c.AuthEnabled(), c.EncryptionEnabled()} }, [2]bool{true, false},
		},
		{
			"pickup links default to every heartbeat interface once",
			"node_id: a\nkey_file: /k\nheartbeat: {links: [{interface: ha1, peers: [198.51.100.2]}, {interface: ha2, peers: [203.0.113.2]}]}\n",
			func(c *Config) any { return c.SessionPickup.Links }, []string{"ha1", "ha2"},
		},
		{
			"pickup links explicit",
			"node_id: a\nkey_file: /k\nheartbeat: {links: [{interface: ha1, peers: [198.51.100.2]}, {interface: ha2, peers: [203.0.113.2]}]}\nsession_pickup: {links: [ha2]}\n",
			func(c *Config) any { return c.SessionPickup.Links }, []string{"ha2"},
		},
		{
			"pickup nat false",
			minimal + "session_pickup: {nat: false}\n",
			func(c *Config) any { return c.PickupNAT() }, false,
		},
		{
			"null value means absent",
			minimal + "priority: ~\nlog_level: null\n",
			func(c *Config) any { return []any{c.Priority, c.LogLevel} }, []any{128, "info"},
		},
		{
			"explicit zeros stay",
			`node_id: gw1
key_file: /k
priority: 0
uptime_margin: 0
gratuitous_arp: {count: 0}
security: {max_clock_skew: 0s}
session_pickup: {delay: 0}
ping_flip_timeout: 0s
heartbeat:
  links:
    - interface: ha
      priority: 0
      peers: [198.51.100.2]
`,
			func(c *Config) any {
				return []any{c.Priority, c.UptimeMargin, c.GratuitousARP.Count, c.Security.MaxClockSkew,
					c.SessionPickup.Delay, c.PingFlipTimeout, c.Heartbeat.Links[0].Priority}
			},
			[]any{0, time.Duration(0), 0, time.Duration(0), time.Duration(0), time.Duration(0), 0},
		},
		{
			// Unset, 0 and a period are three behaviours: unset must not
			// read as 0 (no periodic dump at all).
			"dump_interval unset",
			minimal,
			func(c *Config) any { return c.SessionPickup.DumpInterval }, (*time.Duration)(nil),
		},
		{
			"dump_interval 0 stays",
			minimal + "session_pickup: {dump_interval: 0}\n",
			func(c *Config) any { return c.SessionPickup.DumpInterval }, ptr(time.Duration(0)),
		},
		{
			"dump_interval set",
			minimal + "session_pickup: {dump_interval: 45s}\n",
			func(c *Config) any { return c.SessionPickup.DumpInterval }, ptr(45 * time.Second),
		},
		{
			"dump_interval null means unset",
			minimal + "session_pickup: {dump_interval: ~}\n",
			func(c *Config) any { return c.SessionPickup.DumpInterval }, (*time.Duration)(nil),
		},
		{
			"cluster size counts the peers of a link",
			"node_id: a\nkey_file: /k\nheartbeat: {links: [{interface: ha1, peers: [198.51.100.2, 198.51.100.3, 198.51.100.4]}, {interface: ha2, peers: [203.0.113.2, 203.0.113.3, 203.0.113.4]}]}\n",
			func(c *Config) any { return c.ClusterSize() }, 4,
		},
		{
			"aliases are followed",
			"node_id: a\nkey_file: /k\nheartbeat:\n  links:\n    - {interface: ha1, peers: &p [198.51.100.2, 198.51.100.3]}\n    - {interface: ha2, peers: *p}\n",
			func(c *Config) any { return c.Heartbeat.Links[1].Peers }, addrs("198.51.100.2", "198.51.100.3"),
		},
		{
			"marks in hex, zones, filter prefixes",
			minimal + "session_pickup: {filter: {zones: [0, 65535], marks: [{value: 0x100, mask: 0xff00}], addresses: [192.0.2.0/24, 2001:db8::/32]}}\n",
			func(c *Config) any { return c.SessionPickup.Filter },
			SessionFilter{
				Zones:     []uint16{0, 65535},
				Marks:     []MarkMatch{{Value: 0x100, Mask: 0xff00}},
				Addresses: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/32")},
			},
		},
		{
			"IPv6 everywhere",
			"node_id: a\nkey_file: /k\nheartbeat: {links: [{interface: ha, peers: ['2001:db8::2']}]}\nvirtual_ips: [{interface: lan, address: '2001:db8:1::1/64'}]\nsplit_brain: {quorum: true, witness: '2001:db8:2::1'}\n",
			func(c *Config) any {
				return []any{c.Heartbeat.Links[0].Peers[0], c.VirtualIPs[0].Address, c.SplitBrain.Witness}
			},
			[]any{netip.MustParseAddr("2001:db8::2"), netip.MustParsePrefix("2001:db8:1::1/64"), netip.MustParseAddr("2001:db8:2::1")},
		},
		{
			"comments are ignored",
			minimal + "# trailing comment\n",
			func(c *Config) any { return c.NodeID }, "gw1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustParse(t, tt.doc)
			if diff := cmp.Diff(tt.val, tt.want(c), cmpOpts...); diff != "" {
				t.Errorf("mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestHelpersOnZeroConfig(t *testing.T) {
	var c Config
	if !c.AuthEnabled() || !c.EncryptionEnabled() || !c.PickupNAT() {
		t.Errorf("nil pointers must read as the defaults (true): auth %v enc %v nat %v",
			c.AuthEnabled(), c.EncryptionEnabled(), c.PickupNAT())
	}
	if c.ClusterSize() != 1 {
		t.Errorf("ClusterSize() of no links = %d, want 1", c.ClusterSize())
	}
	c.Security.Authentication = ptr(false)
	c.Security.Encryption = ptr(true)
	if c.EncryptionEnabled() {
		t.Error("EncryptionEnabled() must be false without authentication")
	}
}

func TestValidateBuiltInCode(t *testing.T) {
	c := mustParse(t, minimal)
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate() of a parsed config: %v", err)
	}
	c.Heartbeat.Links[0].Priority = 256
	c.NodeID = ""
	got := map[string]bool{}
	for _, e := range errorsOf(t, c.Validate()) {
		got[e.Key] = true
		if e.Line != 0 {
			t.Errorf("%v: line %d, want 0 for a config built in code", e, e.Line)
		}
	}
	want := map[string]bool{"node_id": true, "heartbeat.links[0].priority": true}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("error keys (-want +got):\n%s", diff)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte(contractExample), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(good)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.NodeID != "gw1" {
		t.Errorf("NodeID = %q", c.NodeID)
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(strings.Replace(contractExample, "priority: 200", "priority: 300", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(bad)
	var ce *Error
	if !errors.As(err, &ce) || ce.Key != "priority" || ce.Line != 3 {
		t.Errorf("Load(bad) = %v, want an *Error for priority at line 3", err)
	}
	if err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("Load(bad) error %q does not name the file", err)
	}

	if _, err := Load(filepath.Join(dir, "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want ErrNotExist", err)
	}

	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte(contractExample+"#"+strings.Repeat("x", MaxSize)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("Load(big) = %v, want a size error", err)
	}
}

// TestExampleFile keeps examples/hagate.yaml valid.
func TestExampleFile(t *testing.T) {
	c, err := Load(filepath.Join("..", "..", "examples", "hagate.yaml"))
	if err != nil {
		t.Fatalf("examples/hagate.yaml: %v", err)
	}
	if c.ClusterSize() != 3 {
		t.Errorf("examples/hagate.yaml describes %d members, want 3", c.ClusterSize())
	}
}

// TestDocsNameEveryKey keeps docs/config.md complete: every key path of
// Config must appear in it.
func TestDocsNameEveryKey(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "config.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range keyPaths(reflect.TypeFor[Config](), "") {
		if !strings.Contains(string(doc), "`"+key+"`") {
			t.Errorf("docs/config.md does not document `%s`", key)
		}
	}
}

// keyPaths lists the dotted key paths of a struct type, descending into
// structs and lists of structs ("heartbeat.links[].peers").
func keyPaths(t reflect.Type, prefix string) []string {
	var out []string
	for name, i := range fieldsOf(t) {
		key := name
		if prefix != "" {
			key = prefix + "." + name
		}
		ft := t.Field(i).Type
		out = append(out, key)
		if ft.Kind() == reflect.Slice {
			ft = ft.Elem()
			key += "[]"
		}
		if ft.Kind() == reflect.Struct && ft != addrType && ft != prefixType {
			out = append(out, keyPaths(ft, key)...)
		}
	}
	return out
}
