package cluster

import (
	"fmt"
	"slices"
	"strings"
)

// reconfigure applies the settings that may change while the member runs:
// priority, override, uptime margin, failover hold time, the monitored
// interfaces, the number of ping servers, the checks and the synced
// configuration parts. The rest (node id, links,
// timers, session pickup, quorum) are fixed for the node's life; the daemon
// refuses a reload that changes them. The new settings take effect in the
// election that follows at once: a change that calls for a role change (a
// lower priority with override on) makes it, any other makes none.
func (n *Node) reconfigure(e Reconfigure) {
	c := e.Config
	var changed []string
	note := func(name string, from, to any) {
		if fmt.Sprint(from) != fmt.Sprint(to) {
			changed = append(changed, fmt.Sprintf("%s %v -> %v", name, from, to))
		}
	}
	note("priority", n.cfg.Priority, c.Priority)
	note("override", n.cfg.Override, c.Override)
	note("uptime_margin", n.cfg.UptimeMargin, c.UptimeMargin)
	note("failover_hold_time", n.cfg.FailoverHoldTime, c.FailoverHoldTime)
	note("monitor", n.cfg.Monitored, c.Monitored)
	note("ping servers", n.cfg.PingServers, c.PingServers)
	note("ping_failover_threshold", n.cfg.PingThreshold, c.PingThreshold)
	note("ping_flip_timeout", n.cfg.PingFlipTimeout, c.PingFlipTimeout)
	note("ping_slave_force_reset", n.cfg.PingForceReset, c.PingForceReset)
	note("checks", n.cfg.Checks, c.Checks)
	note("config_sync parts", n.cfg.SyncedParts, c.SyncedParts)
	if len(changed) == 0 {
		return
	}
	n.cfg.Priority, n.cfg.Override = c.Priority, c.Override
	n.cfg.UptimeMargin, n.cfg.FailoverHoldTime = c.UptimeMargin, c.FailoverHoldTime
	// A newly monitored interface counts as down until the link watcher
	// says otherwise, as at start: a member must not claim to be better
	// than it is. One no longer monitored is forgotten.
	mon := make(map[string]bool, len(c.Monitored))
	for _, m := range c.Monitored {
		mon[m] = n.monitored[m]
	}
	n.monitored = mon
	n.cfg.Monitored = slices.Clone(c.Monitored)
	if c.PingServers != n.cfg.PingServers {
		// The pingers start over: servers count only once they answer.
		n.pingUp = min(n.pingUp, c.PingServers)
		n.cfg.PingServers = c.PingServers
	}
	n.cfg.PingThreshold, n.cfg.PingFlipTimeout, n.cfg.PingForceReset = c.PingThreshold, c.PingFlipTimeout, c.PingForceReset
	// The check runner starts over too: a check counts as passing until
	// it has failed `fall` times.
	n.cfg.Checks = slices.Clone(c.Checks)
	// The synced parts are compared again after this event (checkConfig):
	// sync turned on asks the primary at once, turned off ends pending.
	n.cfg.SyncedParts = slices.Clone(c.SyncedParts)
	clear(n.checkFailing)
	for _, p := range n.peers {
		delete(p.warned, "override") // worth saying again if they now differ
		delete(p.warned, "monitor")
	}
	n.sendNow = true
	n.notice(false, true, "configuration reloaded: %s", strings.Join(changed, ", "))
}
