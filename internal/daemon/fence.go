package daemon

import (
	"fmt"
	"time"

	"github.com/hagate/hagate/internal/fence"
	"github.com/hagate/hagate/internal/history"
)

// The fence (only the primary forwards) and the link-failed signal: the
// node says when, this carries them out.

// fencer is what the daemon needs of internal/fence.
type fencer interface {
	Raise() error
	Lower() error
	Interfaces() []string
	Ports() []string
}

// startFence prepares the fence over the configured interfaces. The node
// raises it with its first actions; the daemon lowers it when it stops
// (a member that is no longer running hagate is a plain router again), so
// a crash leaves it raised until hagate starts again. With fencing off, a
// fence a crashed run left behind is lowered now.
func (d *Daemon) startFence(cleanup *undo) {
	ifaces := d.cfg.FenceInterfaces()
	if !d.cfg.Fenced() {
		if err := fence.New(nil).Lower(); err != nil {
			d.log.Error("fence: removing a table an earlier run left", "err", err)
		}
		return
	}
	d.fence = fence.New(ifaces).Bridged(d.cfg.Transparent.Ports)
	cleanup.push(func() {
		d.setLearning(true)
		if err := d.fence.Lower(); err != nil {
			d.log.Error("fence: lowering at stop", "err", err)
		}
	})
}

// refitFence moves the fence to the interfaces of a reloaded
// configuration (fence.enabled itself needs a restart); a raised fence is
// rewritten whole, in one transaction, over the new ones.
func (d *Daemon) refitFence() {
	if d.fence == nil {
		return
	}
	d.fence = fence.New(d.cfg.FenceInterfaces()).Bridged(d.cfg.Transparent.Ports)
	if d.node.Fenced() {
		d.raiseFence()
	}
}

// raiseFence drops forwarded traffic of the data interfaces.
func (d *Daemon) raiseFence() {
	if d.fence == nil {
		return
	}
	start := time.Now()
	if err := d.fence.Raise(); err != nil {
		d.log.Error("fence: this member may forward stray traffic while not primary", "err", err)
		return
	}
	took := time.Since(start)
	d.setLearning(false)
	d.log.Info("fence raised: not forwarding on the data interfaces", "interfaces", d.fence.Interfaces(), "bridge_ports", d.cfg.Transparent.Ports, "took", took)
}

// setLearning turns MAC learning on a transparent bridge's ports on (the
// primary) or off (the others).
func (d *Daemon) setLearning(on bool) {
	for _, p := range d.cfg.Transparent.Ports {
		if err := d.nif.SetLearning(p, on); err != nil {
			d.log.Error("transparent mode", "err", err)
		}
	}
}

// lowerFence forwards again.
func (d *Daemon) lowerFence() {
	if d.fence == nil {
		return
	}
	d.setLearning(true)
	// Timed: it lies between the sessions being usable and the addresses
	// being claimed, so it adds to a takeover's gap.
	start := time.Now()
	if err := d.fence.Lower(); err != nil {
		// The addresses still come up: a primary that cannot forward is
		// no worse than no primary, and the error says why.
		d.log.Error("fence: not lowered, this primary does not forward", "err", err)
		return
	}
	d.log.Info("fence lowered: forwarding", "took", time.Since(start))
	d.relearn()
}

// signalLinkFailure takes the data interfaces that are still up down for
// link_failed_signal_duration, in the background: the loop keeps
// heartbeating meanwhile. A daemon stopping brings them up at once.
func (d *Daemon) signalLinkFailure() {
	ifaces := d.cfg.DataInterfaces()
	dur := d.cfg.LinkFailedSignalDuration
	d.record(history.Entry{Event: "event", Reason: fmt.Sprintf("link-failed signal: data interfaces %v down for %s", ifaces, dur)})
	d.spawn("link-failed signal", func() error {
		flapped, err := d.nif.Flap(d.bg, ifaces, dur)
		d.log.Warn("link-failed signal: data interfaces taken down for a moment so the switches relearn", "interfaces", flapped, "for", dur)
		if err != nil {
			d.log.Error("link-failed signal", "err", err)
		}
		return nil
	})
}
