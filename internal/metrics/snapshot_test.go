package metrics

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// pair is a healthy two-member view from the primary fw-a.
func pair() Snapshot {
	return Snapshot{
		Member: "fw-a", Group: 7, Priority: 200, UptimeSeconds: 42, PrimaryKnown: true,
		Monitored: map[string]bool{"port1": true, "port2": false},
		Links:     []LinkState{{Interface: "ha1", Up: true, PeersHeard: 1}},
		Peers:     []PeerState{{ID: "fw-b", Up: true, LastHeard: 0.2, Role: "subordinate", Version: "0.1.0"}},
		Probes: []Probe{{Check: "ping_server", Target: "192.0.2.1", Interface: "port1", Up: true, RTT: 3 * time.Millisecond, Sent: 10, Answered: 8},
			{Check: "witness", Target: "198.51.100.9", Up: false, Failures: 4}},
		VIPs: 2, VIPsHeld: 2,
		Sessions: &Sessions{Synced: 1200, HeldBack: 300, MaxSessions: 100000, LastBulk: 1500 * time.Millisecond,
			Subordinates:  []SyncPeer{{Peer: "fw-b", Connected: true, Queued: 3, Lag: 20 * time.Millisecond, Bulks: 1, LastBulk: 250 * time.Millisecond}},
			InstallErrors: 1, FrameErrors: 2, Overflows: 3},
	}
}

func TestSnapshotMetrics(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "nf_conntrack_count"), []byte("1234\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "nf_conntrack_max"), []byte("262144\n"), 0o644)
	m := New()
	m.SetConntrackDir(dir)
	s := pair()
	m.Observe(func() (Snapshot, error) { return s, nil })
	body := scrape(t, m.Handler())
	for _, want := range []string{
		"hagate_snapshot_ok 1\n",
		`hagate_member_info{group="7",member="fw-a"} 1` + "\n",
		"hagate_priority 200\n",
		"hagate_ha_uptime_seconds 42\n",
		"hagate_failover_set 0\n",
		"hagate_primary_known 1\n",
		"hagate_dual_primary 0\n",
		"hagate_monitored_links_up 1\n",
		"hagate_monitored_links 2\n",
		`hagate_monitored_link_up{interface="port2"} 0` + "\n",
		`hagate_heartbeat_link_up{link="ha1"} 1` + "\n",
		`hagate_peer_up{peer="fw-b"} 1` + "\n",
		`hagate_peer_last_heard_seconds{peer="fw-b"} 0.2` + "\n",
		`hagate_peer_role{peer="fw-b",role="subordinate"} 1` + "\n",
		`hagate_peer_role{peer="fw-b",role="primary"} 0` + "\n",
		`hagate_peer_info{peer="fw-b",version="0.1.0"} 1` + "\n",
		`hagate_probe_up{check="ping_server",interface="port1",target="192.0.2.1"} 1` + "\n",
		`hagate_probe_rtt_seconds{check="ping_server",interface="port1",target="192.0.2.1"} 0.003` + "\n",
		`hagate_probes_failed_total{check="ping_server",interface="port1",target="192.0.2.1"} 2` + "\n",
		`hagate_probe_consecutive_failures{check="witness",interface="",target="198.51.100.9"} 4` + "\n",
		"hagate_virtual_ips_held 2\n",
		"hagate_sessions_synced 1200\n",
		"hagate_sessions_held_back 300\n",
		"hagate_sessions_max 100000\n",
		"hagate_bulk_sync_duration_seconds 1.5\n",
		`hagate_sync_errors_total{kind="install"} 1` + "\n",
		`hagate_sync_errors_total{kind="decode"} 2` + "\n",
		`hagate_sync_errors_total{kind="overflow"} 3` + "\n",
		`hagate_sync_peer_connected{peer="fw-b"} 1` + "\n",
		`hagate_sync_peer_queue{peer="fw-b"} 3` + "\n",
		`hagate_sync_peer_lag_seconds{peer="fw-b"} 0.02` + "\n",
		`hagate_sync_peer_last_bulk_duration_seconds{peer="fw-b"} 0.25` + "\n",
		"hagate_conntrack_entries 1234\n",
		"hagate_conntrack_entries_limit 262144\n",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
	// The table is read at each scrape: a change shows at the next one.
	s.Sessions.Synced = 0
	if body := scrape(t, m.Handler()); !strings.Contains(body, "hagate_sessions_synced 0\n") {
		t.Error("hagate_sessions_synced did not follow the table")
	}
	if t.Failed() {
		t.Logf("scrape:\n%s", body)
	}
}

func TestSnapshotUnavailable(t *testing.T) {
	m := New()
	m.SetConntrackDir(t.TempDir()) // no conntrack module: no series
	m.Observe(func() (Snapshot, error) { return Snapshot{}, errors.New("daemon busy") })
	body := scrape(t, m.Handler())
	if !strings.Contains(body, "hagate_snapshot_ok 0\n") || strings.Contains(body, "hagate_priority") || strings.Contains(body, "hagate_conntrack") {
		t.Errorf("scrape with the daemon not answering:\n%s", body)
	}
}

func TestHealthz(t *testing.T) {
	down := pair()
	down.Links[0].Up = false
	alone := pair()
	alone.Peers[0].Up = false
	pending := pair()
	pending.Sessions.SyncPending = true
	pending.Sessions.Subordinates[0].Connected = false
	for _, tc := range []struct {
		name string
		s    Snapshot
		err  error
		code int
		body string
	}{
		{"healthy", pair(), nil, 200, "ok\n"},
		{"link down", down, nil, 503, "unhealthy: heartbeat link ha1 down\n"},
		{"alone", alone, nil, 503, "unhealthy: not in a cluster: no other member heard\n"},
		{"sync", pending, nil, 503, "unhealthy: sessions not in sync: waiting for the primary's bulk sync; session sync to fw-b not connected\n"},
		{"daemon silent", Snapshot{}, errors.New("daemon busy"), 503, "unhealthy: daemon busy\n"},
	} {
		m := New()
		m.Observe(func() (Snapshot, error) { return tc.s, tc.err })
		rec := httptest.NewRecorder()
		m.healthz(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
		if rec.Code != tc.code || rec.Body.String() != tc.body {
			t.Errorf("%s: %d %q, want %d %q", tc.name, rec.Code, rec.Body.String(), tc.code, tc.body)
		}
	}
}

func TestNames(t *testing.T) {
	names := New().Names()
	for _, want := range []string{"hagate_failovers_total", "hagate_sessions_synced", "hagate_peer_up", "hagate_conntrack_entries"} {
		if !slices.Contains(names, want) {
			t.Errorf("Names lacks %s: %v", want, names)
		}
	}
	if slices.Contains(names, "go_goroutines") {
		t.Error("Names lists Go's metrics")
	}
}
