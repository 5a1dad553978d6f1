// Package metrics owns hagate's Prometheus metrics: one registry private to
// the daemon (so tests and libraries never collide on the global one), the
// collectors the other packages update, and the HTTP endpoint that serves
// them.
package metrics

import (
	"net/http"
	"regexp"
	"runtime"
	"slices"
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
	// HeartbeatSendJitter is the largest lateness of a heartbeat sent in
	// the last minute or two: set it through HeartbeatSent.
	HeartbeatSendJitter prometheus.Gauge // seconds
	// FramesDropped counts dropped heartbeats by reason and source
	// address; update it through DroppedFrom, which bounds the sources.
	FramesDropped *prometheus.CounterVec // reason, source
	Elections     prometheus.Counter
	Failovers     *prometheus.CounterVec // reason: changes of the acting primary seen
	LastFailover  prometheus.Gauge       // unix seconds
	RoleChanges   *prometheus.CounterVec // to, reason: this member's own role changes
	SplitBrain    prometheus.Gauge       // 0 or 1: has had peers, hears none
	ControlDenied prometheus.Counter
	// ConfigMismatch: 1 while a member's part differs from the primary's.
	ConfigMismatch *prometheus.GaugeVec
	NotifyRuns     prometheus.Counter
	NotifyFailed   prometheus.Counter
	BuildInfo      *prometheus.GaugeVec // version, goversion

	// Session pickup. The table's size, the last bulk and the errors are
	// read from the engine at scrape time (see Snapshot), so that they
	// follow the table on every member.
	SyncUpdatesSent      prometheus.Counter
	SyncUpdatesApplied   prometheus.Counter
	SyncAckLag           prometheus.Gauge     // seconds
	SyncLag              prometheus.Histogram // seconds, per batch of changes
	SyncDivergentRanges  prometheus.Counter
	SyncRepaired         prometheus.Counter
	SyncResyncs          *prometheus.CounterVec // reason
	SyncFramesDropped    *prometheus.CounterVec // reason: see SyncDropped
	SessionsDroppedLimit prometheus.Counter

	snapshots *snapshotCollector
	own       []prometheus.Collector // hagate's own, without Go's and the process's

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
		HeartbeatSendJitter: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "heartbeat_send_jitter_seconds",
			Help: "Largest lateness of a heartbeat sent in the last one to two minutes: the time between two heartbeats less the interval (up to a quarter interval is the daemon's tick, half an interval a copy the sender thread sent for a late loop; more is the sender held up, the warning sign of a false failover).",
		}),
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
			Help: "Changes of the acting primary to another member seen by this member, whichever member took over, by reason (startup for the cluster's first primary, device, link, manual, shutdown, preempt, quorum).",
		}, []string{"reason"}),
		LastFailover: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "last_failover_timestamp_seconds",
			Help: "Unix time of the last change of primary counted in hagate_failovers_total, 0 if none since start.",
		}),
		RoleChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "role_changes_total",
			Help: "Changes of this member's own role, by the role taken (subordinate, primary) and reason.",
		}, []string{"to", "reason"}),
		SplitBrain: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "split_brain",
			Help: "1 while this member has had peers and hears none on any heartbeat link (it may be one side of a split cluster), 0 otherwise. Two primaries seen at once: hagate_dual_primary.",
		}),
		ControlDenied: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "control_denied_total",
			Help: "Control socket connections refused for lack of permission.",
		}),
		ConfigMismatch: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "config_checksum_mismatch",
			Help: "1 while the member's configuration part (ruleset, routes, sysctls, config) differs from the primary's.",
		}, []string{"part", "member"}),

		NotifyRuns: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "notify_runs_total",
			Help: "Runs of the notify command.",
		}),
		NotifyFailed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "notify_failures_total",
			Help: "Runs of the notify command that failed (exit status, timeout, not started).",
		}),
		BuildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "build_info",
			Help: "1, labelled with the hagate version and the Go version it was built with.",
		}, []string{"version", "goversion"}),

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
		SyncFramesDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "sync_frames_dropped_total",
			Help: "Session sync frames refused, by reason (key, auth, replay, stale, gap, handshake...; unknown reasons as other).",
		}, []string{"reason"}),
		SessionsDroppedLimit: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "sessions_dropped_limit_total",
			Help: "Sessions not synchronised because the session pickup table was full.",
		}),
	}
	m.snapshots = newSnapshotCollector()
	m.own = []prometheus.Collector{
		m.Role, m.RoleState, m.Members,
		m.HeartbeatsSent, m.HeartbeatsReceived, m.HeartbeatsDropped, m.HeartbeatsLost, m.HeartbeatSendJitter, m.FramesDropped,
		m.Elections, m.Failovers, m.LastFailover, m.RoleChanges, m.SplitBrain, m.ControlDenied, m.ConfigMismatch,
		m.NotifyRuns, m.NotifyFailed, m.BuildInfo,
		m.SyncUpdatesSent, m.SyncUpdatesApplied, m.SyncAckLag, m.SyncLag,
		m.SyncDivergentRanges, m.SyncRepaired,
		m.SyncResyncs, m.SyncFramesDropped, m.SessionsDroppedLimit,
		m.snapshots,
	}
	m.reg.MustRegister(m.own...)
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Present from the first scrape rather than from the first event, so
	// that increase() and rate() see the first event too.
	m.SetRole("hello")
	for _, k := range Kinds {
		m.Failovers.WithLabelValues(k)
		for _, to := range []string{"subordinate", "primary"} {
			m.RoleChanges.WithLabelValues(to, k)
		}
	}
	for _, r := range SyncDropReasons {
		m.SyncFramesDropped.WithLabelValues(r)
	}
	return m
}

// Kinds are the reasons of a change of role or of primary, as
// cluster.Kind names them: the label values of hagate_failovers_total and
// hagate_role_changes_total.
var Kinds = []string{"startup", "device", "link", "manual", "shutdown", "preempt", "quorum"}

// HeartbeatDropReasons are the reasons the heartbeat transport drops a
// packet for (seal's and its own): hagate_heartbeats_dropped_total starts
// at 0 for each on every link.
var HeartbeatDropReasons = append(slices.Clone(sealDropReasons),
	"wrong-address", "wrong-link", "queue-full", "unknown-source", "oversize", "node-id", "send-error", "read-error")

// SyncDropReasons are the reasons the session sync refuses a frame for;
// any other counts as "other", so that the label set stays bounded.
var SyncDropReasons = append(slices.Clone(sealDropReasons),
	"too-big", "handshake", "not-primary", "challenge", "unexpected", "gap", "decode", "other")

// sealDropReasons are internal/seal's reasons for refusing a frame.
var sealDropReasons = []string{"short", "magic", "version", "malformed", "purpose", "group", "mode", "self",
	"stale", "epoch", "key", "auth", "replay"}

// SyncDropped counts a refused session sync frame by its reason.
func (m *Metrics) SyncDropped(reason string) {
	if !slices.Contains(SyncDropReasons, reason) {
		reason = "other"
	}
	m.SyncFramesDropped.WithLabelValues(reason).Inc()
}

// Start records what is known once the configuration is: the build, and
// 0 for every heartbeat link's counters.
func (m *Metrics) Start(version string, links []string) {
	m.BuildInfo.WithLabelValues(version, runtime.Version()).Set(1)
	for _, l := range links {
		m.HeartbeatsSent.WithLabelValues(l)
		for _, r := range HeartbeatDropReasons {
			m.HeartbeatsDropped.WithLabelValues(l, r)
		}
	}
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

// fqName finds a metric's name in its description, which has no accessor.
var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

// Names lists every metric name hagate itself exports, whether or not it
// has a series yet: what dashboards and alert rules may use.
// A histogram is queried by its series' names (_bucket, _sum, _count), not
// by its own, which has no series.
func (m *Metrics) Names() []string {
	var names []string
	for _, c := range m.own {
		suffixes := []string{""}
		switch c.(type) {
		case prometheus.Histogram, *prometheus.HistogramVec:
			suffixes = []string{"_bucket", "_sum", "_count"}
		}
		ch := make(chan *prometheus.Desc, 256)
		go func() {
			c.Describe(ch)
			close(ch)
		}()
		for d := range ch {
			if sm := fqName.FindStringSubmatch(d.String()); sm != nil {
				for _, suf := range suffixes {
					names = append(names, sm[1]+suf)
				}
			}
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}
