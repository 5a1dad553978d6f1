// Package metrics owns hagate's Prometheus metrics: one registry private to
// the daemon (so tests and libraries never collide on the global one), the
// collectors the other packages update, and the HTTP endpoint that serves
// them.
package metrics

import (
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const namespace = "hagate"

// Roles are the values of the role label of hagate_role.
var Roles = []string{"hello", "subordinate", "primary"}

// Metrics holds every hagate metric. Its fields are safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	// Cluster and election.
	Role               prometheus.Gauge       // 1 primary, 0 otherwise
	RoleState          *prometheus.GaugeVec   // role: 1 for the current role
	Members            prometheus.Gauge       // members heard, self included
	HeartbeatsSent     *prometheus.CounterVec // link
	HeartbeatsReceived *prometheus.CounterVec // link, peer
	HeartbeatsDropped  *prometheus.CounterVec // link, reason
	HeartbeatsLost     *prometheus.CounterVec // link, peer
	// FramesDropped counts dropped heartbeats by reason and source
	// address; update it through DroppedFrom, which bounds the sources.
	FramesDropped *prometheus.CounterVec // reason, source
	Elections     prometheus.Counter
	Failovers     *prometheus.CounterVec // reason
	LastFailover  prometheus.Gauge       // unix seconds
	SplitBrain    prometheus.Gauge       // 0 or 1
	ControlDenied prometheus.Counter

	// Session pickup.
	SessionsSynced       prometheus.Gauge
	SyncUpdatesSent      prometheus.Counter
	SyncUpdatesApplied   prometheus.Counter
	SyncAckLag           prometheus.Gauge     // seconds
	SyncLag              prometheus.Histogram // seconds, per batch of changes
	SyncDivergentRanges  prometheus.Counter
	SyncRepaired         prometheus.Counter
	SyncResyncs          *prometheus.CounterVec // reason
	BulkSyncDuration     prometheus.Gauge       // seconds
	SyncErrors           *prometheus.CounterVec // kind
	SessionsDroppedLimit prometheus.Counter

	sourcesMu sync.Mutex
	sources   map[string]bool // source labels of FramesDropped
}

// MaxDropSources bounds the source label values of
// hagate_frames_dropped_total; drops from further sources count under
// "other". The heartbeat transport bounds its sources too; this keeps the
// metric bounded whatever calls it.
const MaxDropSources = 80

// DroppedFrom counts a dropped frame from source for reason, in
// hagate_frames_dropped_total, and in hagate_heartbeats_dropped_total.
func (m *Metrics) DroppedFrom(link, reason, source string) {
	m.sourcesMu.Lock()
	if !m.sources[source] {
		if len(m.sources) >= MaxDropSources {
			source = "other"
		} else {
			m.sources[source] = true
		}
	}
	m.sourcesMu.Unlock()
	m.FramesDropped.WithLabelValues(reason, source).Inc()
}

// New returns the metrics registered on a fresh registry, with the Go runtime
// and process collectors.
func New() *Metrics {
	m := &Metrics{
		reg:     prometheus.NewRegistry(),
		sources: map[string]bool{},

		Role: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "primary",
			Help: "1 when this member is the cluster primary, 0 otherwise.",
		}),
		RoleState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "role",
			Help: "1 for the role this member is in (hello, subordinate, primary), 0 for the others.",
		}, []string{"role"}),
		Members: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "members",
			Help: "Cluster members currently heard, this one included.",
		}),
		HeartbeatsSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "heartbeats_sent_total",
			Help: "Heartbeats sent, by heartbeat link.",
		}, []string{"link"}),
		HeartbeatsReceived: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "heartbeats_received_total",
			Help: "Valid heartbeats received, by heartbeat link and sending member.",
		}, []string{"link", "peer"}),
		HeartbeatsDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "heartbeats_dropped_total",
			Help: "Heartbeat packets dropped, by heartbeat link and reason (auth, replay, decode, group, self...).",
		}, []string{"link", "reason"}),
		HeartbeatsLost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "heartbeats_lost_total",
			Help: "Heartbeats missing from a member's sequence numbers, by heartbeat link and member.",
		}, []string{"link", "peer"}),
		FramesDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "frames_dropped_total",
			Help: "Heartbeat frames dropped, by reason (key, group, stale, replay...) and source address (at most 80, the rest as \"other\").",
		}, []string{"reason", "source"}),
		Elections: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "elections_total",
			Help: "Elections run by this member.",
		}),
		Failovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "failovers_total",
			Help: "Changes of primary seen by this member, by reason (device, link, manual, shutdown, preempt, quorum...).",
		}, []string{"reason"}),
		LastFailover: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "last_failover_timestamp_seconds",
			Help: "Unix time of the last change of primary, 0 if none since start.",
		}),
		SplitBrain: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "split_brain",
			Help: "1 while more than one member claims to be primary, 0 otherwise.",
		}),
		ControlDenied: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "control_denied_total",
			Help: "Control socket connections refused for lack of permission.",
		}),

		SessionsSynced: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "sessions_synced",
			Help: "Sessions in the session pickup table (sent by the primary, held by a subordinate).",
		}),
		SyncUpdatesSent: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "sync_updates_sent_total",
			Help: "Session pickup updates sent to subordinates.",
		}),
		SyncUpdatesApplied: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "sync_updates_applied_total",
			Help: "Session pickup updates received from the primary and applied.",
		}),
		// Until 0.1.0 hagate_sync_lag_seconds was this gauge; the name now
		// belongs to the subordinate's histogram of lag per change.
		SyncAckLag: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "sync_ack_lag_seconds",
			Help: "Primary: time from sending the last acknowledged session pickup batch to its acknowledgement.",
		}),
		SyncLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "sync_lag_seconds",
			Help:    "Subordinate: time from the primary seeing the oldest change of a batch to the batch's kernel install.",
			Buckets: []float64{.0005, .001, .002, .003, .005, .0075, .01, .015, .02, .03, .05, .1, .2, .5, 1, 2, 5, 10},
		}),
		SyncDivergentRanges: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "sync_divergent_ranges_total",
			Help: "Primary: key ranges of a subordinate's session table that anti-entropy found different from its own.",
		}),
		SyncRepaired: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "sync_repaired_sessions_total",
			Help: "Subordinate: sessions anti-entropy added or removed.",
		}),
		SyncResyncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "sync_resyncs_total",
			Help: "Full session resynchronisations, by reason.",
		}, []string{"reason"}),
		BulkSyncDuration: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "bulk_sync_duration_seconds",
			Help: "Duration of the last full session synchronisation.",
		}),
		SyncErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "sync_errors_total",
			Help: "Session pickup errors, by kind (commit, install, decode, overflow).",
		}, []string{"kind"}),
		SessionsDroppedLimit: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "sessions_dropped_limit_total",
			Help: "Sessions not synchronised because the session pickup table was full.",
		}),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.Role, m.RoleState, m.Members,
		m.HeartbeatsSent, m.HeartbeatsReceived, m.HeartbeatsDropped, m.HeartbeatsLost, m.FramesDropped,
		m.Elections, m.Failovers, m.LastFailover, m.SplitBrain, m.ControlDenied,
		m.SessionsSynced, m.SyncUpdatesSent, m.SyncUpdatesApplied, m.SyncAckLag, m.SyncLag,
		m.SyncDivergentRanges, m.SyncRepaired,
		m.SyncResyncs, m.BulkSyncDuration, m.SyncErrors, m.SessionsDroppedLimit,
	)
	// Present from the first scrape rather than from the first event, so
	// alerts on them work before anything happened.
	m.SetRole("hello")
	for _, k := range []string{"commit", "install", "decode", "overflow"} {
		m.SyncErrors.WithLabelValues(k)
	}
	return m
}

// SetRole records the member's role: hagate_primary, and hagate_role with 1
// for role and 0 for the other known roles.
func (m *Metrics) SetRole(role string) {
	if role == "primary" {
		m.Role.Set(1)
	} else {
		m.Role.Set(0)
	}
	known := false
	for _, r := range Roles {
		v := 0.0
		if r == role {
			v, known = 1, true
		}
		m.RoleState.WithLabelValues(r).Set(v)
	}
	if !known {
		m.RoleState.WithLabelValues(role).Set(1)
	}
}

// Registry returns the private registry, for tests and extra collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		Registry:            m.reg, // counts its own errors (promhttp_metric_handler_errors_total)
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
	})
}
