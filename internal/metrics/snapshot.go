package metrics

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Snapshot is the member's state at one moment, as the daemon's loop sees
// it: the cluster state machine's view, the ping servers and witness, and
// the session pickup engine. The metrics below are read from it at scrape
// time rather than set on every change, so that they can never go stale.
type Snapshot struct {
	Member        string
	Group         int
	Priority      int
	UptimeSeconds float64 // HA uptime, as the election compares it
	FailoverSet   bool
	PrimaryKnown  bool // a member acts as primary, as this one knows
	DualPrimary   bool // this member is primary and another claims it too
	QuorumOn      bool
	Quorate       bool
	Monitored     map[string]bool // monitored interface -> up
	Links         []LinkState     // heartbeat links
	Peers         []PeerState
	Probes        []Probe // ping servers and the witness
	VIPs          int     // virtual IPs configured
	VIPsHeld      int
	Sessions      *Sessions // nil when session pickup is off
}

// LinkState is one heartbeat link.
type LinkState struct {
	Interface  string
	Up         bool
	PeersHeard int
}

// PeerState is another member as this one knows it.
type PeerState struct {
	ID        string
	Up        bool
	LastHeard float64 // seconds
	Role      string  // hello, subordinate, primary (or lost, left, unreadable)
	Version   string
}

// Probe is one ping server or witness check.
type Probe struct {
	Check     string // "ping_server" or "witness"
	Target    string
	Interface string
	Up        bool
	RTT       time.Duration // of the last answer
	Failures  int           // consecutive
	Sent      uint64
	Answered  uint64
}

// Sessions is the session pickup engine's state.
type Sessions struct {
	SyncPending  bool // a subordinate still waits for the primary's bulk sync
	Synced       int  // sessions in the pickup table
	HeldBack     int  // of them, held out of the kernel (install_delay)
	MaxSessions  int
	LastBulk     time.Duration
	LastBulkAt   time.Time
	Subordinates []SyncPeer // on the primary
	// Errors, counted by the engine since start.
	InstallErrors, FrameErrors, Overflows uint64
}

// SyncPeer is the primary's sync connection to one subordinate.
type SyncPeer struct {
	Peer      string // node id, or address before the hello
	Connected bool
	Queued    int
	Lag       time.Duration
	Bulks     uint64
	LastBulk  time.Duration // time the last bulk sync to it took to send
}

// Observe makes the metrics read the member's state from snapshot at every
// scrape. snapshot fails when the daemon cannot answer (starting, busy):
// the scrape then lacks those series and hagate_snapshot_ok is 0.
func (m *Metrics) Observe(snapshot func() (Snapshot, error)) {
	m.snapshots.mu.Lock()
	m.snapshots.source = snapshot
	m.snapshots.mu.Unlock()
}

// Snapshot returns the member's state, for /healthz.
func (m *Metrics) Snapshot() (Snapshot, error) {
	m.snapshots.mu.Lock()
	src := m.snapshots.source
	m.snapshots.mu.Unlock()
	if src == nil {
		return Snapshot{}, errors.New("starting")
	}
	return src()
}

// SetConntrackDir points the conntrack gauges at a directory holding
// nf_conntrack_count and nf_conntrack_max (tests).
func (m *Metrics) SetConntrackDir(dir string) { m.snapshots.conntrackDir = dir }

// snapshotCollector turns a Snapshot into metrics at scrape time.
type snapshotCollector struct {
	mu           sync.Mutex
	source       func() (Snapshot, error)
	conntrackDir string
	descs        map[string]*prometheus.Desc
}

// desc declares the collector's metrics: name (without the namespace),
// help and labels.
type desc struct {
	name, help string
	labels     []string
}

var snapshotDescs = []desc{
	{"snapshot_ok", "1 when this scrape read the member's state from the daemon, 0 when it did not answer in time (the series below are then missing).", nil},
	{"member_info", "1, labelled with this member's node id and cluster group id: join on instance to group members by cluster.", []string{"member", "group"}},
	{"priority", "This member's configured priority.", nil},
	{"ha_uptime_seconds", "This member's HA uptime, as the election compares it (reset by hagate reset-uptime).", nil},
	{"failover_set", "1 while hagate failover keeps this member out of the primary role.", nil},
	{"primary_known", "1 while this member knows a member acting as primary, 0 while the cluster has none.", nil},
	{"dual_primary", "1 while this member is primary and another member claims the primary role too (two primaries).", nil},
	{"quorum_enabled", "1 when split_brain.quorum is on.", nil},
	{"quorum", "1 while this member has quorum (always 1 with quorum off).", nil},
	{"monitored_links_up", "Monitored interfaces up.", nil},
	{"monitored_links", "Monitored interfaces configured.", nil},
	{"monitored_link_up", "1 while the monitored interface is up.", []string{"interface"}},
	{"heartbeat_link_up", "1 while the heartbeat link is up.", []string{"link"}},
	{"heartbeat_link_peers_heard", "Members heard on the heartbeat link within the dead interval.", []string{"link"}},
	{"peer_up", "1 while the member is heard on some heartbeat link.", []string{"peer"}},
	{"peer_last_heard_seconds", "Seconds since the member was last heard.", []string{"peer"}},
	{"peer_role", "1 for the role the member announces (hello, subordinate, primary; lost, left or unreadable when not heard or not readable).", []string{"peer", "role"}},
	{"peer_info", "1, labelled with the member's hagate version (0.1.0 for the release that does not say).", []string{"peer", "version"}},
	{"probe_up", "1 while the ping server or witness answers, by check (ping_server, witness).", []string{"check", "target", "interface"}},
	{"probe_rtt_seconds", "Round-trip time of the last answer of the ping server or witness.", []string{"check", "target", "interface"}},
	{"probe_consecutive_failures", "Probes of the ping server or witness unanswered in a row.", []string{"check", "target", "interface"}},
	{"probes_failed_total", "Probes of the ping server or witness not answered in time.", []string{"check", "target", "interface"}},
	{"virtual_ips", "Virtual IPs configured.", nil},
	{"virtual_ips_held", "Virtual IPs this member holds (all on the primary, none elsewhere).", nil},
	{"sessions_synced", "Sessions in the session pickup table: on the primary the sessions it syncs, on a subordinate those it holds.", nil},
	{"sessions_max", "session_pickup.max_sessions: the table's limit.", nil},
	{"sessions_held_back", "On a subordinate: sessions held in memory, not yet in its kernel table (session_pickup.install_delay); a takeover installs them before it claims the addresses.", nil},
	{"sync_pending", "1 while this subordinate waits for the primary's bulk session sync.", nil},
	{"bulk_sync_duration_seconds", "Duration of the last full session sync this member received.", nil},
	{"bulk_sync_timestamp_seconds", "Unix time the last full session sync received ended, 0 if none.", nil},
	{"sync_errors_total", "Session pickup errors, by kind: install (the kernel refused a session), decode (a sync frame refused; by reason in hagate_sync_frames_dropped_total), overflow (events or a subordinate's queue overflowed: resync).", []string{"kind"}},
	{"sync_peer_connected", "On the primary: 1 while the sync connection to the subordinate is up.", []string{"peer"}},
	{"sync_peer_queue", "On the primary: session changes queued for the subordinate.", []string{"peer"}},
	{"sync_peer_lag_seconds", "On the primary: delay of the subordinate's last acknowledgement.", []string{"peer"}},
	{"sync_peer_bulks_total", "On the primary: bulk syncs sent to the subordinate.", []string{"peer"}},
	{"sync_peer_last_bulk_duration_seconds", "On the primary: time the last bulk sync to the subordinate took to send (0 before the first ends).", []string{"peer"}},
	{"conntrack_entries", "Connections in the kernel's conntrack table (nf_conntrack_count), as node_exporter's conntrack collector.", nil},
	{"conntrack_entries_limit", "Size limit of the kernel's conntrack table (nf_conntrack_max).", nil},
}

// peerRoles are the label values of hagate_peer_role.
var peerRoles = []string{"hello", "subordinate", "primary", "lost", "left", "unreadable"}

func newSnapshotCollector() *snapshotCollector {
	c := &snapshotCollector{conntrackDir: "/proc/sys/net/netfilter", descs: map[string]*prometheus.Desc{}}
	for _, d := range snapshotDescs {
		c.descs[d.name] = prometheus.NewDesc(namespace+"_"+d.name, d.help, d.labels, nil)
	}
	return c
}

func (c *snapshotCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c *snapshotCollector) Collect(ch chan<- prometheus.Metric) {
	emit := func(name string, typ prometheus.ValueType, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(c.descs[name], typ, v, labels...)
	}
	gauge := func(name string, v float64, labels ...string) { emit(name, prometheus.GaugeValue, v, labels...) }
	c.collectConntrack(gauge)

	c.mu.Lock()
	src := c.source
	c.mu.Unlock()
	if src == nil {
		return // not a daemon: nothing to read
	}
	s, err := src()
	if err != nil {
		gauge("snapshot_ok", 0)
		return
	}
	gauge("snapshot_ok", 1)
	gauge("member_info", 1, s.Member, strconv.Itoa(s.Group))
	gauge("priority", float64(s.Priority))
	gauge("ha_uptime_seconds", s.UptimeSeconds)
	gauge("failover_set", b2f(s.FailoverSet))
	gauge("primary_known", b2f(s.PrimaryKnown))
	gauge("dual_primary", b2f(s.DualPrimary))
	gauge("quorum_enabled", b2f(s.QuorumOn))
	gauge("quorum", b2f(s.Quorate))
	up := 0
	for ifname, ok := range s.Monitored {
		gauge("monitored_link_up", b2f(ok), ifname)
		if ok {
			up++
		}
	}
	gauge("monitored_links_up", float64(up))
	gauge("monitored_links", float64(len(s.Monitored)))
	for _, l := range s.Links {
		gauge("heartbeat_link_up", b2f(l.Up), l.Interface)
		gauge("heartbeat_link_peers_heard", float64(l.PeersHeard), l.Interface)
	}
	for _, p := range s.Peers {
		gauge("peer_up", b2f(p.Up), p.ID)
		gauge("peer_last_heard_seconds", p.LastHeard, p.ID)
		for _, r := range peerRoles {
			gauge("peer_role", b2f(r == p.Role), p.ID, r)
		}
		gauge("peer_info", 1, p.ID, p.Version)
	}
	for _, p := range s.Probes {
		gauge("probe_up", b2f(p.Up), p.Check, p.Target, p.Interface)
		gauge("probe_rtt_seconds", p.RTT.Seconds(), p.Check, p.Target, p.Interface)
		gauge("probe_consecutive_failures", float64(p.Failures), p.Check, p.Target, p.Interface)
		emit("probes_failed_total", prometheus.CounterValue, float64(p.Sent-min(p.Answered, p.Sent)), p.Check, p.Target, p.Interface)
	}
	gauge("virtual_ips", float64(s.VIPs))
	gauge("virtual_ips_held", float64(s.VIPsHeld))
	c.collectSessions(s.Sessions, gauge, emit)
}

// collectSessions reports session pickup; with pickup off, the errors are
// 0 and the rest is absent, so that alerts on them see no data rather than
// a false zero table.
func (c *snapshotCollector) collectSessions(ss *Sessions, gauge func(string, float64, ...string), emit func(string, prometheus.ValueType, float64, ...string)) {
	if ss == nil {
		for _, k := range []string{"install", "decode", "overflow"} {
			emit("sync_errors_total", prometheus.CounterValue, 0, k)
		}
		return
	}
	gauge("sessions_synced", float64(ss.Synced))
	gauge("sessions_max", float64(ss.MaxSessions))
	gauge("sessions_held_back", float64(ss.HeldBack))
	gauge("sync_pending", b2f(ss.SyncPending))
	gauge("bulk_sync_duration_seconds", ss.LastBulk.Seconds())
	at := 0.0
	if !ss.LastBulkAt.IsZero() {
		at = float64(ss.LastBulkAt.UnixNano()) / 1e9
	}
	gauge("bulk_sync_timestamp_seconds", at)
	emit("sync_errors_total", prometheus.CounterValue, float64(ss.InstallErrors), "install")
	emit("sync_errors_total", prometheus.CounterValue, float64(ss.FrameErrors), "decode")
	emit("sync_errors_total", prometheus.CounterValue, float64(ss.Overflows), "overflow")
	for _, p := range ss.Subordinates {
		gauge("sync_peer_connected", b2f(p.Connected), p.Peer)
		gauge("sync_peer_queue", float64(p.Queued), p.Peer)
		gauge("sync_peer_lag_seconds", p.Lag.Seconds(), p.Peer)
		emit("sync_peer_bulks_total", prometheus.CounterValue, float64(p.Bulks), p.Peer)
		gauge("sync_peer_last_bulk_duration_seconds", p.LastBulk.Seconds(), p.Peer)
	}
}

// collectConntrack reads the kernel's conntrack count and limit; without
// the nf_conntrack module there is neither, and no series.
func (c *snapshotCollector) collectConntrack(gauge func(string, float64, ...string)) {
	for name, file := range map[string]string{"conntrack_entries": "nf_conntrack_count", "conntrack_entries_limit": "nf_conntrack_max"} {
		if v, err := readUint(filepath.Join(c.conntrackDir, file)); err == nil {
			gauge(name, float64(v))
		}
	}
}

func readUint(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
