package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/hagate/hagate/internal/cluster"
	"github.com/hagate/hagate/internal/config"
	"github.com/hagate/hagate/internal/metrics"
	"github.com/hagate/hagate/internal/seal"
	"github.com/hagate/hagate/internal/sessions"
	"github.com/hagate/hagate/internal/sessions/conntrack"
)

// pickup is the session-pickup engine as the daemon drives it: the state
// machine's actions become the engine's commands, and the engine's events
// the state machine's.
type pickup struct {
	e    *sessions.Engine
	be   sessions.Backend
	port uint16
	log  *slog.Logger
}

// run waits for the engine to stop with ctx, then closes the backend.
func (p *pickup) run(ctx context.Context) error {
	<-ctx.Done()
	p.e.Wait()
	return p.be.Close()
}

// dial gives the engine the addresses at which a primary dials the members,
// and which of them are absent (not dialled until heard).
func (p *pickup) dial(a cluster.SyncRoutes) {
	peers, absent := p.withPort(a.Peers), p.withPort(a.Absent)
	p.log.Info("session pickup: subordinates dialled at", "peers", peers, "absent", absent)
	p.e.Do(sessions.DialPeers{Peers: peers, Absent: absent})
}

func (p *pickup) withPort(addrs []netip.Addr) []netip.AddrPort {
	out := make([]netip.AddrPort, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, netip.AddrPortFrom(a, p.port))
	}
	return out
}

// event translates an engine event for the state machine (nil: nothing for it).
func (p *pickup) event(ev sessions.Event) cluster.Event {
	now := time.Now()
	switch ev := ev.(type) {
	case sessions.Ready:
		return cluster.SessionsReady{Now: now, Gen: ev.Gen}
	case sessions.BulkDone:
		return cluster.BulkReceived{Now: now}
	case sessions.SyncLost:
		reason := "closed"
		if ev.Err != nil {
			reason = ev.Err.Error()
		}
		return cluster.SyncLost{Now: now, Peer: ev.Peer, Reason: reason}
	}
	return nil
}

func (p *pickup) stats() any {
	st := p.e.Stats()
	if x := p.e.ExpectStats(); x.Enabled {
		st.Expectations = &x
	}
	return st
}

// startPickup builds the engine when session_pickup.enabled is set. It
// listens only on this member's addresses on the session-sync links, never
// on the data interfaces, and dials the peers of the first sync link (in
// heartbeat link priority order) when primary.
func startPickup(ctx context.Context, cfg *config.Config, kr *seal.Keyring, mode seal.Mode, epoch uint64, met *metrics.Metrics, log *slog.Logger) (*pickup, error) {
	sp := cfg.SessionPickup
	sessions.TuneGC() // the session table is most of the heap: collect at 25% growth, not 100%
	var be sessions.Backend
	switch sp.Backend {
	case "memory":
		be = sessions.NewMemory(4096)
	default:
		k, err := conntrack.Open(conntrack.Options{ReliableEvents: sp.ReliableEvents})
		if err != nil {
			return nil, fmt.Errorf("session_pickup: conntrack: %w", err)
		}
		if was, err := k.EventsForAll(); err != nil {
			log.Warn("session pickup: sessions made while nobody listens will report their end only to the periodic dump", "err", err)
		} else if was != 1 {
			log.Info("session pickup: conntrack events on for every session (net.netfilter.nf_conntrack_events=1)", "was", was)
		}
		be = k
	}
	links := syncLinks(cfg)
	var listen []netip.AddrPort
	// Each listener is bound to its link, and only the links' peers may
	// connect: the sync port is not reachable through the data interfaces.
	devices := map[netip.Addr]string{}
	var peers, virtual []netip.Addr
	for _, l := range links {
		peers = append(peers, l.Peers...)
		ifi, err := net.InterfaceByName(l.Interface)
		if err != nil {
			return nil, fmt.Errorf("session_pickup.links: %s: %w", l.Interface, err)
		}
		addrs, err := ifi.Addrs()
		if err != nil {
			return nil, fmt.Errorf("session_pickup.links: %s: %w", l.Interface, err)
		}
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && !p.Addr().IsLinkLocalUnicast() {
				listen = append(listen, netip.AddrPortFrom(p.Addr(), uint16(sp.Port)))
				devices[p.Addr()] = l.Interface
			}
		}
	}
	if len(listen) == 0 {
		return nil, fmt.Errorf("session_pickup.links: no address on %v to listen on", links)
	}
	for _, v := range cfg.VirtualIPs {
		virtual = append(virtual, v.Address.Addr())
	}
	e, err := sessions.NewEngine(sessions.EngineConfig{
		NodeID: cfg.NodeID, Group: uint16(cfg.GroupID), Keyring: kr, Mode: mode, Epoch: epoch,
		ListenAddrs: listen, Devices: devices, Peers: peers, Virtual: virtual,
		Filter:      pickupFilter(cfg),
		MaxSessions: sp.MaxSessions, Delay: sp.Delay, InstallDelay: sp.InstallDelay, MaxHeldBack: sp.MaxHeldBack, MaxClockSkew: cfg.Security.MaxClockSkew,
		MinVersion:  uint8(cfg.Security.MinSyncVersion),
		Expectation: sp.Expectation, TCPWindowTracking: sp.TCPWindowTracking, AntiEntropy: offIfZero(sp.AntiEntropy),
		DumpInterval: dumpInterval(sp.DumpInterval),
		// A lab test's knob (lab/harness join_test.go), not a setting.
		BulkOldestFirst: os.Getenv("HAGATE_LAB_BULK_OLDEST_FIRST") == "1",
		Logger:          log.With("part", "session pickup"), Observer: observer{met},
	}, be)
	if err != nil {
		be.Close()
		return nil, err
	}
	if err := e.Start(ctx); err != nil {
		be.Close()
		return nil, err
	}
	return &pickup{e: e, be: be, port: uint16(sp.Port), log: log}, nil
}

// offIfZero maps a period that the configuration turns off with 0
// (session_pickup.anti_entropy, dump_interval) to the engine's terms,
// where 0 is the default and a negative period is off.
func offIfZero(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// dumpInterval is session_pickup.dump_interval as the engine takes it:
// unset is the engine's default, by table size.
func dumpInterval(d *time.Duration) time.Duration {
	if d == nil {
		return 0
	}
	return offIfZero(*d)
}

// syncLinks are the heartbeat links named in session_pickup.links, highest
// priority first.
func syncLinks(cfg *config.Config) []config.HeartbeatLink {
	var out []config.HeartbeatLink
	for _, l := range cfg.Heartbeat.Links {
		if len(cfg.SessionPickup.Links) == 0 || slices.Contains(cfg.SessionPickup.Links, l.Interface) {
			out = append(out, l)
		}
	}
	slices.SortStableFunc(out, func(a, b config.HeartbeatLink) int { return b.Priority - a.Priority })
	return out
}

// observer feeds the engine's measurements to the metrics.
type observer struct{ m *metrics.Metrics }

func (o observer) SessionsSent(n int)        { o.m.SyncUpdatesSent.Add(float64(n)) }
func (o observer) SessionsApplied(n int)     { o.m.SyncUpdatesApplied.Add(float64(n)) }
func (o observer) Resync(reason string)      { o.m.SyncResyncs.WithLabelValues(reason).Inc() }
func (o observer) FrameDropped(r string)     { o.m.SyncDropped(r) }
func (o observer) SyncLag(d time.Duration)   { o.m.SyncAckLag.Set(d.Seconds()) }
func (o observer) TableFull()                { o.m.SessionsDroppedLimit.Inc() }
func (o observer) DivergentRanges(n int)     { o.m.SyncDivergentRanges.Add(float64(n)) }
func (o observer) SessionsRepaired(n int)    { o.m.SyncRepaired.Add(float64(n)) }
func (o observer) ChangeLag(d time.Duration) { o.m.SyncLag.Observe(d.Seconds()) }

// The table's size, the last bulk and the errors are read from the
// engine's Stats at scrape time (metricsSnapshot), on every member.
func (observer) ApplyErrors(int)             {}
func (observer) BulkDone(int, time.Duration) {}

// pickupFilter is session_pickup's filter as the engine applies it.
func pickupFilter(cfg *config.Config) sessions.Filter {
	sp := cfg.SessionPickup
	var marks []sessions.MarkMatch
	for _, m := range sp.Filter.Marks {
		marks = append(marks, sessions.MarkMatch{Value: m.Value, Mask: m.Mask})
	}
	return sessions.Filter{Connectionless: sp.Connectionless, NAT: cfg.PickupNAT(), Zones: sp.Filter.Zones,
		Marks: marks, Prefixes: sp.Filter.Addresses}
}
