package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/hagate/hagate/internal/nstest"
	"github.com/hagate/hagate/internal/sessions/conntrack"
	"github.com/hagate/hagate/internal/sessions/session"
)

// churnStep is one offered rate of the churn scenario.
type churnStep struct {
	Rate     int           // sessions created (and as many destroyed) per second, offered
	Achieved float64       // created per second, as the generator managed
	Lag      time.Duration // until the subordinate's count met the primary's (polled)
	// LagP50 and LagP99 are the subordinate's lag per change over the step,
	// where the system measures it (lag.go; -1: not measured).
	LagP50, LagP99 time.Duration
	Lost           int     // sessions the subordinate lacks (or has extra) at the end
	Updates        int     // creates + deletes on the primary
	CPU            float64 // CPU seconds of the sync daemons, both gateways
	// GenCPU is the generator's own CPU seconds (this process) over the
	// churn: it shares the machine with the daemons.
	GenCPU float64
	OK     bool
	// GeneratorLimited: the step failed only because the generator fell
	// short of the rate; the system kept up with what it got.
	GeneratorLimited bool `json:",omitempty"`
	Err              string
}

// churnResult is one run of the churn ladder.
type churnResult struct {
	Steps []churnStep
	// Best is the highest offered rate that passed (0: none).
	Best int
	// CPUPer100k is the sync daemons' CPU seconds per 100k updates at
	// Best.
	CPUPer100k float64
	Err        string
}

// Churn: each session lives one second; a rate passes when the generator
// keeps up (90%), and within a second of the churn ending the subordinate
// holds exactly the primary's sessions. The rate doubles until a step
// fails, then churnRefine steps halve the interval between the last pass
// and the first failure.
const (
	churnLife    = time.Second
	churnTick    = 100 * time.Millisecond
	churnMaxLag  = time.Second
	churnLagWait = 5 * time.Second
	churnRefine  = 2
	// churnWorkers is the generator's netlink sockets: as many as the
	// machine has CPUs, each sending batches of requests.
	churnWorkers = 2
)

func churnRates(quick bool) []int {
	if quick {
		return []int{2000, 16000}
	}
	return []int{2000, 4000, 8000, 16000, 32000, 64000, 128000, 256000, 512000}
}

func (e *env) churnScenario(ctx context.Context, cfg Config, res *Results, w io.Writer) {
	dur := 4 * time.Second
	if cfg.Quick {
		dur = 2 * time.Second
	}
	rates := churnRates(cfg.Quick)
	// The primary and the subordinate each hold up to a second of the
	// highest rate; nf_conntrack_max is host-wide.
	if err := nstest.RaiseConntrackMax(4*rates[len(rates)-1] + 65536); err != nil {
		fmt.Fprintf(w, "    churn: %v\n", err)
	}
	systems := cfg.Systems
	if cfg.ChurnHeld > 0 && containsStr(systems, sysHG) {
		systems = append(slices.Clone(systems), sysHGHeld)
	}
	for i := range cfg.Runs {
		for _, sys := range systems {
			if ctx.Err() != nil {
				return
			}
			t0 := time.Now()
			r, err := e.runChurn(ctx, sys, rates, dur, !cfg.Quick)
			if err != nil && r.Err == "" {
				r.Err = err.Error()
			}
			res.addChurn(sys, r)
			fmt.Fprintf(w, "    churn run %d/%d %-22s best %d/s, %.2f CPU s per 100k updates (%s)%s\n",
				i+1, cfg.Runs, sys, r.Best, r.CPUPer100k, time.Since(t0).Round(100*time.Millisecond), errSuffix(r.Err))
			for _, s := range r.Steps {
				lim := ""
				if s.GeneratorLimited {
					lim = " (generator-limited)"
				}
				perChange := ""
				if s.LagP50 >= 0 {
					perChange = fmt.Sprintf(" (per change p50 %s, p99 %s)", fmtDur(s.LagP50), fmtDur(s.LagP99))
				}
				fmt.Fprintf(w, "        %6d/s offered, %6.0f/s achieved, lag %s%s, off by %d, %.2f CPU s (generator %.2f), ok %v%s%s\n",
					s.Rate, s.Achieved, fmtDur(s.Lag), perChange, s.Lost, s.CPU, s.GenCPU, s.OK, lim, errSuffix(s.Err))
			}
		}
	}
}

func errSuffix(s string) string {
	if s == "" {
		return ""
	}
	return " ERROR: " + s
}

// runChurn climbs the rate ladder on one fresh cluster until a rate fails,
// then (if refine) narrows down between the last pass and that failure.
func (e *env) runChurn(ctx context.Context, system string, rates []int, dur time.Duration, refine bool) (churnResult, error) {
	var res churnResult
	r, err := e.newRun(system, Tuned)
	if err != nil {
		return res, err
	}
	defer r.close()
	if err := r.startAll(20 * time.Second); err != nil {
		return res, err
	}
	gen, err := openChurnGen(r.l.NS("gw1"), churnWorkers)
	if err != nil {
		return res, err
	}
	defer gen.Close()
	next := 0 // the next synthetic session id
	step := func(rate int) bool {
		st := e.churnStep(ctx, r, gen, rate, dur, &next)
		res.Steps = append(res.Steps, st)
		if !st.OK {
			return false
		}
		if rate > res.Best {
			res.Best = rate
			if st.Updates > 0 {
				res.CPUPer100k = st.CPU / float64(st.Updates) * 100000
			}
		}
		return true
	}
	pass, fail := 0, 0
	for _, rate := range rates {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		if !step(rate) {
			fail = rate
			break
		}
		pass = rate
	}
	for i := 0; refine && pass > 0 && fail > 0 && i < churnRefine && ctx.Err() == nil; i++ {
		mid := (pass + fail) / 2
		if step(mid) {
			pass = mid
		} else {
			fail = mid
		}
	}
	return res, nil
}

// churnStep offers one rate for dur, then measures the subordinate's lag
// and cleans up.
func (e *env) churnStep(ctx context.Context, r *run, gen *churnGen, rate int, dur time.Duration, next *int) churnStep {
	st := churnStep{Rate: rate}
	perTick := max(1, rate*int(churnTick)/int(time.Second))
	life := int(churnLife / churnTick)
	if *next+int(dur/churnTick+2)*perTick > maxSynthSession {
		*next = 0 // reuse ids: the previous steps' sessions are gone
	}
	cpu0, gcpu0 := daemonsCPU(r), selfCPU()
	lagBefore, lagErr := stepLag(r)
	var live [][2]int // [from, to) per tick, oldest first
	want := 0         // synthetic sessions the primary holds
	start := time.Now()
	created := 0
	for tick := 1; time.Since(start) < dur; tick++ {
		span := [2]int{*next, *next + perTick}
		*next += perTick
		var old [2]int
		if len(live) >= life {
			old, live = live[0], live[1:]
		}
		live = append(live, span)
		c, d, err := gen.churn(ctx, span, old)
		created += c
		want += c - d
		st.Updates += c + d
		if err != nil && st.Err == "" {
			st.Err = err.Error()
		}
		if wait := time.Until(start.Add(time.Duration(tick) * churnTick)); wait > 0 {
			time.Sleep(wait)
		}
	}
	elapsed := time.Since(start)
	st.GenCPU = selfCPU() - gcpu0
	st.Achieved = float64(created) / elapsed.Seconds()
	end := time.Now()

	// Lag: until the subordinate holds exactly what the primary holds.
	st.Lag = -1
	var got int
	var err error
	for time.Since(end) < churnLagWait {
		got, err = r.sys.Synced("gw2")
		if err == nil && got == want {
			st.Lag = time.Since(end)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	st.Lost = want - got
	st.CPU = daemonsCPU(r) - cpu0
	st.LagP50, st.LagP99 = -1, -1
	if lagAfter, err := stepLag(r); err == nil && lagErr == nil {
		st.LagP50, st.LagP99 = lagAfter.quantile(lagBefore, 0.5), lagAfter.quantile(lagBefore, 0.99)
	}
	// The generator's count of what it made, checked against the primary's
	// table (out of the lag's clock).
	if n, err := gen.count(ctx); err != nil {
		st.Err = err.Error()
	} else if n != want && st.Err == "" {
		st.Err = fmt.Sprintf("the primary holds %d synthetic sessions, the generator made %d", n, want)
	}
	synced := st.Err == "" && st.Lag >= 0 && st.Lag < churnMaxLag
	kept := st.Achieved >= 0.9*float64(rate)
	st.OK = synced && kept
	st.GeneratorLimited = synced && !kept

	// Clean up, and let the subordinate drain before the next rate.
	for _, span := range live {
		gen.churn(ctx, [2]int{}, span)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if n, err := r.sys.Synced("gw2"); err == nil && n == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return st
}

// stepLag reads the subordinate's lag histogram, when the system has one.
func stepLag(r *run) (lagHistogram, error) {
	l, ok := r.sys.(perChangeLag)
	if !ok {
		return lagHistogram{}, errors.ErrUnsupported
	}
	return l.lagHistogram("gw2")
}

// churnGen is the churn scenario's load generator: it creates and deletes
// synthetic sessions in one gateway's table through session pickup's own
// ctnetlink layer, which sends many requests per sendmsg over several
// sockets, so that it outpaces the systems it measures (one request per
// round trip topped out near 8k changes/s). The sessions it makes are
// SyntheticFlow's, source-NATed by the kernel itself (CTA_NAT_SRC), so
// their reply tuples are the same.
type churnGen struct {
	k       *conntrack.Kernel
	changes []session.Change
}

// openChurnGen opens the generator on the table of namespace ns, writing
// over workers sockets.
func openChurnGen(ns string, workers int) (*churnGen, error) {
	k, err := conntrack.Open(conntrack.Options{NetNSPath: filepath.Join("/var/run/netns", ns), Workers: workers})
	if err != nil {
		return nil, fmt.Errorf("session generator in %s: %w", ns, err)
	}
	return &churnGen{k: k}, nil
}

func (g *churnGen) Close() { g.k.Close() }

// churn creates the synthetic sessions of span create and deletes those of
// span del ([from, to); empty spans do nothing), in one batch, and returns
// how many of each succeeded (deleting a missing session succeeds).
func (g *churnGen) churn(ctx context.Context, create, del [2]int) (created, deleted int, err error) {
	if err := g.prepare(create, del); err != nil {
		return 0, 0, fmt.Errorf("churn: %w", err)
	}
	created, deleted, err = g.apply(ctx)
	if err != nil {
		err = fmt.Errorf("churn: %w", err)
	}
	return created, deleted, err
}

// prepare makes the batch that apply sends: the creates of span create,
// then the deletes of span del.
func (g *churnGen) prepare(create, del [2]int) error {
	if create[1] > maxSynthSession || del[1] > maxSynthSession {
		return fmt.Errorf("at most %d synthetic sessions", maxSynthSession)
	}
	g.changes = g.changes[:0]
	for i := create[0]; i < create[1]; i++ {
		g.changes = append(g.changes, session.Change{Op: session.Upsert, Session: syntheticSession(i)})
	}
	for i := del[0]; i < del[1]; i++ {
		s := syntheticSession(i)
		g.changes = append(g.changes, session.Change{Op: session.Delete, Session: session.Session{Key: s.Key}})
	}
	return nil
}

// apply sends the prepared batch in one Apply and returns how many creates
// (or updates) and deletes succeeded.
func (g *churnGen) apply(ctx context.Context) (created, deleted int, err error) {
	c0, u0, _, f0 := g.k.Counters()
	err = g.k.Apply(ctx, g.changes)
	c1, u1, _, f1 := g.k.Counters()
	created = int(c1 - c0 + u1 - u0)
	deleted = len(g.changes) - int(f1-f0) - created
	return created, deleted, err
}

// count returns how many synthetic sessions the table holds, recognised
// by their tuple as ctPool.Count does.
func (g *churnGen) count(ctx context.Context) (int, error) {
	n := 0
	err := g.k.Dump(ctx, func(s session.Session) error {
		if s.Family == session.FamilyIPv4 && s.Proto == session.ProtoTCP && s.Orig.DstAddr() == serverAddr &&
			s.Orig.DstPort >= firstDport && s.Orig.DstPort < firstDport+maxSynthSession/portsPerBlock {
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("churn: counting: %w", err)
	}
	return n, nil
}

var wanVIP = session.Addr16(netip.MustParseAddr("203.0.113.1"))

// syntheticSession is SyntheticFlow(i) as session pickup's layer takes it.
func syntheticSession(i int) session.Session {
	block := i / portsPerBlock
	sport := uint16(firstSport + i%portsPerBlock)
	dport := uint16(firstDport + block)
	src := session.Addr16(netip.AddrFrom4([4]byte{192, 0, 2, byte(firstHost + block%hostsPerCycle)}))
	server := session.Addr16(serverAddr)
	return session.Session{
		Key: session.Key{Family: session.FamilyIPv4, Proto: session.ProtoTCP,
			Orig: session.Tuple{Src: src, Dst: server, SrcPort: sport, DstPort: dport}},
		Reply:   session.Tuple{Src: server, Dst: wanVIP, SrcPort: dport, DstPort: sport},
		Status:  session.StatusConfirmed | session.StatusSeenReply | session.StatusAssured | session.StatusSrcNAT,
		Timeout: sessionTimeout,
		Mark:    SyntheticMark,
		TCP:     session.TCPInfo{State: tcpEstablished},
	}
}

// daemonsCPU is the CPU time of the sync daemons on both gateways.
func daemonsCPU(r *run) float64 {
	var total float64
	for _, gw := range r.l.Gateways() {
		if sync, _, err := r.sys.Daemons(gw); err == nil {
			_, cpu := sumProcs(sync)
			total += cpu
		}
	}
	return total
}

// selfCPU is this process's CPU time (user and system), in seconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
