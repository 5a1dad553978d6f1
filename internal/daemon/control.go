package daemon

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/hagate/hagate/internal/checks"
	"github.com/hagate/hagate/internal/cluster"
	"github.com/hagate/hagate/internal/control"
	"github.com/hagate/hagate/internal/heartbeat"
	"github.com/hagate/hagate/internal/history"
	"github.com/hagate/hagate/internal/pinger"
)

// request is a control command handed to the loop goroutine, which owns
// the state machine.
type request struct {
	control.Request
	reply chan control.Response
	do    func() // run in the loop instead of a command (see inLoop)
}

// Status is what `hagate status` shows: the state machine's view plus what
// the daemon knows.
type Status struct {
	cluster.Status
	GroupID     int      `json:"group_id"`
	Security    string   `json:"security"`
	HoldingVIPs bool     `json:"holding_virtual_ips"`
	VirtualIPs  []string `json:"virtual_ips"`
	// Fenced: this member does not forward on FenceInterfaces (it is not
	// primary); FenceInterfaces is empty when fencing is off.
	Fenced            bool                  `json:"fenced"`
	FenceInterfaces   []string              `json:"fence_interfaces,omitempty"`
	StartedAt         time.Time             `json:"started_at"`
	LastFailover      time.Time             `json:"last_failover,omitzero"`
	HeartbeatInterval float64               `json:"heartbeat_interval_seconds"`
	LostThreshold     int                   `json:"lost_threshold"`
	SessionPickup     bool                  `json:"session_pickup"`
	PingServers       []pinger.TargetStatus `json:"ping_servers,omitempty"`
	// FramesDropped says why heartbeats from an address were refused
	// (wrong key, group, clock skew, replay...): the reason a member is
	// not heard.
	FramesDropped []heartbeat.DropSummary `json:"frames_dropped,omitempty"`
	Witness       []pinger.TargetStatus   `json:"witness,omitempty"`
	Checks        []checks.Status         `json:"checks,omitempty"`
	ConfigSync    SyncResult              `json:"config_sync"`
	Bridge        *BridgeStatus           `json:"transparent,omitempty"`
}

func (d *Daemon) listenControl() (net.Listener, error) {
	ln, err := control.Listen(d.cfg.ControlSocket, d.cfg.ControlGroup)
	if err != nil {
		return nil, fmt.Errorf("control_socket: %w", err)
	}
	return ln, nil
}

func (d *Daemon) serveControl(ctx context.Context, ln net.Listener) error {
	return control.Serve(ctx, ln, func(ctx context.Context, req control.Request) control.Response {
		r := request{Request: req, reply: make(chan control.Response, 1)}
		select {
		case d.requests <- r:
		case <-ctx.Done():
			return control.Errorf("hagate is stopping")
		case <-time.After(5 * time.Second):
			return control.Errorf("daemon busy")
		}
		select {
		case resp := <-r.reply:
			return resp
		case <-ctx.Done():
			return control.Errorf("hagate is stopping")
		}
	}, control.WithGroup(d.cfg.ControlGroup), control.OnDenied(func(p control.Peer, reason error) {
		d.met.ControlDenied.Inc()
		d.log.Warn("control socket: caller refused", "peer", p.String(), "reason", reason)
	}))
}

// handle answers one control command, in the loop goroutine.
func (d *Daemon) handle(req request) control.Response {
	if req.do != nil {
		req.do()
		return control.Response{OK: true}
	}
	now := time.Now()
	switch req.Command {
	case "status":
		return control.OK(d.status(now))
	case "history":
		if req.Args["clear"] == "true" {
			return d.clearHistory()
		}
		n := 50
		if s, ok := req.Args["count"]; ok {
			v, err := strconv.Atoi(s)
			if err != nil || v < 1 {
				return control.Errorf("count: want a positive number, got %q", s)
			}
			n = v
		}
		entries := d.hist.Last(n)
		if entries == nil {
			entries = []history.Entry{}
		}
		return control.OK(entries)
	case "failover":
		kind := cluster.FailoverSet
		if req.Args["unset"] == "true" {
			kind = cluster.FailoverUnset
		}
		d.step(cluster.Command{Now: now, Kind: kind})
		if err := saveFailoverFlag(d.cfg.StateDir, kind == cluster.FailoverSet, now); err != nil {
			return control.Errorf("%s, but it will not survive a restart: %v", req.Command, err)
		}
		return control.OK(d.status(now))
	case "reset-uptime":
		d.step(cluster.Command{Now: now, Kind: cluster.ResetUptime})
		return control.OK(d.status(now))
	case "reload":
		res, err := d.reload()
		if err != nil {
			return control.Errorf("%v", err)
		}
		return control.OK(res)
	case "sessions":
		if d.pickup == nil {
			return control.Errorf("session pickup is off (session_pickup.enabled: false)")
		}
		return control.OK(d.pickup.stats())
	}
	return control.Errorf("unknown command %q", req.Command)
}

// dropWarnFor is how long dropped heartbeats from a source stay a warning.
const dropWarnFor = 5 * time.Minute

func (d *Daemon) status(now time.Time) Status {
	st := Status{
		Status: d.node.Status(now), GroupID: d.cfg.GroupID, Security: d.mode.String(),
		HoldingVIPs: d.holding, StartedAt: d.started, LastFailover: d.lastFailover,
		HeartbeatInterval: d.cfg.Heartbeat.Interval.Seconds(), LostThreshold: d.cfg.Heartbeat.LostThreshold,
		SessionPickup: d.pickup != nil,
	}
	if d.fence != nil {
		st.Fenced, st.FenceInterfaces = d.node.Fenced(), append(slices.Clone(d.fence.Interfaces()), d.fence.Ports()...)
	}
	if d.pings != nil {
		st.PingServers = d.pings.Status()
	}
	if d.witness != nil {
		st.Witness = d.witness.Status()
	}
	st.Checks = d.checkStatus()
	for _, v := range d.cfg.VirtualIPs {
		st.VirtualIPs = append(st.VirtualIPs, v.Interface+" "+v.Address.String())
	}
	// Drops of the last minutes are worth a warning: the reason a member
	// is not heard, named.
	for _, ds := range d.tr.DropReasons() {
		st.FramesDropped = append(st.FramesDropped, ds)
		// "early": members that start together drop each other's first
		// heartbeats until they echo each other; expected, not a warning.
		if now.Sub(ds.Last) < dropWarnFor && ds.Reason != "early" {
			st.Warnings = append(st.Warnings, ds.String())
		}
	}
	d.addConfigStatus(&st)
	d.addBridgeStatus(&st)
	if d.mode.String() == "plaintext" {
		st.Warnings = append(st.Warnings, "heartbeats are not authenticated (security.authentication: false)")
	}
	return st
}

// clearHistory deletes the election history (FGCP's history delete) and
// records that it did, so the empty history says why it is empty.
func (d *Daemon) clearHistory() control.Response {
	if d.hist == nil {
		return control.Errorf("no history")
	}
	if err := d.hist.Clear(); err != nil {
		return control.Errorf("%v", err)
	}
	d.record(history.Entry{Event: "event", Reason: "history cleared by operator"})
	return control.OK(d.hist.Last(0))
}
