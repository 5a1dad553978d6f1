package daemon

import (
	"fmt"
	"time"

	"github.com/hagate/hagate/internal/cluster"
	"github.com/hagate/hagate/internal/heartbeat"
)

// newSender builds the heartbeat sender: the loop hands it each heartbeat
// and it sends them from a thread of its own (real-time if configured),
// copying the last one when the loop is late, for copyWindow at most (see
// heartbeat.Sender).
func (d *Daemon) newSender() error {
	s, err := heartbeat.NewSender(d.tr.Send, heartbeat.SenderOptions{
		Interval: d.cfg.Heartbeat.Interval, StaleAfter: copyWindow(d.cfg.DeadInterval()),
		Priority: d.cfg.Heartbeat.RealtimePriority, Sent: d.heartbeatSent, Log: d.log,
	})
	if err != nil {
		return fmt.Errorf("heartbeat: %w", err)
	}
	d.sender = s
	return nil
}

// minCopyWindow is the least time the sender covers a late loop with
// copies of its last heartbeat. A normal-priority process on a busy machine
// is held up for tens of milliseconds now and then (47 ms measured under
// the benchmark's CPU hog), which is more than a dead interval of 10 ms x 3:
// the copies then stopped and a subordinate took over from a primary whose
// loop was only late, while its kernel forwarded throughout. A loop stuck
// for good is still found: the copies stop after the window.
const minCopyWindow = 100 * time.Millisecond

// copyWindow is how long the sender copies a late loop's last heartbeat:
// one dead interval, and at least minCopyWindow.
func copyWindow(dead time.Duration) time.Duration {
	return max(dead, minCopyWindow)
}

// jitterWindow is how long the largest send lateness stays in
// hagate_heartbeat_send_jitter_seconds: the gauge shows the largest of
// the current window and the one before, so one to two windows.
const jitterWindow = time.Minute

// sendClock measures how late each heartbeat goes out. The state machine
// sends one interval after the last, on the loop's tick (a quarter
// interval), so up to a quarter interval late is the tick's grain; the
// sender copies the last heartbeat half an interval late when the loop is
// later than that. More means the sender's thread was held up: the same
// hold-up that keeps a subordinate from reading its primary's heartbeats
// and makes it take over a primary that never failed.
type sendClock struct {
	last      time.Time     // the previous heartbeat sent
	window    time.Time     // start of the current window
	cur, prev time.Duration // largest lateness in the current and previous window
}

// sent records a heartbeat sent at now and returns how late it went out
// (0 for the first, and for one sent early: a role change sends at once)
// and the largest lateness of the last one to two windows.
func (c *sendClock) sent(now time.Time, interval time.Duration) (late, largest time.Duration) {
	if c.window.IsZero() || now.Sub(c.window) >= 2*jitterWindow {
		c.window, c.cur, c.prev = now, 0, 0
	} else if now.Sub(c.window) >= jitterWindow {
		c.window, c.cur, c.prev = c.window.Add(jitterWindow), 0, c.cur
	}
	if !c.last.IsZero() {
		late = max(now.Sub(c.last)-interval, 0)
	}
	c.last = now
	c.cur = max(c.cur, late)
	return late, max(c.cur, c.prev)
}

// heartbeatSent times one heartbeat, the loop's or a copy: the metric,
// and a warning when it went out a whole interval late (a subordinate
// misses its primary's heartbeats after LostThreshold of those). It runs
// on the sender's thread, the only user of d.sends.
func (d *Daemon) heartbeatSent(now time.Time, _ bool) {
	interval := d.cfg.Heartbeat.Interval
	prev := d.sends.cur
	late, largest := d.sends.sent(now, interval)
	d.met.HeartbeatSendJitter.Set(largest.Seconds())
	switch {
	case late >= interval:
		d.log.Warn("heartbeat sent late: the daemon was held up", "late", late.Round(time.Millisecond), "interval", interval)
	case late > interval*3/4 && late > prev:
		// Well past the sender's own grain (a copy goes out half an interval
		// late) and the largest of the window so far: a few lines a
		// minute at most, the record of the gauge's peaks.
		d.log.Info("heartbeat sent late", "late", late.Round(time.Millisecond), "interval", interval)
	}
}

// timeAction says when carrying out one action held the loop up for more
// than a heartbeat interval: the loop reads no heartbeat and judges no
// silence meanwhile, and the sender only copies the last heartbeat.
func (d *Daemon) timeAction(a cluster.Action, took time.Duration) {
	if took > d.cfg.Heartbeat.Interval {
		d.log.Info("an action held the loop up", "action", fmt.Sprintf("%T", a), "took", took.Round(time.Millisecond), "interval", d.cfg.Heartbeat.Interval)
	}
}
