package config

import (
	"fmt"
	"math"
	"time"
)

// Defaults. Where they differ from FGCP's, docs/config.md says why.
const (
	DefaultPriority        = 128
	DefaultUptimeMargin    = 300 * time.Second
	DefaultControlSocket   = "/run/hagate/hagate.sock"
	DefaultStateDir        = "/var/lib/hagate"
	DefaultLogLevel        = "info"
	DefaultPingFlipTimeout = 60 * time.Minute

	DefaultHeartbeatInterval = 200 * time.Millisecond
	DefaultLostThreshold     = 6
	DefaultPort              = 703 // heartbeat (UDP) and session pickup (TCP)
	DefaultLinkPriority      = 100
	// MinHelloHolddown is the floor of the default hello_holddown, which is
	// otherwise twice the dead interval.
	MinHelloHolddown = 5 * time.Second

	DefaultARPCount    = 5
	DefaultARPInterval = time.Second

	DefaultMaxClockSkew = 60 * time.Second
	// DefaultMinSyncVersion: the session-sync protocol version of release
	// 0.1.0, the first with the subordinate's challenge.
	DefaultMinSyncVersion = 3

	DefaultMaxSessions = 2_000_000
	// DefaultMaxHeldBack bounds what a takeover installs before it claims
	// the addresses because of install_delay: about 1.4 s at the 14 µs per
	// session measured (docs/benchmarks.md).
	DefaultMaxHeldBack = 100_000
	DefaultAntiEntropy = 5 * time.Second
	DefaultBackend     = "kernel"
	DefaultMarkMask    = math.MaxUint32

	DefaultLinkFailedSignalDuration = time.Second

	DefaultPingInterval = time.Second
	DefaultPingFailures = 5
	DefaultPingPriority = 1

	DefaultCheckInterval = 2 * time.Second
	DefaultCheckTimeout  = time.Second
)

// applyDefaults fills every key the file left out. set reports whether the
// file gave a key path a value, so that an explicit 0 or false stays.
func applyDefaults(c *Config, set func(path string) bool) {
	def(set, "priority", &c.Priority, DefaultPriority)
	def(set, "uptime_margin", &c.UptimeMargin, DefaultUptimeMargin)
	def(set, "control_socket", &c.ControlSocket, DefaultControlSocket)
	def(set, "state_dir", &c.StateDir, DefaultStateDir)
	def(set, "log_level", &c.LogLevel, DefaultLogLevel)
	def(set, "log_format", &c.LogFormat, "text")
	def(set, "ping_flip_timeout", &c.PingFlipTimeout, DefaultPingFlipTimeout)

	hb := &c.Heartbeat
	def(set, "heartbeat.interval", &hb.Interval, DefaultHeartbeatInterval)
	def(set, "heartbeat.lost_threshold", &hb.LostThreshold, DefaultLostThreshold)
	def(set, "heartbeat.port", &hb.Port, DefaultPort)
	for i := range hb.Links {
		def(set, fmt.Sprintf("heartbeat.links[%d].priority", i), &hb.Links[i].Priority, DefaultLinkPriority)
	}
	// Only from values validation will accept: anything else could overflow,
	// and is reported on its own key.
	if !set("hello_holddown") && validInterval(hb.Interval) && validLostThreshold(hb.LostThreshold) {
		c.HelloHolddown = max(MinHelloHolddown, 2*c.DeadInterval())
	}

	// FGCP's virtual MAC keeps clients' ARP entries right across a
	// failover and stray traffic off the subordinates.
	def(set, "virtual_mac", &c.VirtualMAC, true)
	def(set, "fence.enabled", &c.Fence.Enabled, true)
	def(set, "link_failed_signal_duration", &c.LinkFailedSignalDuration, DefaultLinkFailedSignalDuration)

	def(set, "gratuitous_arp.count", &c.GratuitousARP.Count, DefaultARPCount)
	def(set, "gratuitous_arp.interval", &c.GratuitousARP.Interval, DefaultARPInterval)

	sec := &c.Security
	if sec.Authentication == nil {
		sec.Authentication = ptr(true)
	}
	if sec.Encryption == nil {
		// Follows authentication: "authentication: false" alone must not
		// leave a contradiction for validation to refuse.
		sec.Encryption = ptr(*sec.Authentication)
	}
	def(set, "security.max_clock_skew", &sec.MaxClockSkew, DefaultMaxClockSkew)
	def(set, "security.min_sync_version", &sec.MinSyncVersion, DefaultMinSyncVersion)

	sp := &c.SessionPickup
	if sp.NAT == nil {
		sp.NAT = ptr(true)
	}
	def(set, "session_pickup.port", &sp.Port, DefaultPort)
	def(set, "session_pickup.max_sessions", &sp.MaxSessions, DefaultMaxSessions)
	def(set, "session_pickup.max_held_back", &sp.MaxHeldBack, DefaultMaxHeldBack)
	def(set, "session_pickup.backend", &sp.Backend, DefaultBackend)
	def(set, "session_pickup.anti_entropy", &sp.AntiEntropy, DefaultAntiEntropy)
	if len(sp.Links) == 0 {
		seen := make(map[string]bool)
		for _, l := range hb.Links {
			if !seen[l.Interface] {
				seen[l.Interface] = true
				sp.Links = append(sp.Links, l.Interface)
			}
		}
	}
	for i := range sp.Filter.Marks {
		def(set, fmt.Sprintf("session_pickup.filter.marks[%d].mask", i), &sp.Filter.Marks[i].Mask, DefaultMarkMask)
	}

	applyConfigSyncDefaults(&c.ConfigSync, set)

	for i := range c.PingServers {
		p := &c.PingServers[i]
		def(set, fmt.Sprintf("ping_servers[%d].interval", i), &p.Interval, DefaultPingInterval)
		def(set, fmt.Sprintf("ping_servers[%d].failures", i), &p.Failures, DefaultPingFailures)
		def(set, fmt.Sprintf("ping_servers[%d].priority", i), &p.Priority, DefaultPingPriority)
	}
	if c.PingSlaveForceReset == nil {
		c.PingSlaveForceReset = ptr(true)
	}
	if c.GratuitousARP.Enabled == nil {
		c.GratuitousARP.Enabled = ptr(true)
	}
	for i := range c.Checks {
		ck := &c.Checks[i]
		def(set, fmt.Sprintf("checks[%d].interval", i), &ck.Interval, DefaultCheckInterval)
		def(set, fmt.Sprintf("checks[%d].timeout", i), &ck.Timeout, min(DefaultCheckTimeout, ck.Interval))
		def(set, fmt.Sprintf("checks[%d].fall", i), &ck.Fall, 1)
		def(set, fmt.Sprintf("checks[%d].rise", i), &ck.Rise, 1)
	}
}

func def[T any](set func(string) bool, path string, dst *T, v T) {
	if !set(path) {
		*dst = v
	}
}

func ptr[T any](v T) *T { return &v }
