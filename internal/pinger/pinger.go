// Package pinger owns hagate's remote link monitoring: it pings targets
// beyond the member's own links (FGCP's pingserver-monitor-interface,
// failover threshold and pingserver-flip-timeout) and reports how many of
// them count as up, which the election compares between members. The
// split-brain witness is checked the same way, by a Pinger of its own.
//
// Each target gets its own ICMP echo socket bound to its interface and one
// probe per interval. A target counts as up from its first answer, goes
// down after Failures consecutive failed probes (also when it never
// answered), and once down must answer without a single failure for the
// flip timeout before it counts as up again. Tracker holds that rule and is
// pure; the rest of the package is the thin I/O around it.
package pinger

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Target is one address to ping.
type Target struct {
	// Interface the probes leave by (SO_BINDTODEVICE). Empty: routed like
	// any other traffic (the split-brain witness has no interface).
	Interface string
	Addr      netip.Addr
	// Interval between probes. A probe that has no answer after 90% of
	// the interval has failed, so probes never overlap.
	Interval time.Duration
	// Failures is how many consecutive failed probes take the target down.
	Failures int
	// Priority is what the target weighs while it counts as down (FGCP's
	// link-monitor ha-priority, summed against the failover threshold).
	// Below 1 counts as 1.
	Priority int
}

// TargetStatus is what `hagate status` shows of one target.
type TargetStatus struct {
	Interface           string            `json:"interface,omitempty"`
	Target              netip.Addr        `json:"target"`
	State               State             `json:"state"`
	Up                  bool              `json:"up"`
	ConsecutiveFailures int               `json:"consecutive_failures"`
	LastRTT             time.Duration     `json:"last_rtt"`             // of the last answered probe; 0 before one
	LastAnswer          time.Time         `json:"last_answer,omitzero"` // zero before one
	FlipLeft            time.Duration     `json:"flip_left,omitempty"`  // recovering: answering time still needed
	Flips               int               `json:"flips"`                // times it went from up to down
	Sent                uint64            `json:"sent"`                 // echo requests sent
	Answered            uint64            `json:"answered"`             // probes answered in time
	Ignored             map[string]uint64 `json:"ignored,omitempty"`    // received datagrams that were not our reply, by reason
	Socket              string            `json:"socket,omitempty"`     // "icmp-dgram" or "raw"; empty before the socket is open
	LastError           string            `json:"last_error,omitempty"` // socket error since the last answer
}

// Pinger pings a fixed set of targets. Create it with New, start it with
// Run; Updates, Up and Status are safe to call from any goroutine.
type Pinger struct {
	log     *slog.Logger
	flip    time.Duration
	updates chan int
	running atomic.Bool

	// Set before Run; tests replace them.
	kinds []sockKind
	dial  func(Target) (conn, error)

	mu      sync.Mutex
	targets []*target
	up      int // targets counted as up
	down    int // summed priority of the targets not counted as up
}

// target is one target's configuration and what was seen of it. Fields
// after cfg are guarded by Pinger.mu.
type target struct {
	cfg     Target
	payload []byte // random per target: tells our replies from others' with the same id

	tr         *Tracker
	sent       uint64
	answered   uint64
	lastRTT    time.Duration
	lastAnswer time.Time
	ignored    map[string]uint64
	socket     string
	lastErr    string
}

// New checks the targets and returns a Pinger for them. flipTimeout is how
// long a target that went down must answer without a failure before it
// counts as up again (0: at the first answer). A nil log discards.
func New(targets []Target, flipTimeout time.Duration, log *slog.Logger) (*Pinger, error) {
	if flipTimeout < 0 {
		return nil, fmt.Errorf("ping flip timeout %v is negative", flipTimeout)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Pinger{
		log:     log,
		flip:    flipTimeout,
		updates: make(chan int, 1),
		kinds:   defaultKinds,
	}
	p.dial = func(t Target) (conn, error) { return openConn(t, p.kinds) }
	for i, t := range targets {
		t.Addr = t.Addr.Unmap()
		if err := check(t); err != nil {
			return nil, fmt.Errorf("ping target %d: %w", i, err)
		}
		payload := make([]byte, 16)
		rand.Read(payload)
		t.Priority = max(t.Priority, 1)
		p.down += t.Priority // counted down until it answers
		p.targets = append(p.targets, &target{
			cfg:     t,
			payload: payload,
			tr:      NewTracker(t.Failures, flipTimeout),
			ignored: map[string]uint64{},
		})
	}
	return p, nil
}

func check(t Target) error {
	switch {
	case !t.Addr.IsValid() || t.Addr.IsUnspecified():
		return errors.New("no address")
	case t.Addr.IsMulticast():
		return fmt.Errorf("%s is a multicast address", t.Addr)
	case t.Interval <= 0:
		return fmt.Errorf("%s: interval %v is not positive", t.Addr, t.Interval)
	case t.Failures < 1:
		return fmt.Errorf("%s: failures %d is below 1", t.Addr, t.Failures)
	case len(t.Interface) >= 16: // IFNAMSIZ, with its NUL
		return fmt.Errorf("%s: interface name %q is too long", t.Addr, t.Interface)
	}
	return nil
}

// Run pings every target, one goroutine each, until ctx ends; it returns
// when they all have, having closed their sockets. A socket that cannot be
// opened or used (the interface is missing or down) fails the probe and is
// opened again at the next one. Run may be called once.
func (p *Pinger) Run(ctx context.Context) error {
	if !p.running.CompareAndSwap(false, true) {
		return errors.New("pinger already running")
	}
	var wg sync.WaitGroup
	for _, t := range p.targets {
		wg.Go(func() { p.loop(ctx, t) })
	}
	<-ctx.Done()
	wg.Wait()
	return nil
}

// Updates delivers the number of targets counted as up each time it
// changes. It is 0 before the first update. The channel holds only the
// latest count: a slow reader misses intermediate counts, never the last.
func (p *Pinger) Updates() <-chan int { return p.updates }

// Up returns the number of targets counted as up now.
func (p *Pinger) Up() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.up
}

// Counts returns the number of targets counted as up and the summed
// priority of the others, read together.
func (p *Pinger) Counts() (up, downPriority int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.up, p.down
}

// Status returns each target's status, in the order given to New.
func (p *Pinger) Status() []TargetStatus {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]TargetStatus, 0, len(p.targets))
	for _, t := range p.targets {
		s := TargetStatus{
			Interface:           t.cfg.Interface,
			Target:              t.cfg.Addr,
			State:               t.tr.State(),
			Up:                  t.tr.Up(),
			ConsecutiveFailures: t.tr.ConsecutiveFailures(),
			LastRTT:             t.lastRTT,
			LastAnswer:          t.lastAnswer,
			FlipLeft:            t.tr.FlipLeft(now),
			Flips:               t.tr.Flips(),
			Sent:                t.sent,
			Answered:            t.answered,
			Socket:              t.socket,
			LastError:           t.lastErr,
		}
		if len(t.ignored) > 0 {
			s.Ignored = make(map[string]uint64, len(t.ignored))
			for k, v := range t.ignored {
				s.Ignored[k] = v
			}
		}
		out = append(out, s)
	}
	return out
}

// loop probes one target every interval until ctx ends.
func (p *Pinger) loop(ctx context.Context, t *target) {
	var (
		c    conn
		stop func() bool
		seq  uint16
		buf  = make([]byte, 1500)
	)
	drop := func() {
		if c != nil {
			stop()
			c.close()
			c = nil
		}
	}
	defer drop()
	timer := time.NewTimer(0)
	defer timer.Stop()
	next := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		var res result
		if c == nil {
			nc, err := p.dial(t.cfg)
			if err != nil {
				res.err = err
			} else {
				c = nc
				// Closing the socket is what wakes a read blocked in a probe.
				stop = context.AfterFunc(ctx, func() { nc.close() })
				p.opened(t, c.kind())
			}
		}
		if c != nil {
			seq++
			res = p.probe(t, c, seq, buf)
		}
		if ctx.Err() != nil {
			return // the socket was closed under the probe: not an outcome
		}
		if res.err != nil {
			drop() // reopen at the next probe: the interface may be new
		}
		p.record(t, time.Now(), res)

		next = next.Add(t.cfg.Interval)
		if now := time.Now(); next.Before(now) {
			next = now // fell behind (a slow open): skip, do not burst
		}
		timer.Reset(time.Until(next))
	}
}

// result is the outcome of one probe.
type result struct {
	sent bool
	ok   bool
	rtt  time.Duration
	err  error // the socket failed; nil for a plain timeout
}

// probe sends one echo request and waits for its reply until the probe
// timeout, counting whatever else arrives meanwhile.
func (p *Pinger) probe(t *target, c conn, seq uint16, buf []byte) result {
	dst := t.cfg.Addr
	want := echo{id: c.id(), seq: seq, payload: t.payload}
	sent := time.Now()
	if err := c.writeTo(echoRequest(dst, want), dst); err != nil {
		return result{err: fmt.Errorf("send echo request: %w", err)}
	}
	deadline := sent.Add(probeTimeout(t.cfg.Interval))
	for {
		n, src, err := c.readFrom(buf, deadline)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return result{sent: true}
		}
		if err != nil {
			return result{sent: true, err: fmt.Errorf("receive echo reply: %w", err)}
		}
		got, why := parseEchoReply(buf[:n], dst.Is6(), c.ipHeader())
		if why == dropNone {
			why = matchReply(got, src, dst, want)
		}
		if why == dropNone {
			return result{sent: true, ok: true, rtt: time.Since(sent)}
		}
		p.mu.Lock()
		t.ignored[why.String()]++
		p.mu.Unlock()
	}
}

// probeTimeout leaves a tenth of the interval between a probe's deadline
// and the next probe, so a late reply is never taken for the next one's.
func probeTimeout(interval time.Duration) time.Duration {
	return interval - interval/10
}

func (p *Pinger) opened(t *target, k sockKind) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t.socket = k.String()
}

// record feeds a probe's outcome to the target's tracker, logs what changed
// and publishes the new count.
func (p *Pinger) record(t *target, now time.Time, res result) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if res.sent {
		t.sent++
	}
	if res.ok {
		t.answered++
		t.lastRTT = res.rtt
		t.lastAnswer = now
		t.lastErr = ""
	}
	if res.err != nil && res.err.Error() != t.lastErr {
		// Logged once per distinct error: a missing interface would
		// otherwise log every interval.
		t.lastErr = res.err.Error()
		p.log.Warn("ping target socket error", "target", t.cfg.Addr, "interface", t.cfg.Interface, "err", res.err)
	}
	before := t.tr.State()
	up, changed := t.tr.Step(now, res.ok)
	p.logTransition(t, before, t.tr.State())
	if !changed {
		return
	}
	if up {
		p.up++
		p.down -= t.cfg.Priority
	} else {
		p.up--
		p.down += t.cfg.Priority
	}
	select { // keep only the latest count; senders hold p.mu
	case <-p.updates:
	default:
	}
	p.updates <- p.up
}

func (p *Pinger) logTransition(t *target, from, to State) {
	if from == to {
		return
	}
	attrs := []any{"target", t.cfg.Addr, "interface", t.cfg.Interface, "failures", t.tr.ConsecutiveFailures()}
	switch {
	case to == StateUp:
		p.log.Info("ping target up", attrs...)
	case from == StateUp:
		p.log.Warn("ping target down", attrs...)
	case from == StatePending:
		p.log.Warn("ping target never answered", attrs...)
	case to == StateRecovering:
		p.log.Info("ping target answering again, counted down until the flip timeout",
			append(attrs, "flip_timeout", p.flip)...)
	default: // recovering -> down: a flapping target would log every flap
		p.log.Debug("ping target failed while recovering, flip timeout restarts", attrs...)
	}
}
