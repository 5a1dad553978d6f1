package bench

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hagate/hagate/lab/harness"
	"github.com/hagate/hagate/lab/netlab"
)

// hg is hagate with session pickup on, run by the harness.
type hg struct {
	l      *netlab.Lab
	c      *harness.Cluster
	pickup bool
	// heldBack: subordinates hold new sessions back from their kernel
	// (install_delay), so Synced counts what they hold in memory.
	heldBack bool
	mu       sync.Mutex
	base     map[string]int
	pools    map[string]*ctPool
	counters map[string]*ctCounter
}

// pickupSection turns session pickup on (TCP only, over the heartbeat
// link: the defaults).
const pickupSection = "session_pickup:\n  enabled: true\n"

// hagate's default detection (200 ms x 6) and the tuned one (50 ms x 3).
var hgTimings = map[Tuning]struct {
	interval time.Duration
	lost     int
}{
	Defaults: {200 * time.Millisecond, 6},
	Tuned:    {50 * time.Millisecond, 3},
	Fast:     {10 * time.Millisecond, 3},
}

// hgSettings are the run's choices for hagate beside the tuning.
type hgSettings struct {
	pickup         bool
	hbRealtime     int           // heartbeat.realtime_priority, 0 unset
	installDelay   time.Duration // session_pickup.install_delay, 0 unset
	reliableEvents bool          // session_pickup.reliable_events
}

func newHG(l *netlab.Lab, bin, dir string, t Tuning, set hgSettings) (*hg, error) {
	tm := hgTimings[t]
	o := harness.Options{Interval: tm.interval, LostThreshold: tm.lost, Holddown: max(time.Second, tm.interval*time.Duration(tm.lost+1)),
		HeartbeatRealtime: set.hbRealtime}
	pickup, installDelay := set.pickup, set.installDelay
	if pickup {
		o.Extra = pickupSection
		if t == Fast {
			o.Extra += "  connectionless: true\n"
		}
		if installDelay > 0 {
			o.Extra += fmt.Sprintf("  install_delay: %s\n", installDelay)
		}
		if set.reliableEvents {
			o.Extra += "  reliable_events: true\n"
		}
		o.Extra += harness.MetricsExtra() // the lag per change (lag.go)
	}
	c, err := harness.New(l, bin, dir, len(l.Gateways()), o)
	if err != nil {
		return nil, fmt.Errorf("hagate configuration: %w", err)
	}
	return &hg{l: l, c: c, pickup: pickup, heldBack: installDelay > 0, base: map[string]int{}, pools: map[string]*ctPool{},
		counters: map[string]*ctCounter{}}, nil
}

func (h *hg) Name() string { return "hagate" }

// Note says whether session pickup is running: the daemon reports it in
// its status, and a build without the engine says so in its log.
func (h *hg) Note() string {
	if !h.pickup {
		return "session pickup off"
	}
	for _, gw := range h.c.Gateways() {
		if strings.Contains(h.c.Log(gw), "no session pickup engine") {
			return "session pickup not built yet"
		}
		if st, err := h.c.Status(gw); err == nil && !st.SessionPickup {
			return "session pickup not running"
		}
	}
	return ""
}

func (h *hg) Start(gw string) error {
	h.mu.Lock()
	n, err := h.countLocked(gw)
	h.base[gw] = n
	h.mu.Unlock()
	if err != nil {
		return err
	}
	return h.c.Start(gw)
}

// countLocked is gw's whole kernel table, read through its counter.
func (h *hg) countLocked(gw string) (int, error) {
	c := h.counters[gw]
	if c == nil {
		var err error
		if c, err = openCounter(h.l.NS(gw)); err != nil {
			return 0, err
		}
		h.counters[gw] = c
	}
	return c.count()
}

func (h *hg) Kill(gw string) error { return h.c.Kill(gw) }

// exactBelow: under this many entries Synced dumps the table to count the
// synthetic sessions exactly; above, a dump costs more than the precision
// is worth and it counts the whole table.
const exactBelow = 50000

// Synced counts the synthetic sessions in gw's own kernel table: a hagate
// subordinate keeps synced sessions installed, ready to use. Large tables
// are counted whole, less the entries there were when the daemon started
// (its own heartbeat and sync traffic add a handful).
func (h *hg) Synced(gw string) (int, error) {
	if h.heldBack {
		// What the subordinate holds, kernel or memory, as conntrackd's
		// cache is counted (its sessions reach the kernel at a commit).
		st, err := h.c.Sessions(gw)
		return st.Sessions, err
	}
	n, err := h.approxSynced(gw)
	if err != nil || n >= exactBelow {
		return n, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.pools[gw]
	if p == nil {
		if p, err = dialNS(h.l.NS(gw), 1); err != nil {
			return 0, err
		}
		h.pools[gw] = p
	}
	return p.Count()
}

// approxSynced is gw's whole kernel table less the entries there were
// when the daemon started: at most a handful ahead of Synced, and cheap.
func (h *hg) approxSynced(gw string) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	n, err := h.countLocked(gw)
	if err != nil {
		return 0, err
	}
	return n - h.base[gw], nil
}

func (h *hg) Daemons(gw string) (sync, all []procInfo, err error) {
	all, err = nsProcs(h.l.NS(gw), "hagate")
	return all, all, err
}

func (h *hg) Close() {
	h.c.Close()
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range h.pools {
		p.Close()
	}
	for _, c := range h.counters {
		c.Close()
	}
}

// Log returns gw's daemon log.
func (h *hg) Log(gw string) string { return h.c.Log(gw) }
