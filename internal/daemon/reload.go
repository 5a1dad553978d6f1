package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/hagate/hagate/internal/cluster"
	"github.com/hagate/hagate/internal/config"
	"github.com/hagate/hagate/internal/history"
	"github.com/hagate/hagate/internal/netif"
	"github.com/hagate/hagate/internal/pinger"
	"github.com/hagate/hagate/internal/sessions"
)

// Reloading (SIGHUP, `hagate reload`) applies every setting that can change
// while the member runs, without a role change unless the new settings call
// for one. The settings below are fixed for the daemon's life: a file that
// changes one is refused whole, with the reason, and nothing changes.
var restartOnly = []struct {
	key string
	get func(*config.Config) any
}{
	{"node_id", func(c *config.Config) any { return c.NodeID }},
	{"group_id", func(c *config.Config) any { return c.GroupID }},
	{"heartbeat", func(c *config.Config) any { return c.Heartbeat }},
	{"hello_holddown", func(c *config.Config) any { return c.HelloHolddown }},
	{"control_socket", func(c *config.Config) any { return c.ControlSocket }},
	{"control_group", func(c *config.Config) any { return c.ControlGroup }},
	{"state_dir", func(c *config.Config) any { return c.StateDir }},
	{"log_format", func(c *config.Config) any { return c.LogFormat }},
	{"virtual_mac", func(c *config.Config) any { return c.VirtualMAC }},
	{"fence.enabled", func(c *config.Config) any { return c.Fence.Enabled }},
	{"transparent", func(c *config.Config) any { return c.Transparent }},
	{"link_failed_signal", func(c *config.Config) any { return c.LinkFailedSignal }},
	{"security.authentication", func(c *config.Config) any { return c.AuthEnabled() }},
	{"security.encryption", func(c *config.Config) any { return c.EncryptionEnabled() }},
	{"security.max_clock_skew", func(c *config.Config) any { return c.Security.MaxClockSkew }},
	{"security.min_sync_version", func(c *config.Config) any { return c.Security.MinSyncVersion }},
	{"security.passphrase", func(c *config.Config) any { return c.Security.Passphrase }},
	{"split_brain", func(c *config.Config) any { return c.SplitBrain }},
	{"session_pickup.enabled", func(c *config.Config) any { return c.SessionPickup.Enabled }},
	{"session_pickup.port", func(c *config.Config) any { return c.SessionPickup.Port }},
	{"session_pickup.links", func(c *config.Config) any { return c.SessionPickup.Links }},
	{"session_pickup.backend", func(c *config.Config) any { return c.SessionPickup.Backend }},
	{"session_pickup.expectation", func(c *config.Config) any { return c.SessionPickup.Expectation }},
	{"session_pickup.tcp_window_tracking", func(c *config.Config) any { return c.SessionPickup.TCPWindowTracking }},
	{"session_pickup.max_sessions", func(c *config.Config) any { return c.SessionPickup.MaxSessions }},
	{"session_pickup.delay", func(c *config.Config) any { return c.SessionPickup.Delay }},
	// The exchange's listener is bound at start, and both ends of an
	// exchange must agree on its largest message.
	{"config_sync.port", func(c *config.Config) any { return c.ConfigSync.Port }},
	{"config_sync.max_size", func(c *config.Config) any { return c.ConfigSync.MaxSize }},
	{"session_pickup.anti_entropy", func(c *config.Config) any { return c.SessionPickup.AntiEntropy }},
	{"session_pickup.reliable_events", func(c *config.Config) any { return c.SessionPickup.ReliableEvents }},
	{"session_pickup.install_delay", func(c *config.Config) any { return c.SessionPickup.InstallDelay }},
	{"session_pickup.max_held_back", func(c *config.Config) any { return c.SessionPickup.MaxHeldBack }},
	{"session_pickup.dump_interval", func(c *config.Config) any { return c.SessionPickup.DumpInterval }},
}

// ReloadResult says what a reload changed.
type ReloadResult struct {
	Changed []string `json:"changed"`
}

// errNoConfigFile: the daemon was built from a configuration in memory.
var errNoConfigFile = errors.New("started without a configuration file: nothing to reload")

// reload rereads the configuration file and applies it. In the loop
// goroutine.
func (d *Daemon) reload() (ReloadResult, error) {
	if d.cfgPath == "" {
		return ReloadResult{}, errNoConfigFile
	}
	defer d.reloading()()
	next, err := config.Load(d.cfgPath)
	if err != nil {
		return ReloadResult{}, fmt.Errorf("configuration not reloaded, the running one stays: %w", err)
	}
	var fixed []string
	for _, k := range restartOnly {
		if !reflect.DeepEqual(k.get(d.cfg), k.get(next)) {
			fixed = append(fixed, k.key)
		}
	}
	if len(fixed) > 0 {
		return ReloadResult{}, fmt.Errorf("configuration not reloaded, the running one stays: %s cannot change while hagate runs (restart it, on a subordinate first)", strings.Join(fixed, ", "))
	}
	// The keys first: if the key file is bad, nothing changes.
	if err := d.reloadKeys(next.KeyFile); err != nil {
		return ReloadResult{}, fmt.Errorf("configuration not reloaded, the running one stays: %w", err)
	}
	prev := d.cfg
	d.cfg = next
	var res ReloadResult
	changed := func(key string, a, b any) bool {
		if reflect.DeepEqual(a, b) {
			return false
		}
		res.Changed = append(res.Changed, key)
		return true
	}
	if changed("log_level", prev.LogLevel, next.LogLevel) && d.level != nil {
		d.level.Set(LogLevel(next.LogLevel))
	}
	changed("priority", prev.Priority, next.Priority)
	changed("override", prev.Override, next.Override)
	changed("uptime_margin", prev.UptimeMargin, next.UptimeMargin)
	changed("failover_hold_time", prev.FailoverHoldTime, next.FailoverHoldTime)
	if changed("monitor", prev.Monitor, next.Monitor) {
		if err := d.watchLinks(); err != nil {
			d.log.Error("reload: link watch", "err", err)
		}
	}
	if changed("ping_servers", prev.PingServers, next.PingServers) || changed("ping_flip_timeout", prev.PingFlipTimeout, next.PingFlipTimeout) {
		if err := d.startPings(); err != nil {
			d.log.Error("reload: ping servers", "err", err)
		}
	}
	if changed("checks", prev.Checks, next.Checks) {
		if err := d.startChecks(); err != nil {
			d.log.Error("reload: checks", "err", err)
		}
	}
	changed("ping_failover_threshold", prev.PingFailoverThreshold, next.PingFailoverThreshold)
	changed("ping_slave_force_reset", prev.PingSlaveForceReset, next.PingSlaveForceReset)
	// The state machine gets its new settings after the link watch and
	// the pingers, whose first reports follow.
	d.step(cluster.Reconfigure{Now: time.Now(), Config: clusterConfig(next)})
	if changed("virtual_ips", prev.VirtualIPs, next.VirtualIPs) && d.holding {
		d.reclaimAddresses(prev.VirtualIPs)
	}
	if changed("fence.interfaces", prev.FenceInterfaces(), next.FenceInterfaces()) {
		d.refitFence()
	}
	changed("link_failed_signal_duration", prev.LinkFailedSignalDuration, next.LinkFailedSignalDuration)
	changed("gratuitous_arp", prev.GratuitousARP, next.GratuitousARP)
	changed("notify", prev.Notify, next.Notify)
	if changed("metrics_listen", prev.MetricsListen, next.MetricsListen) {
		if err := d.serveMetrics(); err != nil {
			d.log.Error("reload: metrics", "err", err)
		}
	}
	if d.pickup != nil {
		sp, np := prev.SessionPickup, next.SessionPickup
		if changed("session_pickup.filter", sp.Filter, np.Filter) || changed("session_pickup.connectionless", sp.Connectionless, np.Connectionless) ||
			changed("session_pickup.nat", prev.PickupNAT(), next.PickupNAT()) {
			d.pickup.e.Do(sessions.SetFilter{Filter: pickupFilter(next)})
		}
	}
	changed("config_sync.enabled", prev.ConfigSync.Enabled, next.ConfigSync.Enabled)
	changed("config_sync.parts", prev.ConfigSync.Parts, next.ConfigSync.Parts)
	changed("config_sync.exclude", prev.ConfigSync.Exclude, next.ConfigSync.Exclude)
	changed("config_sync.route_tables", prev.ConfigSync.RouteTables, next.ConfigSync.RouteTables)
	// Every reload: any cluster-wide key changes the config checksum.
	if err := d.conf.reload(next); err != nil {
		d.log.Error("reload: configuration checksums", "err", err)
	}
	d.log.Info("configuration reloaded", "changed", res.Changed)
	d.record(history.Entry{Event: "event", Reason: "configuration reloaded: " + strings.Join(append([]string{}, res.Changed...), ", ")})
	return res, nil
}

// LogLevel is the slog level of log_level's words.
func LogLevel(s string) slog.Level {
	return map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}[s]
}

// watchLinks (re)starts the link watch over the monitored and heartbeat
// interfaces, and feeds their states to the state machine.
func (d *Daemon) watchLinks() error {
	watched := slices.Clone(d.cfg.Monitor)
	for _, l := range d.cfg.Heartbeat.Links {
		if !slices.Contains(watched, l.Interface) {
			watched = append(watched, l.Interface)
		}
	}
	ctx, cancel := context.WithCancel(d.bg)
	w, err := d.nif.WatchLog(ctx, watched, d.log)
	if err != nil {
		cancel()
		return fmt.Errorf("link watch: %w", err)
	}
	if d.stopWatch != nil {
		d.stopWatch()
	}
	d.watch, d.stopWatch = w, cancel
	if d.node != nil {
		for _, name := range slices.Sorted(maps.Keys(w.Initial)) {
			d.step(cluster.LinkChange{Now: time.Now(), Interface: name, Up: w.Initial[name]})
		}
	}
	return nil
}

// startPings (re)starts remote link monitoring (ping_servers).
func (d *Daemon) startPings() error {
	if d.stopPings != nil {
		d.stopPings()
		d.pings, d.stopPings = nil, nil
	}
	if len(d.cfg.PingServers) == 0 {
		if d.node != nil {
			d.step(cluster.PingChange{Now: time.Now(), Up: 0})
		}
		return nil
	}
	var ts []pinger.Target
	for _, p := range d.cfg.PingServers {
		ts = append(ts, pinger.Target{Interface: p.Interface, Addr: p.Target, Interval: p.Interval, Failures: p.Failures, Priority: p.Priority})
	}
	p, err := pinger.New(ts, d.cfg.PingFlipTimeout, d.log)
	if err != nil {
		return fmt.Errorf("ping_servers: %w", err)
	}
	ctx, cancel := context.WithCancel(d.bg)
	d.pings, d.stopPings = p, cancel
	d.spawn("ping servers", func() error { return p.Run(ctx) })
	if d.node != nil {
		// Ping servers count only once they answer.
		d.step(d.pingEvent())
	}
	return nil
}

// serveMetrics (re)starts the metrics endpoint on metrics_listen.
func (d *Daemon) serveMetrics() error {
	if d.stopMetrics != nil {
		d.stopMetrics()
		d.stopMetrics = nil
	}
	if d.cfg.MetricsListen == "" {
		return nil
	}
	// Listen here, so that an address in use is reported at once.
	ln, err := net.Listen("tcp", d.cfg.MetricsListen)
	if err != nil {
		return fmt.Errorf("metrics_listen: %w", err)
	}
	ctx, cancel := context.WithCancel(d.bg)
	d.stopMetrics = cancel
	d.spawn("metrics", func() error { return d.met.ServeListener(ctx, ln) })
	return nil
}

// reclaimAddresses moves a holding primary from the virtual IPs it had to
// the configured ones: the removed ones go, the new ones come and are
// announced, the others stay up throughout.
func (d *Daemon) reclaimAddresses(had []config.VirtualIP) {
	for _, v := range had {
		if !slices.Contains(d.cfg.VirtualIPs, v) {
			if err := d.nif.DelAddress(v.Interface, v.Address); err != nil {
				d.log.Error("virtual IP", "err", err)
			}
		}
	}
	var targets []netif.Target
	for _, v := range d.cfg.VirtualIPs {
		if slices.Contains(had, v) {
			continue
		}
		if err := d.nif.AddAddress(v.Interface, v.Address); err != nil {
			d.log.Error("virtual IP", "err", err)
			continue
		}
		targets = append(targets, netif.Target{Interface: v.Interface, Addr: v.Address.Addr()})
	}
	if len(targets) > 0 {
		d.announce(targets)
	}
}
