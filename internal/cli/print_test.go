package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hagate/hagate/internal/cluster"
	"github.com/hagate/hagate/internal/daemon"
	"github.com/hagate/hagate/internal/sessions"
)

func TestPrintSessions(t *testing.T) {
	st := sessions.Stats{
		Role: "subordinate", Primary: "gw1", Sessions: 3, ByProtocol: map[string]int{"tcp": 2, "udp": 1},
		TCPStates: map[string]int{"ESTABLISHED": 2},
		LastBulk:  sessions.BulkStats{Sessions: 3, Duration: 2 * time.Millisecond, At: time.Unix(1700000000, 0)},
	}
	for _, tc := range []struct {
		name   string
		expect *sessions.ExpectStats
		want   []string
		absent []string
	}{
		{"no expectations", nil, []string{"primary gw1", "Sessions synced:  3", "tcp 2, udp 1", "ESTABLISHED 2"}, []string{"Expectations", "Lag per change", "Anti-entropy"}},
		{"expectations", &sessions.ExpectStats{Enabled: true, Held: 4, Unsent: 1, Installed: 9, Removed: 5, Dropped: map[string]uint64{"no-master": 2}},
			[]string{"Expectations:     4 held (1 waiting for their master), 0 sent, 9 installed, 5 removed, dropped: no-master 2"}, nil},
		{"lag and repairs", nil, []string{"Lag per change:   p50 2.5ms, p99 18ms, max 40ms (120 batches)", "Anti-entropy:     0 divergent ranges found, 7 sessions repaired"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st.Expectations = tc.expect
			if tc.name == "lag and repairs" {
				st.Lag = sessions.LagStats{Batches: 120, P50: 2500 * time.Microsecond, P99: 18 * time.Millisecond, Max: 40 * time.Millisecond}
				st.Repaired = 7
			}
			data, err := json.Marshal(st)
			if err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			if err := printSessions(&b, data); err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, b.String())
				}
			}
			for _, a := range tc.absent {
				if strings.Contains(b.String(), a) {
					t.Errorf("output has %q:\n%s", a, b.String())
				}
			}
		})
	}
}

// status names each member's version (0.1.0 for the release whose
// heartbeats carry none) and why the primary won.
func TestPrintStatusVersionsAndElection(t *testing.T) {
	var st daemon.Status
	st.NodeID, st.Role = "gw2", "subordinate"
	st.ElectedBecause = "gw1 over gw2: priority 200 > 150"
	st.Members = []cluster.Member{{NodeID: "gw2", Self: true, Role: "subordinate", Version: "0.2.0"}, {NodeID: "gw1", Role: "primary", Version: "0.1.0"}}
	data, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := printStatus(&b, data); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"VERSION", "0.2.0", "0.1.0", "Elected because:  gw1 over gw2: priority 200 > 150"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
}
