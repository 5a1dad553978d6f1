// Package config owns hagate's configuration file: its YAML schema, the
// defaults, and the validation that refuses a bad file with an error naming
// the key.
package config

import (
	"net/netip"
	"time"
)

// Config is one node's configuration. Field names follow the YAML keys.
type Config struct {
	NodeID        string        `yaml:"node_id"`        // required; unique in the cluster; the election's last tie-break
	GroupID       int           `yaml:"group_id"`       // 0..1023, default 0
	Priority      int           `yaml:"priority"`       // 0..255, default 128
	Override      bool          `yaml:"override"`       // default false
	UptimeMargin  time.Duration `yaml:"uptime_margin"`  // default 300s
	HelloHolddown time.Duration `yaml:"hello_holddown"` // default max(5s, 2 x interval x lost_threshold)
	KeyFile       string        `yaml:"key_file"`       // required unless security.authentication is false
	ControlSocket string        `yaml:"control_socket"` // default /run/hagate/hagate.sock
	ControlGroup  string        `yaml:"control_group"`  // optional: a unix group that may use the control socket besides root
	StateDir      string        `yaml:"state_dir"`      // default /var/lib/hagate (election history)
	MetricsListen string        `yaml:"metrics_listen"` // empty: no metrics endpoint
	Notify        string        `yaml:"notify"`         // optional command run on every role change
	LogLevel      string        `yaml:"log_level"`      // debug|info|warn|error, default info
	LogFormat     string        `yaml:"log_format"`     // text|json, default text

	Heartbeat     Heartbeat     `yaml:"heartbeat"`
	Monitor       []string      `yaml:"monitor"`     // monitored interfaces
	VirtualIPs    []VirtualIP   `yaml:"virtual_ips"` // owned by the primary
	VirtualMAC    bool          `yaml:"virtual_mac"` // FGCP-style 00:09:0f:09:<group>:<index> on VIP interfaces, default true
	GratuitousARP GratuitousARP `yaml:"gratuitous_arp"`
	Security      Security      `yaml:"security"`
	SessionPickup SessionPickup `yaml:"session_pickup"`
	SplitBrain    SplitBrain    `yaml:"split_brain"`
	PingServers   []PingServer  `yaml:"ping_servers"`
	// FailoverHoldTime keeps a new primary from being replaced again for this long
	// after a failover (FGCP's failover-hold-time), damping flaps. Default 0.
	FailoverHoldTime time.Duration `yaml:"failover_hold_time"`
	// PingFlipTimeout is how long a member whose ping servers failed keeps its
	// lowered rank after they recover (FGCP's pingserver-flip-timeout). Default 60m.
	PingFlipTimeout time.Duration `yaml:"ping_flip_timeout"`
	// PingFailoverThreshold: the remote link fails once the summed priority
	// of the failed ping servers reaches it (FGCP's
	// pingserver-failover-threshold). Default 0: any server down.
	PingFailoverThreshold int `yaml:"ping_failover_threshold"`
	// PingSlaveForceReset: a member that lost the primary role through its
	// remote link may take it back by preemption after the flip timeout
	// (FGCP's pingserver-slave-force-reset). Default true.
	PingSlaveForceReset *bool `yaml:"ping_slave_force_reset"`
	// Checks are commands whose failure is a remote-link failure or a
	// priority change (keepalived's track_script).
	Checks []Check `yaml:"checks"`
	// ConfigSync: configuration checksums' exclusions and ruleset sync.
	ConfigSync ConfigSync `yaml:"config_sync"`
	// Fence: a member that is not primary does not forward (see fence.go).
	Fence Fence `yaml:"fence"`
	// LinkFailedSignal: a primary that loses the role through a link
	// failure takes its other data interfaces down for
	// LinkFailedSignalDuration (FGCP's link-failed-signal). Default false, 1s.
	LinkFailedSignal         bool          `yaml:"link_failed_signal"`
	LinkFailedSignalDuration time.Duration `yaml:"link_failed_signal_duration"`
	// Transparent: bridge mode (see transparent.go).
	Transparent Transparent `yaml:"transparent"`
}

// Check is a command run every interval; a non-zero exit or a timeout is a
// failure. Run without a shell.
type Check struct {
	Name     string        `yaml:"name"`
	Command  []string      `yaml:"command"`  // argv; the first is an absolute path
	Interval time.Duration `yaml:"interval"` // default 2s
	Timeout  time.Duration `yaml:"timeout"`  // default 1s; at most interval
	Fall     int           `yaml:"fall"`     // consecutive failures that make it failing, default 1
	Rise     int           `yaml:"rise"`     // consecutive successes that make it pass again, default 1
	// Weight 0 (default): failing is a remote-link failure. Negative: the
	// priority drops by that much while failing; positive: it rises by that
	// much while passing (keepalived's weight).
	Weight int `yaml:"weight"`
}

// Heartbeat configures the HA links.
type Heartbeat struct {
	Interval      time.Duration   `yaml:"interval"`       // default 200ms, 10ms..10s
	LostThreshold int             `yaml:"lost_threshold"` // default 6, 1..60
	Port          int             `yaml:"port"`           // UDP, default 703
	Links         []HeartbeatLink `yaml:"links"`          // at least one
	// RealtimePriority is the SCHED_FIFO priority of the one thread that
	// sends heartbeats (1..99); 0, the default, keeps normal scheduling.
	RealtimePriority int `yaml:"realtime_priority"`
}

// HeartbeatLink is one HA interface and the peers reached over it.
type HeartbeatLink struct {
	Interface string       `yaml:"interface"`
	Priority  int          `yaml:"priority"` // 0..255, default 100; the highest working link is "in use"
	Peers     []netip.Addr `yaml:"peers"`    // unicast addresses of the other members on this link
}

// VirtualIP is one address the primary holds.
type VirtualIP struct {
	Interface string       `yaml:"interface"`
	Address   netip.Prefix `yaml:"address"` // e.g. 192.0.2.1/24 or 2001:db8::1/64
}

// GratuitousARP configures announcements after a takeover.
type GratuitousARP struct {
	// Enabled: false sends no announcement at all (FGCP's gratuitous-arps
	// disable). Default true.
	Enabled  *bool         `yaml:"enabled"`
	Count    int           `yaml:"count"`    // announcements after the first, default 5
	Interval time.Duration `yaml:"interval"` // default 1s (FGCP's 8s is slow for most switches)
}

// Security configures authentication and encryption of the HA traffic.
type Security struct {
	Authentication *bool         `yaml:"authentication"` // default true; false means plaintext, logged as a warning
	Encryption     *bool         `yaml:"encryption"`     // default true: AEAD-encrypt payloads; false: authenticate only
	MaxClockSkew   time.Duration `yaml:"max_clock_skew"` // default 60s; 0 disables the freshness check
	// Passphrase allows key_file lines that are not 32 random bytes; they
	// are then stretched with Argon2id, salted with group_id. Default false.
	Passphrase bool `yaml:"passphrase"`
	// MinSyncVersion refuses session-sync connections below this protocol
	// version. Default 3, release 0.1.0's and the first whose subordinate
	// challenges the primary (versions 1 and 2 can be replayed).
	MinSyncVersion int `yaml:"min_sync_version"`
}

// SessionPickup configures session synchronisation (FGCP's session-pickup).
type SessionPickup struct {
	Enabled           bool          `yaml:"enabled"`             // default false
	Delay             time.Duration `yaml:"delay"`               // sync only sessions older than this, default 0
	Connectionless    bool          `yaml:"connectionless"`      // UDP and ICMP too; default false (TCP only)
	NAT               *bool         `yaml:"nat"`                 // sync NATed sessions, default true
	Expectation       bool          `yaml:"expectation"`         // sync expectations (FTP and other helpers), default false
	TCPWindowTracking bool          `yaml:"tcp_window_tracking"` // keep TCP window checks on synced sessions; default false (liberal)
	Port              int           `yaml:"port"`                // TCP, default 703
	Links             []string      `yaml:"links"`               // heartbeat link interfaces to use, default all
	MaxSessions       int           `yaml:"max_sessions"`        // default 2000000
	Backend           string        `yaml:"backend"`             // kernel|memory, default kernel
	Filter            SessionFilter `yaml:"filter"`
	// AntiEntropy is how often the primary compares digests of its table
	// with each subordinate's and resends what differs; 0 turns it off.
	AntiEntropy    time.Duration `yaml:"anti_entropy"`    // default 5s
	ReliableEvents bool          `yaml:"reliable_events"` // NETLINK_BROADCAST_ERROR on the event socket; default false
	// DumpInterval is how often the primary dumps its whole session table
	// to repair what its events missed without saying so: nil (unset)
	// every 10s below 100,000 sessions and every 2 min above; 0 never.
	DumpInterval *time.Duration `yaml:"dump_interval"`
	// InstallDelay is how long a subordinate holds a new session in memory
	// before installing it in its kernel table; a session that ends
	// sooner never costs a kernel install. At a takeover the held ones
	// are installed before the addresses are claimed. Default 0 (at once).
	InstallDelay time.Duration `yaml:"install_delay"`
	// MaxHeldBack bounds what install_delay holds back, so what a takeover
	// installs first: beyond it the oldest held sessions are installed at
	// once. Default 100,000; 0 no bound.
	MaxHeldBack int `yaml:"max_held_back"`
}

// SessionFilter limits which sessions are synced. Empty lists match everything.
type SessionFilter struct {
	Zones     []uint16       `yaml:"zones"`
	Marks     []MarkMatch    `yaml:"marks"`
	Addresses []netip.Prefix `yaml:"addresses"` // original source or destination inside one of these
}

// MarkMatch matches a conntrack mark: (mark & mask) == value.
type MarkMatch struct {
	Value uint32 `yaml:"value"`
	Mask  uint32 `yaml:"mask"` // default 0xffffffff
}

// SplitBrain configures what a member does when it hears no peer.
type SplitBrain struct {
	// Quorum: a member may be primary only while it sees a strict majority of
	// the members (itself included; the witness counts as one vote). Default false.
	Quorum  bool       `yaml:"quorum"`
	Witness netip.Addr `yaml:"witness"` // optional address pinged over a data link
}

// PingServer is a remote target checked through a monitored interface
// (FGCP's pingserver-monitor-interface).
type PingServer struct {
	Interface string        `yaml:"interface"`
	Target    netip.Addr    `yaml:"target"`
	Interval  time.Duration `yaml:"interval"` // default 1s
	Failures  int           `yaml:"failures"` // consecutive failures that mark it down, default 5
	// Priority counts toward ping_failover_threshold while the server is
	// down (FGCP's link-monitor ha-priority). Default 1.
	Priority int `yaml:"priority"`
}
