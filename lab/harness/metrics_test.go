package harness

import (
	"context"
	"encoding/json"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/hagate/hagate/lab/netlab"
)

// recording is every scrape of some members, in time order: what the
// docs' charts are drawn from (HAGATE_METRICS_RECORD names the file).
type recording struct {
	mu     sync.Mutex
	Scrape []recorded `json:"scrapes"`
}

type recorded struct {
	At      time.Time `json:"at"`
	Member  string    `json:"member"`
	Samples Samples   `json:"samples"`
}

// record scrapes gws every interval until ctx ends.
func (r *recording) record(ctx context.Context, c *Cluster, gws []string, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		for _, gw := range gws {
			if s, err := c.Scrape(ctx, gw); err == nil {
				r.mu.Lock()
				r.Scrape = append(r.Scrape, recorded{At: time.Now(), Member: gw, Samples: s})
				r.mu.Unlock()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// TestMetricsThroughFailover scrapes the members' /metrics while the
// primary loses power, and checks the series an on-call engineer reads:
// the failover counted by every member that saw it (not only the one that
// took over), with its reason, the member not heard, the session table on
// every member.
func TestMetricsThroughFailover(t *testing.T) {
	c := setup(t, 3, Options{UptimeMargin: 3 * time.Second, Extra: MetricsExtra() + pickupOn}, netlab.Options{})
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	mustHolder(t, c, 15*time.Second, "gw1")
	var rec recording
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { rec.record(ctx, c, []string{"gw1", "gw2", "gw3"}, 250*time.Millisecond); close(done) }()
	time.Sleep(3 * time.Second)
	for _, gw := range []string{"gw2", "gw3"} {
		s := mustScrape(t, c, gw)
		expect(t, gw+" before", s, map[string]float64{
			`hagate_failovers_total{reason="startup"}`: 1,
			`hagate_failovers_total{reason="device"}`:  0, // present before the first failover
			`hagate_primary`:                      0,
			`hagate_primary_known`:                1,
			`hagate_peer_up{peer="gw1"}`:          1,
			`hagate_snapshot_ok`:                  1,
			`hagate_dual_primary`:                 0,
			`hagate_split_brain`:                  0,
			`hagate_heartbeat_link_up{link="ha"}`: 1,
			`hagate_sync_pending`:                 0,
		})
	}
	if s := mustScrape(t, c, "gw1"); s.Sum("hagate_sync_peer_connected") != 2 || s.Sum("hagate_virtual_ips_held") == 0 {
		t.Errorf("gw1 before: sync peers connected %v, virtual IPs held %v", s.Sum("hagate_sync_peer_connected"), s.Sum("hagate_virtual_ips_held"))
	}

	if err := c.PowerOff("gw1"); err != nil {
		t.Fatal(err)
	}
	mustHolder(t, c, 10*time.Second, "gw2")
	time.Sleep(3 * time.Second)
	stop()
	<-done

	gw2, gw3 := mustScrape(t, c, "gw2"), mustScrape(t, c, "gw3")
	expect(t, "gw2 after", gw2, map[string]float64{
		`hagate_failovers_total{reason="device"}`:                 1,
		`hagate_role_changes_total{reason="device",to="primary"}`: 1,
		`hagate_primary`:                           1,
		`hagate_peer_up{peer="gw1"}`:               0,
		`hagate_peer_role{peer="gw1",role="lost"}`: 1,
		`hagate_peer_up{peer="gw3"}`:               1,
	})
	// gw3 did not change role: the old counter left it at 0.
	expect(t, "gw3 after", gw3, map[string]float64{
		`hagate_failovers_total{reason="device"}`: 1,
		`hagate_primary`:       0,
		`hagate_primary_known`: 1,
	})
	if gw3.Sum("hagate_last_failover_timestamp_seconds") < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("gw3: last failover time %v", gw3.Sum("hagate_last_failover_timestamp_seconds"))
	}
	for name, s := range map[string]Samples{"gw2": gw2, "gw3": gw3} {
		for _, metric := range []string{"hagate_build_info", "hagate_member_info", "hagate_sessions_synced", "hagate_bulk_sync_duration_seconds", "hagate_priority", "hagate_ha_uptime_seconds"} {
			if _, ok := anySeries(s, metric); !ok {
				t.Errorf("%s exports no %s", name, metric)
			}
		}
	}
	if path := os.Getenv("HAGATE_METRICS_RECORD"); path != "" {
		b, err := json.Marshal(&rec)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("%d scrapes recorded in %s", len(rec.Scrape), path)
	}
}

// expect checks exact series.
func expect(t *testing.T, where string, s Samples, want map[string]float64) {
	t.Helper()
	for k, v := range want {
		got, ok := s[k]
		if !ok {
			t.Errorf("%s: no series %s", where, k)
		} else if got != v {
			t.Errorf("%s: %s = %v, want %v", where, k, got, v)
		}
	}
}

func anySeries(s Samples, name string) (float64, bool) {
	for k, v := range s {
		if k == name || len(k) > len(name) && k[:len(name)+1] == name+"{" {
			return v, true
		}
	}
	return 0, false
}
