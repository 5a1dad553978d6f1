package daemon

import (
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/hagate/hagate/internal/cluster"
	"github.com/hagate/hagate/internal/config"
	"github.com/hagate/hagate/internal/metrics"
)

// metricsDaemon is a daemon with only what counting needs: a state machine
// and metrics, no kernel parts. Its step carries out the actions that
// count (role and primary changes) and skips those that touch the host.
type metricsDaemon struct {
	*Daemon
	t0 time.Time
}

func newMetricsDaemon(t *testing.T) *metricsDaemon {
	cfg := &config.Config{NodeID: "b", Priority: 100}
	cfg.Heartbeat.Interval = 100 * time.Millisecond
	cfg.Heartbeat.LostThreshold = 3
	t0 := time.Unix(1_700_000_000, 0)
	d := &Daemon{cfg: cfg, log: slog.New(slog.DiscardHandler), met: metrics.New(), lost: map[[2]string]uint64{}}
	d.node = cluster.New(cluster.Config{NodeID: "b", Priority: 100, Interval: cfg.Heartbeat.Interval, LostThreshold: 3,
		Links: []cluster.Link{{Interface: "ha1"}}}, t0)
	md := &metricsDaemon{Daemon: d, t0: t0}
	md.step(cluster.LinkChange{Now: t0, Interface: "ha1", Up: true})
	return md
}

func (md *metricsDaemon) step(ev cluster.Event) {
	for _, a := range md.node.Step(ev) {
		switch a.(type) {
		case cluster.RoleChange, cluster.PrimaryChange:
			md.perform(a)
		}
	}
	md.stepMetrics(ev)
}

// hear feeds a heartbeat of member a, primary, at t0+at.
func (md *metricsDaemon) hear(at time.Duration, seq uint64) {
	md.step(cluster.Received{Now: md.t0.Add(at), From: "a", Link: "ha1", Seq: seq, Epoch: 1,
		HB: cluster.Heartbeat{Role: cluster.Primary, Priority: 200, Uptime: time.Hour, Elected: "a", Count: seq}})
}

// A subordinate that sees the primary appear, then takes over from it when
// it goes silent, counts both changes of primary (the old counter counted
// only the second), with this member's own reason for the second.
func TestFailoversCountChangesOfPrimarySeen(t *testing.T) {
	md := newMetricsDaemon(t)
	for i := range 5 {
		md.hear(time.Duration(i)*100*time.Millisecond, uint64(i+1))
	}
	if md.node.Primary() != "a" {
		t.Fatalf("primary %q, want a", md.node.Primary())
	}
	if v := value(md.met.Failovers.WithLabelValues("startup")); v != 1 {
		t.Errorf("failovers{startup} = %v after the first primary, want 1", v)
	}
	if v := value(md.met.LastFailover); v == 0 {
		t.Error("last failover time not set")
	}
	// a goes silent: b takes over.
	md.step(cluster.Tick{Now: md.t0.Add(2 * time.Second)})
	if md.node.Role() != cluster.Primary {
		t.Fatalf("role %s, want primary", md.node.Role())
	}
	if v := value(md.met.Failovers.WithLabelValues("device")); v != 1 {
		t.Errorf("failovers{device} = %v after taking over from a silent primary, want 1", v)
	}
	if v := value(md.met.RoleChanges.WithLabelValues("primary", "device")); v != 1 {
		t.Errorf("role_changes{to=primary,reason=device} = %v, want 1", v)
	}
	if v := value(md.met.Role); v != 1 {
		t.Errorf("hagate_primary = %v, want 1", v)
	}
}

// value reads a counter's or gauge's value.
func value(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}
