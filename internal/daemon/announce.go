package daemon

import (
	"github.com/hagate/hagate/internal/config"
	"github.com/hagate/hagate/internal/netif"
)

// announce starts the gratuitous ARP / unsolicited NA announcements of the
// virtual addresses a new primary just took, unless gratuitous_arp.enabled
// is false (FGCP's gratuitous-arps disable): then none at all, not even
// the first.
func (d *Daemon) announce(targets []netif.Target) {
	if !announces(d.cfg) {
		d.log.Info("gratuitous ARP disabled: virtual addresses not announced", "count", len(targets))
		return
	}
	d.ann.Start(d.bg, targets, d.cfg.GratuitousARP.Count, d.cfg.GratuitousARP.Interval)
}

// announces reports whether a takeover is announced at all.
func announces(cfg *config.Config) bool {
	return cfg.GratuitousARP.Enabled == nil || *cfg.GratuitousARP.Enabled
}
