package daemon

import (
	"time"

	"github.com/hagate/hagate/internal/cluster"
	"github.com/hagate/hagate/internal/config"
)

// remoteConfig maps the remote-link settings (ping servers' threshold, flip
// timeout, force reset, check commands) onto the state machine's.
func remoteConfig(cfg *config.Config, cc *cluster.Config) {
	cc.PingThreshold = cfg.PingFailoverThreshold
	cc.PingFlipTimeout = cfg.PingFlipTimeout
	cc.PingForceReset = cfg.PingSlaveForceReset == nil || *cfg.PingSlaveForceReset
	for _, c := range cfg.Checks {
		cc.Checks = append(cc.Checks, cluster.CheckConfig{Name: c.Name, Weight: c.Weight})
	}
}

// pingEvent tells the node what the ping servers count now: the pinger
// owns their state, the node weighs it.
func (d *Daemon) pingEvent() cluster.PingChange {
	up, down := d.pings.Counts()
	return cluster.PingChange{Now: time.Now(), Up: up, DownPriority: down}
}
