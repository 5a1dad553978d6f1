package config

import (
	"slices"
	"testing"
)

// The fence's default interfaces are the data interfaces: the virtual IPs'
// and the monitored ones, each once, never a heartbeat link.
func TestFenceInterfaces(t *testing.T) {
	base := "node_id: gw1\nkey_file: /k\nheartbeat: {links: [{interface: ha, peers: [198.51.100.2]}]}\n"
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"default", "virtual_ips: [{interface: lan, address: 192.0.2.1/24}, {interface: wan, address: 203.0.113.1/24}]\nmonitor: [wan, dmz, ha]\n", []string{"lan", "wan", "dmz"}},
		{"listed", "monitor: [wan, dmz]\nfence: {interfaces: [dmz]}\n", []string{"dmz"}},
		{"off", "monitor: [wan]\nfence: {enabled: false}\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(base + tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if got := c.FenceInterfaces(); !slices.Equal(got, tc.want) {
				t.Errorf("FenceInterfaces() = %v, want %v", got, tc.want)
			}
		})
	}
}
