package bench

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/hagate/hagate/lab/echo"
	"github.com/hagate/hagate/lab/netlab"
)

// Fault is what happens to the primary.
type Fault int

const (
	// PowerLoss cuts the primary's heartbeat link, then its LAN and WAN
	// links, and kills its daemons with SIGKILL.
	PowerLoss Fault = iota
	// WANDown takes the primary's WAN link down (carrier loss).
	WANDown
)

// failoverResult is one failover run.
type failoverResult struct {
	Gap      Gap
	Survived bool
	Takeover time.Duration // until gw2 held both virtual IPs
	// Usable is how long after the fault gw2's kernel table held every
	// one of the Sessions (0 sessions: not measured).
	Usable   time.Duration
	Sessions int
	// Bulk is how long a late subordinate took to hold every session
	// (sessions runs only), with the samples seen.
	Bulk    time.Duration
	BulkPts []Point
	// BareCreate is the kernel's own time to create as many sessions, in
	// the same run just before the bulk (bareCreate; hagate with session
	// pickup only, 0: not measured).
	BareCreate time.Duration `json:",omitempty"`
	// RSS of the session-sync daemons on the primary and the subordinate
	// after the bulk sync.
	RSS     [2]int64
	Trace   echo.Report // the echo client's, with a sample per record
	FaultNS int64
	// IdleCPU is the CPU time of every daemon of the stack on both
	// gateways, per second, while the cluster idles before the fault
	// (datagram runs only: the cost of 10 ms heartbeats).
	IdleCPU float64 `json:",omitempty"`
	// FalseFailovers counts the additions of the LAN virtual IP by any
	// gateway between the settled start and the fault (datagram runs
	// only: 10 ms heartbeats on a busy machine).
	FalseFailovers int    `json:",omitempty"`
	Err            string // what went wrong, if the run is incomplete
	Note           string // the system's note (System.Note)
}

// failoverPlan is the shape of one failover run.
type failoverPlan struct {
	system   string
	tuning   Tuning
	fault    Fault
	sessions int
	// datagrams, when not 0: the client sends a UDP datagram this often
	// instead of its TCP records.
	datagrams time.Duration
}

// Datagram runs: one every 2 ms, FGCP's 10 ms heartbeat mode's subject.
const datagramInterval = 2 * time.Millisecond

// idleFor is how long a datagram run measures the daemons' CPU time.
const idleFor = 10 * time.Second

// windows returns how long the client runs after the fault and after how
// long without echo it gives a connection up. Both grow with the table:
// conntrackd commits it before the session resumes, and TCP's
// retransmission backoff doubles each time.
func (p failoverPlan) windows() (post, stall time.Duration) {
	post = 6 * time.Second
	if p.datagrams > 0 {
		post = 3 * time.Second // no retransmissions to wait for
	}
	if p.tuning == Defaults && p.fault == PowerLoss {
		post = 12 * time.Second
	}
	post += time.Duration(p.sessions) * 25 * time.Microsecond
	return post, post - time.Second
}

const warmup = 1500 * time.Millisecond

// runFailover runs one failover and measures it. A run that went wrong
// half way returns what it measured with Err set.
func (e *env) runFailover(ctx context.Context, p failoverPlan) (res failoverResult, err error) {
	res.Sessions = p.sessions
	r, err := e.newRun(p.system, p.tuning)
	if err != nil {
		return res, err
	}
	defer r.close()
	defer func() { res.Note = r.sys.Note() }()
	gw1, gw2 := "gw1", "gw2"
	base2, err := kernelCount(ctx, r.l, gw2)
	if err != nil {
		return res, err
	}
	var vw *vipWatch
	if p.sessions == 0 {
		if err := r.startAll(20 * time.Second); err != nil {
			return res, err
		}
		if p.datagrams > 0 {
			if vw, err = watchVIP(r.l); err != nil {
				return res, err
			}
			defer vw.stop()
			if res.IdleCPU, err = r.idleCPU(idleFor); err != nil {
				return res, err
			}
		}
	} else if err := e.lateSubordinate(ctx, r, p.sessions, &res); err != nil {
		return res, err
	}

	post, stall := p.windows()
	c, err := r.startClient(warmup+post, stall, p.datagrams)
	if err != nil {
		return res, err
	}
	time.Sleep(warmup)
	if vw != nil {
		moves, _ := vw.stop()
		res.FalseFailovers = len(moves)
	}
	fault := time.Now()
	res.FaultNS = fault.UnixNano()
	switch p.fault {
	case PowerLoss:
		err = r.l.PowerOff(gw1)
		if kerr := r.sys.Kill(gw1); err == nil {
			err = kerr
		}
	case WANDown:
		err = r.l.LinkDown(gw1, netlab.WAN)
	}
	if err != nil {
		c.wait(0)
		return res, fmt.Errorf("fault: %w", err)
	}

	// Watch the takeover while the client runs.
	var pool *ctPool
	if p.sessions > 0 && p.sessions <= 20000 {
		if pool, err = dialNS(r.l.NS(gw2), 1); err != nil {
			return res, err
		}
		defer pool.Close()
	}
	res.Takeover, res.Usable = -1, -1
	deadline := fault.Add(post)
	for time.Now().Before(deadline) && (res.Takeover < 0 || (p.sessions > 0 && res.Usable < 0)) {
		if res.Takeover < 0 && holdsVIPs(r.l, gw2) {
			res.Takeover = time.Since(fault)
		}
		if p.sessions > 0 && res.Usable < 0 && sessionsIn(ctx, r.l, gw2, pool, base2) >= p.sessions {
			res.Usable = time.Since(fault)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if res.Takeover >= 0 && res.Usable >= 0 {
		res.Usable = max(res.Usable, res.Takeover)
	}

	tr, err := c.wait(post + warmup + 15*time.Second)
	res.Trace = tr
	if err != nil {
		return res, err
	}
	res.Gap = gapOf(tr)
	res.Survived = tr.Survived
	return res, nil
}

// idleCPU is the CPU time every daemon of the stack on every gateway
// spends per second over d.
func (r *run) idleCPU(d time.Duration) (float64, error) {
	total := func() (float64, error) {
		sum := 0.0
		for _, gw := range r.l.Gateways() {
			_, all, err := r.sys.Daemons(gw)
			if err != nil {
				return 0, err
			}
			_, cpu := sumProcs(all)
			sum += cpu
		}
		return sum, nil
	}
	before, err := total()
	if err != nil {
		return 0, err
	}
	time.Sleep(d)
	after, err := total()
	if err != nil {
		return 0, err
	}
	return (after - before) / d.Seconds(), nil
}

// sessionsIn counts the synthetic sessions in gw's kernel table: exactly
// (a dump by mark) when pool is given, otherwise the whole table less
// base.
func sessionsIn(ctx context.Context, l *netlab.Lab, gw string, pool *ctPool, base int) int {
	if pool != nil {
		n, err := pool.Count()
		if err != nil {
			return 0
		}
		return n
	}
	n, err := kernelCount(ctx, l, gw)
	if err != nil {
		return 0
	}
	return n - base
}

// lateSubordinate starts gw1 alone, fills its table once it is primary
// (a starting hagate removes the sessions it finds, as it removes virtual
// IPs: they are not yet its to keep), then starts gw2 and times its bulk
// sync; it records the daemons' memory once gw2 holds everything.
func (e *env) lateSubordinate(ctx context.Context, r *run, n int, res *failoverResult) error {
	if err := r.start("gw1"); err != nil {
		return err
	}
	if err := waitPrimary(r.l, "gw1", 20*time.Second); err != nil {
		return err
	}
	time.Sleep(500 * time.Millisecond)
	if _, err := r.fill(ctx, "gw1", n); err != nil {
		return err
	}
	// Let the primary learn its table before the subordinate comes.
	if k, ok := r.sys.(*kad); ok {
		if err := netlab.WaitFor(30*time.Second+time.Duration(n)*20*time.Microsecond, 50*time.Millisecond, func() (bool, error) {
			in, _, err := k.ctdStats("gw1")
			return err == nil && in >= n, nil
		}); err != nil {
			return fmt.Errorf("conntrackd on gw1 never held the %d sessions: %w", n, err)
		}
	} else {
		time.Sleep(time.Second + time.Duration(n)*time.Microsecond)
	}
	if _, ok := r.sys.(*hg); ok && r.e.hg.pickup {
		// The reference the bulk is judged by, under the same load: the
		// primary's n entries in the host-wide table.
		bare, err := bareCreate(ctx, r.l, n)
		if err != nil {
			r.e.logf("%v", err)
		}
		res.BareCreate = bare
	}
	start := time.Now()
	for _, gw := range r.l.Gateways()[1:] {
		if err := r.start(gw); err != nil {
			return err
		}
	}
	timeout := 20*time.Second + time.Duration(n)*40*time.Microsecond
	if h, ok := r.sys.(*hg); ok {
		// Without a session pickup engine nothing will ever arrive (the
		// primary, up for a while, says so in its log and status): do not
		// wait out the timeout.
		if h.Note() != "" {
			timeout = 0
		}
	}
	// Every late subordinate (more than one with -members): the bulk is
	// done when the last holds every session.
	for _, gw := range r.l.Gateways()[1:] {
		bulk, pts, err := r.waitSynced(gw, n, start, timeout)
		if gw == "gw2" {
			res.BulkPts = pts
		}
		if err != nil {
			res.Bulk = -1
			res.Err = err.Error()
			break
		}
		res.Bulk = bulk
	}
	for i, gw := range []string{"gw1", "gw2"} {
		if sync, _, err := r.sys.Daemons(gw); err == nil {
			res.RSS[i], _ = sumProcs(sync)
		}
	}
	if err := waitPrimary(r.l, "gw1", 10*time.Second); err != nil {
		return err
	}
	time.Sleep(time.Second)
	return nil
}

// seconds converts a measured duration; negative means not measured.
func seconds(d time.Duration) float64 {
	if d < 0 {
		return math.NaN()
	}
	return d.Seconds()
}
