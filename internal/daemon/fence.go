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
	Remove() error
	Close()
	Interfaces() []string
	Ports() []string
}

// startFence prepares the fence over the configured interfaces. The node
// raises it with its first actions, which writes the fence's table (over
// whatever table a crashed run left); the daemon removes the table when it
// stops (a member that is no longer running hagate is a plain router
// again), so a crash leaves it as it was, raised on a member that was not
// primary, until hagate starts again. With fencing off, a table a crashed
// run left behind is removed now.
func (d *Daemon) startFence(cleanup *undo) {
	ifaces := d.cfg.FenceInterfaces()
	if !d.cfg.Fenced() {
		f := fence.New(nil)
		if err := f.Remove(); err != nil {
			d.log.Error("fence: removing a table an earlier run left", "err", err)
		}
		f.Close()
		return
	}
	d.fence = fence.New(ifaces).Bridged(d.cfg.Transparent.Ports)
	cleanup.push(func() {
		d.setLearning(true)
		if err := d.fence.Remove(); err != nil {
			d.log.Error("fence: removing at stop", "err", err)
		}
		d.fence.Close()
	})
}

// refitFence moves the fence to the interfaces of a reloaded
// configuration (fence.enabled itself needs a restart). The new fence
// writes its table whole, in one transaction, at its first change: now if
// the member is fenced, else when it is next fenced (until then the old
// table stays, lowered).
func (d *Daemon) refitFence() {
	if d.fence == nil {
		return
	}
	d.fence.Close()
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
