package config

import (
	"strings"
	"testing"
)

var defaultConfigSync = ConfigSync{Parts: []string{"ruleset"}, MaxSize: 4 << 20, Port: 704}

func TestConfigSyncRefused(t *testing.T) {
	for _, tc := range []struct{ yaml, key string }{
		{"config_sync: {parts: [routes]}", "config_sync.parts[0]"},
		{"config_sync: {max_size: 10}", "config_sync.max_size"},
		{"config_sync: {port: 0}", "config_sync.port"},
		{"config_sync: {route_tables: [0]}", "config_sync.route_tables[0]"},
		{"config_sync: {exclude: {tables: [a b c]}}", "config_sync.exclude.tables[0]"},
		{"config_sync: {exclude: {tables: [foo bar]}}", "config_sync.exclude.tables[0]"},
		{"config_sync: {exclude: {chains: [filter]}}", "config_sync.exclude.chains[0]"},
		{"config_sync: {exclude: {interfaces: [this-name-is-far-too-long]}}", "config_sync.exclude.interfaces[0]"},
	} {
		_, err := Parse([]byte(minimal + tc.yaml + "\n"))
		if err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%s: got %v, want an error naming %s", tc.yaml, err, tc.key)
		}
	}
	if _, err := Parse([]byte(minimal + "config_sync: {enabled: true, exclude: {tables: [inet mgmt, local], chains: [filter ssh, ip nat pre], interfaces: [ha]}, route_tables: [100]}\n")); err != nil {
		t.Fatal(err)
	}
}

// The cluster-wide part leaves out what is each member's own: two members
// of one cluster have the same, and a shared setting changes it.
func TestClusterWide(t *testing.T) {
	gw1 := mustParse(t, minimal)
	gw2 := mustParse(t, strings.ReplaceAll(strings.ReplaceAll(minimal, "gw1", "gw2"), "198.51.100.2", "198.51.100.1")+"priority: 200\nlog_level: debug\n")
	a, err := gw1.ClusterWide()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := gw2.ClusterWide()
	if string(a) != string(b) {
		t.Fatalf("members' own keys change the cluster-wide part:\n%s\n---\n%s", a, b)
	}
	gw2.Heartbeat.Interval *= 2
	if c, _ := gw2.ClusterWide(); string(c) == string(a) {
		t.Fatal("heartbeat.interval left out of the cluster-wide part")
	}
}
