package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hagate/hagate/lab/netlab"
)

// FaultKind names one kind of fault the soak injects.
type FaultKind string

// The faults the soak injects, each from a seeded random schedule.
const (
	// FaultKillPrimary kills the primary's daemon with SIGKILL, runs
	// `hagate release` as the systemd unit would, and starts the daemon
	// again a few seconds later.
	FaultKillPrimary FaultKind = "kill9-primary"
	// FaultRestart stops a member's daemon with SIGTERM and starts it again.
	FaultRestart FaultKind = "restart-member"
	// FaultHACut cuts one of the two heartbeat links of a member (the other
	// keeps working) for a few seconds.
	FaultHACut FaultKind = "ha-link-cut"
	// FaultHALoss drops a random share (10-60 %) of a member's frames on one
	// heartbeat link for a few seconds.
	FaultHALoss FaultKind = "ha-loss"
	// FaultMonitorFlap takes a monitored link (lan or wan) of a member down
	// and up one to four times.
	FaultMonitorFlap FaultKind = "monitor-flap"
	// FaultCPU runs a busy loop in a member's namespace for a few seconds.
	FaultCPU FaultKind = "cpu-pressure"
	// FaultHAIsolate cuts every heartbeat link of one member for a few
	// seconds: a split brain. Only with SoakOptions.Quorum, where the
	// members' quorum rule must keep the isolated member from holding the
	// addresses while the others elect a primary.
	FaultHAIsolate FaultKind = "ha-isolate"
)

// AllFaults lists every fault kind.
var AllFaults = []FaultKind{FaultKillPrimary, FaultRestart, FaultHACut, FaultHALoss, FaultMonitorFlap, FaultCPU, FaultHAIsolate}

// isolated is the link part of an isolation's haFaults key: every link.
const isolated = "*"

// SoakOptions shape a soak run.
type SoakOptions struct {
	// Duration is how long faults are injected; then every fault is undone
	// and the cluster must settle. Default 60s.
	Duration time.Duration
	// Seed makes the fault schedule repeatable; 0 takes one from the clock
	// (the report says which).
	Seed uint64
	// Poll is how often the virtual IP holders are read. Default 20ms.
	Poll time.Duration
	// Faults to choose from; nil means AllFaults. FaultHACut needs a
	// cluster with two heartbeat links.
	Faults []FaultKind
	// Gap is the longest pause between two faults (a pause is uniform in
	// [Gap/4, Gap]). Default 3s.
	Gap time.Duration
	// Sessions is the number of long-lived TCP sessions kept open from the
	// client to the server through the cluster; 0 opens none.
	Sessions int
	// RequireSessions makes a session lost across a failover a violation
	// (only with session pickup on; without it every failover kills them).
	RequireSessions bool
	// Steady is a member whose daemon is never killed or restarted, so its
	// goroutines and memory are watched over the whole soak; default the
	// last gateway (the lowest priority, so kills of the primary rarely
	// find it in the role). "-" makes every member fair game.
	Steady string
	// Quorum says the members run with split_brain.quorum (the caller
	// configures them, e.g. with QuorumExtra): FaultHAIsolate may then cut
	// a member off, and two holders at once are a violation while a member
	// is cut off too.
	Quorum bool
	// Logf, if set, receives every fault as it is injected.
	Logf func(format string, args ...any)
}

// QuorumExtra is the configuration that turns the quorum rule on.
const QuorumExtra = "split_brain:\n  quorum: true\n"

func (o SoakOptions) withDefaults() SoakOptions {
	if o.Duration <= 0 {
		o.Duration = 60 * time.Second
	}
	if o.Seed == 0 {
		o.Seed = uint64(time.Now().UnixNano())
	}
	if o.Poll <= 0 {
		o.Poll = 20 * time.Millisecond
	}
	if o.Faults == nil {
		o.Faults = AllFaults
	}
	if o.Gap <= 0 {
		o.Gap = 3 * time.Second
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	return o
}

// restartable lists the members whose daemons faults may stop.
func (s *soak) restartable() []string {
	return slices.DeleteFunc(slices.Clone(s.c.gws), func(gw string) bool { return gw == s.o.Steady })
}

// SoakClusterOptions are the cluster and lab options a soak expects: two
// heartbeat links, the metrics endpoint, and a short uptime margin so that
// a restarted member sometimes takes the role back and sometimes does not.
func SoakClusterOptions() (Options, netlab.Options) {
	return Options{
			Interval:      100 * time.Millisecond,
			LostThreshold: 5,
			Holddown:      2 * time.Second,
			UptimeMargin:  20 * time.Second,
			HA2:           true,
			Extra:         MetricsExtra(),
		}, netlab.Options{
			Gateways: 3,
			HA2:      true,
		}
}

// Window is a stretch of time during which the virtual IP was held by the
// wrong number of members.
type Window struct {
	Start    time.Duration // since the soak began
	Length   time.Duration // from the first sample seeing it to the first not seeing it
	Holders  []string
	Faults   string // faults in force when it began
	Excused  bool   // a heartbeat link was cut or lossy: not held to the invariant
	Violates bool
}

// DaemonReport is one gateway's daemon at the end of a soak.
type DaemonReport struct {
	Gateway  string
	PID      int
	Restarts int           // starts during the soak (faults and crash recoveries)
	Observed time.Duration // how long the current process was watched between its two scrapes
	// Goroutines and resident memory at the first and last scrape of the
	// current process.
	GoroutinesStart, GoroutinesEnd float64
	RSSStart, RSSEnd               float64
}

// SessionReport counts the long-lived TCP sessions.
type SessionReport struct {
	Enabled bool
	Opened  int
	// Carried counts, over every session, the changes of primary it lived
	// through (opened before the change, alive after it).
	Carried int
	// Lost counts sessions that broke; LostAtFailover those that broke
	// within 10 s after a change of primary.
	Lost, LostAtFailover int
	Alive                int // still open at the end
	Errors               []string
}

// SoakReport is what a soak saw.
type SoakReport struct {
	Seed     uint64
	Duration time.Duration // faults were injected this long
	Interval time.Duration // heartbeat interval, the invariant's bound
	Faults   map[FaultKind]int
	Skipped  int // faults drawn whose preconditions did not hold

	Samples       int
	PollMean      time.Duration
	PollMax       time.Duration
	PrimaryChange int // changes of the single holder

	// Dual: every window with two or more holders. LongestDual is the
	// longest of those while the heartbeat links were healthy, the one
	// the invariant bounds.
	Dual           []Window
	LongestDual    time.Duration
	LongestDualAny time.Duration
	// NoHolder: windows with nobody holding the virtual IP.
	NoHolder        int
	NoHolderLongest time.Duration
	NoHolderTotal   time.Duration

	Daemons  []DaemonReport
	Crashes  []string // daemons that exited on their own, and panics in logs
	Sessions SessionReport

	Violations []string
}

// Err returns nil if the soak found nothing wrong, or the violations.
func (r SoakReport) Err() error {
	if len(r.Violations) == 0 {
		return nil
	}
	return fmt.Errorf("soak (seed %d): %d violations:\n  %s", r.Seed, len(r.Violations), strings.Join(r.Violations, "\n  "))
}

// soak is one run's state. The main loop owns everything but the sampler's
// fields, which sampler goroutine owns until it is stopped.
type soak struct {
	c     *Cluster
	o     SoakOptions
	rng   *rand.Rand
	start time.Time
	rep   SoakReport

	mu       sync.Mutex // guards haFaults, haHealed and changes (read by the sampler and sessions)
	haFaults map[string]string
	haHealed time.Time
	changes  []time.Time

	down     map[string]bool   // stopped on purpose
	monitor  map[string]bool   // a monitored link flapping
	cpuBusy  bool              // a busy loop runs
	pending  []pendingUndo     // undo actions, by time
	baseline map[string]sample // per gateway, of its current process
	restarts map[string]int
	started  map[string]time.Time // when each daemon was last started
}

type pendingUndo struct {
	at   time.Time
	what string
	do   func() error
}

type sample struct {
	pid        int
	at         time.Time
	goroutines float64
	rss        float64
}

// Soak injects random faults into a running cluster for o.Duration while it
// watches the virtual IP holders, then undoes them, lets the cluster settle
// and checks every daemon. The cluster must have been built with
// SoakClusterOptions (or at least MetricsExtra) and have a primary. The
// error is for a soak that could not run; what it found is in the report
// (see SoakReport.Err).
func Soak(ctx context.Context, c *Cluster, o SoakOptions) (SoakReport, error) {
	o = o.withDefaults()
	if o.Steady == "" {
		o.Steady = c.gws[len(c.gws)-1]
	}
	s := &soak{
		c: c, o: o,
		rng:      rand.New(rand.NewPCG(o.Seed, o.Seed^0x9e3779b97f4a7c15)),
		haFaults: map[string]string{},
		down:     map[string]bool{}, monitor: map[string]bool{},
		baseline: map[string]sample{}, restarts: map[string]int{}, started: map[string]time.Time{},
	}
	s.rep = SoakReport{Seed: o.Seed, Interval: c.opts.Interval, Faults: map[FaultKind]int{}}
	if slices.Contains(o.Faults, FaultHACut) && !c.opts.HA2 {
		return s.rep, errors.New("soak: ha-link-cut needs a cluster with two heartbeat links (Options.HA2)")
	}
	if _, err := c.WaitHolder(20*time.Second, ""); err != nil {
		return s.rep, fmt.Errorf("soak: no primary to start from: %w", err)
	}
	for _, gw := range c.gws {
		if err := s.scrapeBaseline(ctx, gw); err != nil {
			return s.rep, fmt.Errorf("soak: %w", err)
		}
	}
	watch, err := c.NewAddrWatch()
	if err != nil {
		return s.rep, fmt.Errorf("soak: %w", err)
	}
	s.start = time.Now()
	samplerCtx, stopSampler := context.WithCancel(ctx)
	samplerDone := make(chan struct{})
	go func() {
		defer close(samplerDone)
		s.sample(samplerCtx, watch.Holders)
	}()
	var sess *sessionPool
	if o.Sessions > 0 {
		if sess, err = startSessions(ctx, c, o.Sessions, s.start, s.changeTimes); err != nil {
			stopSampler()
			<-samplerDone
			watch.Close()
			return s.rep, fmt.Errorf("soak: %w", err)
		}
	}

	s.inject(ctx)
	s.rep.Duration = time.Since(s.start)
	s.settle(ctx)

	if sess != nil {
		s.rep.Sessions = sess.stop()
		if o.RequireSessions && s.rep.Sessions.LostAtFailover > 0 {
			s.violate("%d sessions lost at a failover", s.rep.Sessions.LostAtFailover)
		}
	}
	stopSampler()
	<-samplerDone
	watch.Close()
	s.finalChecks(ctx)
	return s.rep, nil
}

func (s *soak) since() time.Duration { return time.Since(s.start).Round(time.Millisecond) }

func (s *soak) violate(format string, args ...any) {
	s.rep.Violations = append(s.rep.Violations, fmt.Sprintf(format, args...))
}

func (s *soak) changeTimes() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.changes)
}

// inject runs the fault schedule until the duration is over.
func (s *soak) inject(ctx context.Context) {
	end := s.start.Add(s.o.Duration)
	next := time.Now().Add(s.gap())
	check := time.NewTicker(200 * time.Millisecond)
	defer check.Stop()
	for time.Now().Before(end) && ctx.Err() == nil {
		wake := next
		if end.Before(wake) {
			wake = end
		}
		if len(s.pending) > 0 && s.pending[0].at.Before(wake) {
			wake = s.pending[0].at
		}
		timer := time.NewTimer(time.Until(wake))
		select {
		case <-ctx.Done():
		case <-timer.C:
		case <-check.C:
		}
		timer.Stop()
		s.runDue(time.Now())
		s.checkDaemons(ctx)
		if now := time.Now(); !now.Before(next) && now.Before(end) {
			s.injectOne(ctx)
			next = now.Add(s.gap())
		}
	}
}

func (s *soak) gap() time.Duration {
	lo := s.o.Gap / 4
	return lo + time.Duration(s.rng.Int64N(int64(s.o.Gap-lo)+1))
}

func (s *soak) between(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(s.rng.Int64N(int64(hi-lo)+1))
}

func (s *soak) schedule(after time.Duration, what string, do func() error) {
	s.pending = append(s.pending, pendingUndo{at: time.Now().Add(after), what: what, do: do})
	slices.SortStableFunc(s.pending, func(a, b pendingUndo) int { return a.at.Compare(b.at) })
}

// runDue performs the undo actions that are due (all of them if now is
// zero).
func (s *soak) runDue(now time.Time) {
	for len(s.pending) > 0 && (now.IsZero() || !s.pending[0].at.After(now)) {
		p := s.pending[0]
		s.pending = s.pending[1:]
		s.o.Logf("%8s  %s", s.since(), p.what)
		if err := p.do(); err != nil {
			s.violate("%s: %v", p.what, err)
		}
	}
}

// injectOne draws fault kinds until one's preconditions hold (a few tries).
// Of two kinds drawn, the one injected fewer times so far is tried, so
// that kinds with strict preconditions (a kill needs the whole cluster up)
// still come up about as often as the others.
func (s *soak) injectOne(ctx context.Context) {
	for range 6 {
		kind := s.o.Faults[s.rng.IntN(len(s.o.Faults))]
		if other := s.o.Faults[s.rng.IntN(len(s.o.Faults))]; s.rep.Faults[other] < s.rep.Faults[kind] {
			kind = other
		}
		desc, ok := s.try(ctx, kind)
		if ok {
			s.rep.Faults[kind]++
			s.o.Logf("%8s  %s: %s", s.since(), kind, desc)
			return
		}
		s.rep.Skipped++
	}
}

func (s *soak) anyDown() bool {
	for _, d := range s.down {
		if d {
			return true
		}
	}
	return false
}

// syncGrace is how long a started member needs before it holds the
// primary's sessions: its hello holddown, during which it takes them, and
// a margin.
const syncGrace = 3 * time.Second

// failoverReady reports whether a fault that moves the primary role may be
// injected now: every member runs and has run for syncGrace, and no
// monitored link flaps. A failover then always has a member with the
// sessions and working links to go to. A second failover before the first
// standby has synced, or while the only synced standby has a link down,
// loses sessions in any cluster (a double fault); the soak does not inject
// those, so a session lost at a failover is hagate's fault.
func (s *soak) failoverReady() bool {
	if s.anyDown() {
		return false
	}
	for _, gw := range s.c.gws {
		if time.Since(s.started[gw]) < syncGrace || s.monitor[gw] {
			return false
		}
	}
	return true
}

func (s *soak) pick(gws []string) string { return gws[s.rng.IntN(len(gws))] }

// try injects one fault of kind if its preconditions hold. At most one
// member is down at a time, heartbeat faults stay on one link (the other
// works everywhere), and one monitored link flaps at a time: the cluster
// can always have a primary, and a dual-primary window is always a fault
// of hagate's. Faults that move the primary role wait for failoverReady,
// so a session lost at a failover is one too.
func (s *soak) try(ctx context.Context, kind FaultKind) (string, bool) {
	c := s.c
	switch kind {
	case FaultKillPrimary:
		h := c.Holders()
		if len(h) != 1 || !s.failoverReady() || s.isolating() || h[0] == s.o.Steady {
			return "", false
		}
		gw := h[0]
		s.down[gw] = true
		if err := c.Kill(gw); err != nil {
			s.violate("kill %s: %v", gw, err)
		}
		if err := c.Release(gw); err != nil {
			s.violate("%v", err)
		}
		after := s.between(2*time.Second, 6*time.Second)
		s.schedule(after, "start "+gw, func() error { return s.startDaemon(gw) })
		return fmt.Sprintf("SIGKILL %s, release, start again in %s", gw, after.Round(100*time.Millisecond)), true
	case FaultRestart:
		if !s.failoverReady() || s.isolating() || len(s.restartable()) == 0 {
			return "", false
		}
		gw := s.pick(s.restartable())
		s.down[gw] = true
		if err := c.Stop(gw); err != nil {
			s.violate("stop %s: %v", gw, err)
		}
		after := s.between(300*time.Millisecond, 3*time.Second)
		s.schedule(after, "start "+gw, func() error { return s.startDaemon(gw) })
		return fmt.Sprintf("SIGTERM %s, start again in %s", gw, after.Round(100*time.Millisecond)), true
	case FaultHACut, FaultHALoss:
		link, ok := s.haLinkFree(kind)
		if !ok {
			return "", false
		}
		var free []string
		for _, gw := range c.gws {
			if _, busy := s.haFaultOn(gw + "/" + link); !busy {
				free = append(free, gw)
			}
		}
		if len(free) == 0 {
			return "", false
		}
		gw := s.pick(free)
		key := gw + "/" + link
		d := s.between(time.Second, 6*time.Second)
		var err error
		desc := ""
		if kind == FaultHACut {
			err = c.Lab.Cut(gw, link)
			desc = fmt.Sprintf("cut %s %s for %s", gw, link, d.Round(100*time.Millisecond))
		} else {
			pct := 10 + s.rng.IntN(51)
			err = c.Lab.Loss(gw, link, pct)
			desc = fmt.Sprintf("%d%% loss on %s %s for %s", pct, gw, link, d.Round(100*time.Millisecond))
		}
		if err != nil {
			s.violate("%s: %v", desc, err)
			return "", false
		}
		s.setHAFault(key, string(kind))
		s.schedule(d, "heal "+key, func() error {
			var err error
			if kind == FaultHACut {
				err = c.Lab.Heal(gw, link)
			} else {
				err = c.Lab.Loss(gw, link, 0)
			}
			s.clearHAFault(key)
			return err
		})
		return desc, true
	case FaultHAIsolate:
		return s.isolate()
	case FaultMonitorFlap:
		if !s.failoverReady() { // a flap of the primary's link is a failover
			return "", false
		}
		gw := s.pick(c.gws)
		link := []string{netlab.LAN, netlab.WAN}[s.rng.IntN(2)]
		flaps := 1 + s.rng.IntN(4)
		s.monitor[gw] = true
		if err := c.Lab.LinkDown(gw, link); err != nil {
			s.violate("link down %s %s: %v", gw, link, err)
		}
		at := time.Duration(0)
		for i := range flaps {
			at += s.between(100*time.Millisecond, 2*time.Second)
			last := i == flaps-1
			s.schedule(at, fmt.Sprintf("link up %s %s", gw, link), func() error {
				if last {
					s.monitor[gw] = false
				}
				return c.Lab.LinkUp(gw, link)
			})
			if !last {
				at += s.between(100*time.Millisecond, time.Second)
				s.schedule(at, fmt.Sprintf("link down %s %s", gw, link), func() error { return c.Lab.LinkDown(gw, link) })
			}
		}
		return fmt.Sprintf("%s %s down, %d flaps over %s", gw, link, flaps, at.Round(100*time.Millisecond)), true
	case FaultCPU:
		if s.cpuBusy {
			return "", false
		}
		gw := s.pick(c.gws)
		d := s.between(2*time.Second, 5*time.Second)
		secs := fmt.Sprintf("%.1f", d.Seconds())
		cmd, err := c.Lab.Start(gw, nil, "timeout", secs, "sh", "-c", "while :; do :; done")
		if err != nil {
			s.violate("cpu pressure in %s: %v", gw, err)
			return "", false
		}
		s.cpuBusy = true
		s.schedule(d+200*time.Millisecond, "end busy loop in "+gw, func() error {
			s.cpuBusy = false
			cmd.Process.Kill() // already gone unless timeout failed to end it
			cmd.Wait()
			return nil
		})
		return fmt.Sprintf("busy loop in %s for %ss", gw, secs), true
	}
	return "", false
}

// isolate cuts every heartbeat link of one member while no other heartbeat
// fault is in force and every daemon runs: two of three members then keep
// a majority. The isolated member must not hold the addresses.
func (s *soak) isolate() (string, bool) {
	s.mu.Lock()
	busy := len(s.haFaults) > 0
	s.mu.Unlock()
	if !s.o.Quorum || busy || !s.failoverReady() || len(s.c.gws) < 3 {
		return "", false
	}
	links := []string{netlab.HA}
	if s.c.opts.HA2 {
		links = append(links, netlab.HA2)
	}
	gw := s.pick(s.c.gws)
	key := gw + "/" + isolated
	d := s.between(time.Second, 6*time.Second)
	for _, l := range links {
		if err := s.c.Lab.Cut(gw, l); err != nil {
			s.violate("isolate %s: cut %s: %v", gw, l, err)
		}
	}
	s.setHAFault(key, string(FaultHAIsolate))
	s.schedule(d, "heal "+key, func() error {
		var errs []error
		for _, l := range links {
			errs = append(errs, s.c.Lab.Heal(gw, l))
		}
		s.clearHAFault(key)
		return errors.Join(errs...)
	})
	return fmt.Sprintf("cut every heartbeat link of %s for %s", gw, d.Round(100*time.Millisecond)), true
}

// isolating reports whether a member is cut off.
func (s *soak) isolating() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.haFaults {
		if strings.HasSuffix(k, "/"+isolated) {
			return true
		}
	}
	return false
}

// haLinkFree returns a heartbeat link that may take a fault: the other link
// must have none anywhere, so heartbeats always have one clean path.
func (s *soak) haLinkFree(kind FaultKind) (string, bool) {
	links := []string{netlab.HA}
	if s.c.opts.HA2 {
		links = append(links, netlab.HA2)
	}
	if kind == FaultHACut && len(links) < 2 {
		return "", false
	}
	s.mu.Lock()
	used := map[string]bool{}
	for key := range s.haFaults {
		_, link, _ := strings.Cut(key, "/")
		used[link] = true
	}
	s.mu.Unlock()
	var ok []string
	for _, l := range links {
		others := false
		for u := range used {
			others = others || u != l
		}
		if !others {
			ok = append(ok, l)
		}
	}
	if len(links) == 1 && kind == FaultHALoss {
		// One heartbeat link: loss on it is all the soak can do, and the
		// windows it causes are excused, not checked.
		return netlab.HA, true
	}
	if len(ok) == 0 {
		return "", false
	}
	return s.pick(ok), true
}

func (s *soak) haFaultOn(key string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.haFaults[key]
	return v, ok
}

func (s *soak) setHAFault(key, kind string) {
	s.mu.Lock()
	s.haFaults[key] = kind
	s.mu.Unlock()
}

func (s *soak) clearHAFault(key string) {
	s.mu.Lock()
	delete(s.haFaults, key)
	s.haHealed = time.Now()
	s.mu.Unlock()
}

// haState describes the heartbeat faults in force and whether the links
// count as healthy: no fault in force, and none healed within the last
// heartbeat interval (the time a first heartbeat needs to cross).
func (s *soak) haState(now time.Time) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var fs []string
	excusing := 0
	for k, v := range s.haFaults {
		fs = append(fs, v+" "+k)
		// With quorum, a member cut off must not hold the addresses
		// together with the others: no excuse.
		if !(s.o.Quorum && v == string(FaultHAIsolate)) {
			excusing++
		}
	}
	slices.Sort(fs)
	healthy := excusing == 0 && now.Sub(s.haHealed) >= s.c.opts.Interval
	return strings.Join(fs, ", "), healthy
}

func (s *soak) startDaemon(gw string) error {
	s.down[gw] = false
	s.restarts[gw]++
	s.started[gw] = time.Now()
	return s.c.Start(gw)
}

// checkDaemons notices daemons that exited on their own (a crash), records
// them and starts them again; it also takes the baseline scrape of daemons
// started since the last one.
func (s *soak) checkDaemons(ctx context.Context) {
	for _, gw := range s.c.gws {
		if s.down[gw] {
			continue
		}
		if !s.c.Running(gw) {
			s.rep.Crashes = append(s.rep.Crashes, fmt.Sprintf("%s: daemon exited by itself at %s; log ends:\n%s", gw, s.since(), tail(s.c.Log(gw), 10)))
			s.violate("%s daemon exited at %s", gw, s.since())
			s.restarts[gw]++
			s.started[gw] = time.Now()
			if err := s.c.Start(gw); err != nil {
				s.violate("restart %s after its crash: %v", gw, err)
			}
			continue
		}
		pid := s.c.DaemonPID(gw)
		if b := s.baseline[gw]; b.pid != pid {
			// Give a new process a moment to settle before it is the
			// reference for its growth.
			if t, ok := startTime(pid); ok && time.Since(t) > 5*time.Second {
				s.scrapeBaseline(ctx, gw)
			}
		}
	}
}

// startTime is when a process started, from the modification time of its
// /proc directory (set when the process is created).
func startTime(pid int) (time.Time, bool) {
	st, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	if err != nil {
		return time.Time{}, false
	}
	return st.ModTime(), true
}

func (s *soak) scrapeBaseline(ctx context.Context, gw string) error {
	smp, err := s.scrape(ctx, gw)
	if err != nil {
		return err
	}
	s.baseline[gw] = smp
	return nil
}

func (s *soak) scrape(ctx context.Context, gw string) (sample, error) {
	pid := s.c.DaemonPID(gw)
	m, err := s.c.Scrape(ctx, gw)
	if err != nil {
		return sample{}, err
	}
	return sample{pid: pid, at: time.Now(), goroutines: m.Sum("go_goroutines"), rss: m.Sum("process_resident_memory_bytes")}, nil
}

func tail(text string, n int) string {
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "    " + strings.Join(lines, "\n    ")
}

// settle undoes every fault, starts every stopped daemon, and waits for
// the cluster to have one primary that every member agrees on.
func (s *soak) settle(ctx context.Context) {
	s.runDue(time.Time{})
	for _, gw := range s.c.gws {
		if s.down[gw] {
			if err := s.startDaemon(gw); err != nil {
				s.violate("start %s: %v", gw, err)
			}
		}
	}
	if _, err := s.c.WaitHolder(20*time.Second, ""); err != nil {
		s.violate("after the faults: %v", err)
		return
	}
	// Restarted members finish their hello holddown and may take the role
	// back; then every member must name the same primary.
	var views map[string]string
	err := netlab.WaitFor(s.c.opts.Holddown+15*time.Second, 200*time.Millisecond, func() (bool, error) {
		views = map[string]string{}
		for _, gw := range s.c.gws {
			st, err := s.c.Status(gw)
			if err != nil {
				views[gw] = "error: " + err.Error()
				continue
			}
			views[gw] = st.PrimaryID
		}
		h := s.c.Holders()
		if len(h) != 1 {
			return false, nil
		}
		for _, p := range views {
			if p != h[0] {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		s.violate("cluster did not settle on one primary: holders %v, primaries named %v", s.c.Holders(), views)
	}
}

// finalChecks scrapes every daemon once more and scans the logs.
func (s *soak) finalChecks(ctx context.Context) {
	for _, gw := range s.c.gws {
		d := DaemonReport{Gateway: gw, Restarts: s.restarts[gw], PID: s.c.DaemonPID(gw)}
		if !s.c.Running(gw) {
			s.violate("%s daemon not running at the end", gw)
		}
		end, err := s.scrape(ctx, gw)
		if err != nil {
			s.violate("final scrape of %s: %v", gw, err)
		} else if b := s.baseline[gw]; b.pid == end.pid {
			d.Observed = end.at.Sub(b.at).Round(time.Second)
			d.GoroutinesStart, d.GoroutinesEnd = b.goroutines, end.goroutines
			d.RSSStart, d.RSSEnd = b.rss, end.rss
			// A leak grows with time; a few goroutines come and go with
			// the role (announcements, notify, a scrape in flight).
			if d.Observed >= 30*time.Second && end.goroutines > b.goroutines+25 {
				s.violate("%s: goroutines grew from %.0f to %.0f in %s", gw, b.goroutines, end.goroutines, d.Observed)
			}
		} else {
			d.GoroutinesEnd, d.RSSEnd = end.goroutines, end.rss
		}
		s.rep.Daemons = append(s.rep.Daemons, d)
		for _, bad := range []string{"panic:", "fatal error:", "DATA RACE"} {
			if i := strings.Index(s.c.Log(gw), bad); i >= 0 {
				log := s.c.Log(gw)
				s.rep.Crashes = append(s.rep.Crashes, fmt.Sprintf("%s log: %s", gw, firstLines(log[i:], 12)))
				s.violate("%s log contains %q", gw, bad)
			}
		}
	}
}

func firstLines(text string, n int) string {
	lines := strings.SplitN(text, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n    ")
}

// Format writes the report for people.
func (r SoakReport) Format(w io.Writer) {
	fmt.Fprintf(w, "soak: seed %d, faults for %s, heartbeat interval %s\n", r.Seed, r.Duration.Round(time.Second), r.Interval)
	fmt.Fprintf(w, "\nfaults injected (%d drawn but not applicable):\n", r.Skipped)
	total := 0
	for _, k := range AllFaults {
		if n := r.Faults[k]; n > 0 {
			fmt.Fprintf(w, "  %-16s %4d\n", k, n)
			total += n
		}
	}
	fmt.Fprintf(w, "  %-16s %4d\n", "total", total)
	fmt.Fprintf(w, "\nvirtual IP holders: %d samples, every %s on average (longest gap %s), %d changes of primary\n",
		r.Samples, r.PollMean.Round(time.Millisecond), r.PollMax.Round(time.Millisecond), r.PrimaryChange)
	fmt.Fprintf(w, "  longest dual-primary window, heartbeat links healthy: %s (bound: interval %s + poll)\n", r.LongestDual.Round(time.Millisecond), r.Interval)
	fmt.Fprintf(w, "  longest dual-primary window, any state:               %s (%d windows)\n", r.LongestDualAny.Round(time.Millisecond), len(r.Dual))
	for _, d := range r.Dual {
		fmt.Fprintf(w, "    at %s: %s for %s%s; faults: %s\n", d.Start, strings.Join(d.Holders, "+"), d.Length.Round(time.Millisecond),
			map[bool]string{true: " (excused)", false: ""}[d.Excused], orNone(d.Faults))
	}
	fmt.Fprintf(w, "  no-primary windows: %d, longest %s, total %s\n", r.NoHolder, r.NoHolderLongest.Round(time.Millisecond), r.NoHolderTotal.Round(time.Millisecond))
	fmt.Fprintf(w, "\ndaemons (current process: first and last scrape):\n")
	fmt.Fprintf(w, "  %-4s %8s %8s %9s %14s %18s\n", "gw", "pid", "restarts", "observed", "goroutines", "RSS MiB")
	for _, d := range r.Daemons {
		if d.Observed == 0 { // restarted at the end: one scrape, nothing to compare
			fmt.Fprintf(w, "  %-4s %8d %8d %9s %6s    %-5.0f %8s    %-6.1f\n", d.Gateway, d.PID, d.Restarts, "-",
				"", d.GoroutinesEnd, "", d.RSSEnd/(1<<20))
			continue
		}
		fmt.Fprintf(w, "  %-4s %8d %8d %9s %6.0f -> %-5.0f %8.1f -> %-6.1f\n", d.Gateway, d.PID, d.Restarts, d.Observed,
			d.GoroutinesStart, d.GoroutinesEnd, d.RSSStart/(1<<20), d.RSSEnd/(1<<20))
	}
	if s := r.Sessions; s.Enabled {
		fmt.Fprintf(w, "\nsessions: %d opened, %d failovers carried, %d lost (%d at a failover), %d alive at the end\n",
			s.Opened, s.Carried, s.Lost, s.LostAtFailover, s.Alive)
		for _, e := range s.Errors {
			fmt.Fprintf(w, "  %s\n", e)
		}
	} else {
		fmt.Fprintf(w, "\nsessions: not run\n")
	}
	for _, c := range r.Crashes {
		fmt.Fprintf(w, "\ncrash: %s\n", c)
	}
	if len(r.Violations) == 0 {
		fmt.Fprintf(w, "\nresult: PASS\n")
		return
	}
	fmt.Fprintf(w, "\nresult: FAIL, %d violations:\n", len(r.Violations))
	for _, v := range r.Violations {
		fmt.Fprintf(w, "  %s\n", v)
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// sample polls the holders every Poll until ctx ends and measures the
// dual-primary and no-primary windows.
func (s *soak) sample(ctx context.Context, holders func() ([]string, error)) {
	tick := time.NewTicker(s.o.Poll)
	defer tick.Stop()
	var (
		last      time.Time
		gapSum    time.Duration
		prev      []string
		dual      *Window // open window with two or more holders
		dualStart time.Time
		noneStart time.Time
	)
	closeDual := func(now time.Time, gap time.Duration) {
		if dual == nil {
			return
		}
		dual.Length = now.Sub(dualStart)
		s.rep.LongestDualAny = max(s.rep.LongestDualAny, dual.Length)
		if !dual.Excused {
			s.rep.LongestDual = max(s.rep.LongestDual, dual.Length)
			// The window is known to within one sample gap.
			if dual.Length > s.c.opts.Interval+gap {
				dual.Violates = true
				why := "with the heartbeat links healthy"
				if dual.Faults != "" {
					why = "with a member cut off under the quorum rule"
				}
				s.violate("%s held the virtual IP together for %s at %s %s (bound %s + %s poll)",
					strings.Join(dual.Holders, " and "), dual.Length.Round(time.Millisecond), dual.Start, why, s.c.opts.Interval, gap.Round(time.Millisecond))
			}
		}
		s.rep.Dual = append(s.rep.Dual, *dual)
		dual = nil
	}
	closeNone := func(now time.Time) {
		if noneStart.IsZero() {
			return
		}
		d := now.Sub(noneStart)
		s.rep.NoHolder++
		s.rep.NoHolderTotal += d
		s.rep.NoHolderLongest = max(s.rep.NoHolderLongest, d)
		if d > 10*time.Second {
			s.violate("nobody held the virtual IP for %s from %s", d.Round(time.Millisecond), noneStart.Sub(s.start).Round(time.Millisecond))
		}
		noneStart = time.Time{}
	}
	for {
		select {
		case <-ctx.Done():
			now := time.Now()
			closeDual(now, now.Sub(last))
			closeNone(now)
			if s.rep.Samples > 1 {
				s.rep.PollMean = gapSum / time.Duration(s.rep.Samples-1)
			}
			return
		case <-tick.C:
		}
		h, err := holders()
		now := time.Now()
		if err != nil {
			continue // a link being renamed or a namespace read failing: next poll
		}
		gap := time.Duration(0)
		if !last.IsZero() {
			gap = now.Sub(last)
			gapSum += gap
			s.rep.PollMax = max(s.rep.PollMax, gap)
		}
		last = now
		s.rep.Samples++
		faults, healthy := s.haState(now)
		switch {
		case len(h) >= 2:
			if dual != nil && (!slices.Equal(dual.Holders, h) || dual.Excused == healthy) {
				closeDual(now, gap) // holders or link health changed: a new window
			}
			if dual == nil {
				dual = &Window{Start: now.Sub(s.start).Round(time.Millisecond), Holders: h, Faults: faults, Excused: !healthy}
				dualStart = now
			}
			closeNone(now)
		case len(h) == 1:
			closeDual(now, gap)
			closeNone(now)
			if len(prev) == 1 && prev[0] != h[0] {
				if s.o.Logf != nil { // nil in tests that drive the sampler alone
					s.o.Logf("%8s  primary %s -> %s", s.since(), prev[0], h[0])
				}
				s.rep.PrimaryChange++
				s.mu.Lock()
				s.changes = append(s.changes, now)
				s.mu.Unlock()
			}
			prev = h
		default:
			closeDual(now, gap)
			if noneStart.IsZero() {
				noneStart = now
			}
		}
	}
}
