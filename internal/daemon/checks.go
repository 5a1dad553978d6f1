package daemon

import (
	"context"
	"fmt"
	"time"

	"github.com/hagate/hagate/internal/checks"
	"github.com/hagate/hagate/internal/cluster"
)

// startChecks (re)starts the check commands (checks:). The node is told
// of every check's transitions; a restarted check passes until it fails
// `fall` times again.
func (d *Daemon) startChecks() error {
	if d.stopChecks != nil {
		d.stopChecks()
		d.checks, d.stopChecks = nil, nil
	}
	if len(d.cfg.Checks) == 0 {
		return nil
	}
	var cs []checks.Check
	for _, c := range d.cfg.Checks {
		cs = append(cs, checks.Check{Name: c.Name, Command: c.Command, Interval: c.Interval, Timeout: c.Timeout, Fall: c.Fall, Rise: c.Rise})
	}
	r, err := checks.New(cs)
	if err != nil {
		return fmt.Errorf("checks: %w", err)
	}
	ctx, cancel := context.WithCancel(d.bg)
	d.checks, d.stopChecks = r, cancel
	d.spawn("checks", func() error { return r.Run(ctx) })
	return nil
}

// checkChanges is the running checks' transitions (nil: none run).
func (d *Daemon) checkChanges() <-chan checks.Change {
	if d.checks == nil {
		return nil
	}
	return d.checks.Changes()
}

// checkEvent turns a check's transition into the node's event.
func (d *Daemon) checkEvent(ch checks.Change) cluster.CheckChange {
	if ch.Failing {
		d.log.Warn("check failing", "check", ch.Name)
	} else {
		d.log.Info("check passing", "check", ch.Name)
	}
	return cluster.CheckChange{Now: time.Now(), Name: ch.Name, Failing: ch.Failing}
}

// checkStatus is what status shows of the checks.
func (d *Daemon) checkStatus() []checks.Status {
	if d.checks == nil {
		return nil
	}
	return d.checks.Status()
}
