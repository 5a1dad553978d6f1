package daemon

import (
	"errors"
	"time"

	"github.com/hagate/hagate/internal/cluster"
	"github.com/hagate/hagate/internal/control"
	"github.com/hagate/hagate/internal/metrics"
	"github.com/hagate/hagate/internal/pinger"
	"github.com/hagate/hagate/internal/version"
)

// snapshotWait bounds how long a scrape waits for the loop: a loop busy
// for longer gives a scrape without the member's state
// (hagate_snapshot_ok 0) rather than a hung scraper.
const snapshotWait = 2 * time.Second

// metricsState is what the metrics need to remember between actions.
type metricsState struct {
	// roleKind is why this member's role changed in the current step, ""
	// if it did not: a change of primary it caused has that reason.
	roleKind cluster.Kind
}

// observe makes the metrics read the member's state at scrape time and
// records the build and the heartbeat links.
func (d *Daemon) observe() {
	var links []string
	for _, l := range d.cfg.Heartbeat.Links {
		links = append(links, l.Interface)
	}
	d.met.Start(version.String(), links)
	d.met.Observe(d.metricsSnapshot)
}

// inLoop runs f in the loop goroutine, which owns the state machine.
func (d *Daemon) inLoop(f func()) error {
	r := request{do: f, reply: make(chan control.Response, 1)}
	t := time.NewTimer(snapshotWait)
	defer t.Stop()
	select {
	case d.requests <- r:
	case <-t.C:
		return errors.New("daemon busy or stopping")
	}
	<-r.reply // the loop answers every request it takes
	return nil
}

// metricsSnapshot reads the member's state for a scrape: the state
// machine's in the loop, the session table (which has its own lock, and
// may take a while to walk) outside it.
func (d *Daemon) metricsSnapshot() (metrics.Snapshot, error) {
	var s metrics.Snapshot
	var p *pickup
	var syncPending bool
	if err := d.inLoop(func() {
		if d.node == nil {
			return
		}
		s = d.snapshot(time.Now())
		p, syncPending = d.pickup, d.node.SyncPending()
	}); err != nil {
		return s, err
	}
	if s.Member == "" {
		return s, errors.New("starting")
	}
	if p != nil {
		st := p.e.Stats()
		ss := &metrics.Sessions{
			SyncPending: syncPending, Synced: st.Sessions, HeldBack: st.HeldBack, MaxSessions: d.cfg.SessionPickup.MaxSessions,
			LastBulk: st.LastBulk.Duration, LastBulkAt: st.LastBulk.At,
			InstallErrors: st.ApplyErrors, FrameErrors: st.FrameErrors, Overflows: st.EventOverflows + st.QueueOverflows,
		}
		for _, ps := range st.Peers {
			name := ps.Node
			if name == "" {
				name = ps.Addr
			}
			ss.Subordinates = append(ss.Subordinates, metrics.SyncPeer{Peer: name, Connected: ps.Connected, Queued: ps.Queued, Lag: ps.Lag, Bulks: ps.Bulks, LastBulk: ps.LastBulk})
		}
		s.Sessions = ss
	}
	return s, nil
}

// snapshot is the member's state as the metrics show it; in the loop.
func (d *Daemon) snapshot(now time.Time) metrics.Snapshot {
	st := d.status(now)
	s := metrics.Snapshot{
		Member: d.cfg.NodeID, Group: d.cfg.GroupID,
		PrimaryKnown: st.PrimaryID != "", DualPrimary: d.node.DualPrimary() != "",
		QuorumOn: d.cfg.SplitBrain.Quorum, Quorate: d.node.Quorate(),
		Monitored: d.node.Monitored(), VIPs: len(d.cfg.VirtualIPs),
	}
	if d.holding {
		s.VIPsHeld = len(d.cfg.VirtualIPs)
	}
	for _, m := range st.Members {
		if m.Self {
			s.Priority, s.UptimeSeconds, s.FailoverSet = m.Priority, m.UptimeSeconds, m.FailoverSet
			continue
		}
		s.Peers = append(s.Peers, metrics.PeerState{ID: m.NodeID, Up: m.Alive, LastHeard: m.LastHeardSecond, Role: m.Role, Version: m.Version})
	}
	for _, l := range st.Links {
		s.Links = append(s.Links, metrics.LinkState{Interface: l.Interface, Up: l.Up, PeersHeard: l.PeersHeard})
	}
	s.Probes = append(probes("ping_server", st.PingServers), probes("witness", st.Witness)...)
	return s
}

func probes(check string, ts []pinger.TargetStatus) []metrics.Probe {
	var out []metrics.Probe
	for _, t := range ts {
		out = append(out, metrics.Probe{Check: check, Target: t.Target.String(), Interface: t.Interface, Up: t.Up,
			RTT: t.LastRTT, Failures: t.ConsecutiveFailures, Sent: t.Sent, Answered: t.Answered})
	}
	return out
}

// stepMetrics updates what one step of the state machine may have changed.
func (d *Daemon) stepMetrics(ev cluster.Event) {
	d.mx.roleKind = "" // the step is over
	d.met.Members.Set(float64(d.node.AliveMembers()))
	d.met.SplitBrain.Set(boolFloat(d.node.SplitBrain()))
	if rx, ok := ev.(cluster.Received); ok {
		// Count heartbeats lost (gaps in sequence numbers) as the state
		// machine sees them.
		k := [2]string{rx.Link, rx.From}
		if n := d.node.Lost(rx.From, rx.Link); n > d.lost[k] {
			d.met.HeartbeatsLost.WithLabelValues(rx.Link, rx.From).Add(float64(n - d.lost[k]))
			d.lost[k] = n
		}
	}
}

// countRoleChange counts a change of this member's role.
func (d *Daemon) countRoleChange(a cluster.RoleChange) {
	d.met.SetRole(a.To.String())
	d.met.RoleChanges.WithLabelValues(a.To.String(), string(a.Kind)).Inc()
	d.mx.roleKind = a.Kind
}

// countFailover counts a change of the acting primary to another member,
// whichever member took over: the cluster's failovers as this member saw
// them. A primary that comes back after a gap with none is no failover.
func (d *Daemon) countFailover(a cluster.PrimaryChange) {
	prev := d.node.PreviousPrimary()
	if a.Primary == "" || a.Primary == prev {
		return
	}
	kind := d.mx.roleKind
	if kind == "" {
		kind = d.node.ChangeKind(prev)
	}
	d.met.Failovers.WithLabelValues(string(kind)).Inc()
	d.met.LastFailover.SetToCurrentTime()
	d.lastFailover = time.Now()
	d.log.Warn("failover", "member", d.cfg.NodeID, "primary", a.Primary, "previous", prev, "reason", string(kind), "detail", a.Reason)
}
