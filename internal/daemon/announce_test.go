package daemon

import (
	"testing"

	"github.com/hagate/hagate/internal/config"
)

// gratuitous_arp.enabled: false silences every announcement, while count 0
// still sends the first one.
func TestAnnounces(t *testing.T) {
	base := "node_id: gw1\nsecurity: {authentication: false}\nheartbeat: {links: [{interface: ha, peers: [198.51.100.2]}]}\n"
	for _, tc := range []struct {
		extra string
		want  bool
	}{
		{"", true},
		{"gratuitous_arp: {count: 0}\n", true},
		{"gratuitous_arp: {enabled: false}\n", false},
		{"gratuitous_arp: {enabled: true}\n", true},
	} {
		cfg, err := config.Parse([]byte(base + tc.extra))
		if err != nil {
			t.Fatalf("%q: %v", tc.extra, err)
		}
		if got := announces(cfg); got != tc.want {
			t.Errorf("%q: announces %v, want %v", tc.extra, got, tc.want)
		}
	}
}
