package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/hagate/hagate/internal/nstest"
	"github.com/hagate/hagate/lab/harness"
	"github.com/hagate/hagate/lab/netlab"
)

// Scenario names, as -scenarios takes them.
const (
	scPowerDefaults = "power-defaults" // power loss, each system's defaults
	scPowerTuned    = "power-tuned"    // power loss, same detection time
	scLink          = "link"           // the primary's WAN link down
	scSessions      = "sessions"       // many sessions: bulk sync, memory, then power loss
	scChurn         = "churn"          // create/destroy rate the subordinate keeps up with
	scStress        = "cpu-stress"     // tuned, nothing wrong, CPU hog: false failovers
	scDatagrams     = "datagrams"      // power loss, 10 ms heartbeats, a UDP flow
)

var allScenarios = []string{scPowerDefaults, scPowerTuned, scLink, scSessions, scChurn, scStress, scDatagrams}

// Config is what the command line chose.
type Config struct {
	Scenarios []string
	Sizes     []int // table sizes of the sessions scenario
	Runs      int
	// LargeRuns caps the runs of sizes of a million and more, which take
	// minutes each.
	LargeRuns int
	Quick     bool
	Pickup    bool // hagate with session pickup on
	// StressFor is the length of each CPU stress run, StressRuns how many
	// runs of it each system gets.
	StressFor  time.Duration
	StressRuns int
	// StressFast runs the CPU stress at the datagrams' 10 ms tuning.
	StressFast bool
	Docs       string
	Systems    []string
	Keep       bool
	Render     string
	// Realtime, when not 0, runs every system's daemons at this SCHED_RR
	// priority (hagate's unit CPUSchedulingPolicy=rr, keepalived's
	// vrrp_rt_priority).
	Realtime int
	// HBRealtime is hagate's heartbeat.realtime_priority (the sending
	// thread only); 0 leaves it unset.
	HBRealtime int
	// ChurnHeld, when not 0, runs the churn scenario's hagate a second
	// time with session_pickup.install_delay at this value.
	ChurnHeld time.Duration
	// ReliableEvents turns hagate's session_pickup.reliable_events on.
	ReliableEvents bool
	// Members is the number of gateways (2, or up to 4 for hagate alone:
	// the primary streams to every subordinate).
	Members int
}

func parseFlags(args []string, stderr io.Writer) (Config, error) {
	fs := flag.NewFlagSet("hagate-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	scen := fs.String("scenarios", strings.Join(allScenarios, ","), "scenarios to run: "+strings.Join(allScenarios, ", "))
	sizes := fs.String("sizes", "1000,100000,1000000", "table sizes of the sessions scenario")
	runs := fs.Int("runs", 5, "runs of each scenario and system")
	large := fs.Int("large-runs", 2, "at most this many runs of sizes of 1M and more")
	quick := fs.Bool("quick", false, "smoke run: 1 run, sizes 1000,10000, short churn; docs are not written unless -docs is given")
	pickup := fs.Bool("pickup", true, "hagate with session pickup on")
	docs := fs.String("docs", "", "directory for benchmarks.md and bench/*.svg (default ../docs, the repository's docs/ seen from lab/, for a full run; none for -quick)")
	renderFrom := fs.String("render", "", "write the report from a saved results.json instead of running")
	keep := fs.Bool("keep", false, "keep the scratch directory (configurations and daemon logs)")
	systems := fs.String("systems", strings.Join(systemNames, ","), "systems to run")
	stressFor := fs.Duration("stress-for", stressDefault, "length of each cpu-stress run (-quick: "+stressQuick.String()+")")
	stressRuns := fs.Int("stress-runs", 1, "cpu-stress runs per system")
	stressFast := fs.Bool("stress-fast", false, "cpu-stress at the datagrams' tuning (hagate 10 ms x 3, VRRPv3 advert_int 0.01 s) instead of the power loss's")
	realtime := fs.Int("realtime", 0, "run every system's daemons at this SCHED_RR priority (1..99; 0: normal scheduling)")
	members := fs.Int("members", 2, "gateways in the lab: 2, or 3-4 with -systems hagate (keepalived+conntrackd's FTFW pairs two)")
	hbRealtime := fs.Int("hb-realtime", 0, "hagate's heartbeat.realtime_priority: its heartbeat sending thread alone at this SCHED_FIFO priority (1..99; 0: normal scheduling)")
	churnHeld := fs.Duration("churn-held", 2*time.Second, "churn: run hagate a second time with session_pickup.install_delay at this value, its subordinate holding new sessions in memory as conntrackd's external cache does (0: not)")
	reliable := fs.Bool("reliable-events", false, "hagate's session_pickup.reliable_events (NETLINK_BROADCAST_ERROR on its event socket)")
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	c := Config{Runs: *runs, LargeRuns: *large, Quick: *quick, Pickup: *pickup, Docs: *docs, Keep: *keep, Render: *renderFrom,
		StressFor: *stressFor, StressRuns: *stressRuns, StressFast: *stressFast, Realtime: *realtime, HBRealtime: *hbRealtime, Members: *members, ChurnHeld: *churnHeld, ReliableEvents: *reliable}
	if c.Realtime < 0 || c.Realtime > 99 {
		return c, fmt.Errorf("-realtime %d: want 1..99, or 0 for normal scheduling", c.Realtime)
	}
	if c.Members < 2 || c.Members > 4 {
		return c, fmt.Errorf("-members %d: want 2..4", c.Members)
	}
	if c.HBRealtime < 0 || c.HBRealtime > 99 {
		return c, fmt.Errorf("-hb-realtime %d: want 1..99, or 0 for normal scheduling", c.HBRealtime)
	}
	for _, s := range strings.Split(*scen, ",") {
		s = strings.TrimSpace(s)
		if s == "all" {
			c.Scenarios = append(c.Scenarios, allScenarios...)
			continue
		}
		if !containsStr(allScenarios, s) {
			return c, fmt.Errorf("unknown scenario %q (have %s)", s, strings.Join(allScenarios, ", "))
		}
		c.Scenarios = append(c.Scenarios, s)
	}
	for _, s := range strings.Split(*systems, ",") {
		if !containsStr(systemNames, s) {
			return c, fmt.Errorf("unknown system %q (have %s)", s, strings.Join(systemNames, ", "))
		}
		c.Systems = append(c.Systems, s)
	}
	if c.Members > 2 && containsStr(c.Systems, sysKAD) {
		return c, fmt.Errorf("-members %d: keepalived+conntrackd runs with 2 only (use -systems hagate)", c.Members)
	}
	if c.Quick {
		c.Runs = 1
		if !flagSet(fs, "sizes") {
			*sizes = "1000,10000"
		}
		if !flagSet(fs, "stress-for") {
			c.StressFor = stressQuick
		}
	}
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > maxSynthSession {
			return c, fmt.Errorf("bad size %q (1..%d)", s, maxSynthSession)
		}
		c.Sizes = append(c.Sizes, n)
	}
	if c.Runs < 1 || c.Runs > 100 || c.LargeRuns < 1 {
		return c, errors.New("-runs must be 1..100 and -large-runs at least 1")
	}
	if c.StressFor < time.Second || c.StressFor > 24*time.Hour || c.StressRuns < 1 || c.StressRuns > 100 {
		return c, errors.New("-stress-for must be 1s..24h and -stress-runs 1..100")
	}
	if c.Docs == "" && !c.Quick {
		// The benchmark runs from the lab module (lab/, as make bench
		// does); the report belongs to the repository's docs.
		c.Docs = "../docs"
	}
	return c, nil
}

func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// missingTools names the programs the suite needs that are not installed.
func missingTools() []string {
	var miss []string
	for _, t := range []string{"ip", "nft", "sysctl", "conntrack", "keepalived", "conntrackd", "go"} {
		if _, err := exec.LookPath(t); err != nil {
			miss = append(miss, t)
		}
	}
	return miss
}

// runSuite runs the chosen scenarios and writes the report.
func runSuite(ctx context.Context, cfg Config, args []string, w io.Writer) error {
	if cfg.Render != "" {
		return render(cfg.Render, cfg.Docs)
	}
	if os.Geteuid() != 0 {
		return errors.New("run as root (it builds network namespaces): sudo make bench")
	}
	if miss := missingTools(); len(miss) > 0 {
		return fmt.Errorf("missing %s; on Debian: apt-get install -y --no-install-recommends keepalived conntrackd conntrack iproute2 nftables", strings.Join(miss, ", "))
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "hagate-bench")
	if err != nil {
		return err
	}
	if cfg.Keep {
		fmt.Fprintf(w, "==> keeping configurations and logs in %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	fmt.Fprintln(w, "==> building hagate")
	hgBin, err := harness.Build(dir)
	if err != nil {
		return err
	}
	e := &env{self: self, hgBin: hgBin, dir: dir, hg: hgSettings{pickup: cfg.Pickup, hbRealtime: cfg.HBRealtime, reliableEvents: cfg.ReliableEvents}, realtime: cfg.Realtime, churnHeld: cfg.ChurnHeld, members: cfg.Members, logf: func(f string, a ...any) { fmt.Fprintf(w, "    "+f+"\n", a...) }}
	if n := maxSize(cfg); n > 0 {
		// nf_conntrack_max is host-wide and covers every namespace: the
		// primary and the subordinate each hold the table, plus slack.
		l, err := netlab.New(netlab.Options{Prefix: "hgbench", Gateways: 2})
		if err != nil {
			return err
		}
		err = nstest.RaiseConntrackMax(cfg.Members*n + 65536)
		l.Close()
		if err != nil {
			return err
		}
		restore, err := raiseHashsize(n)
		if err != nil {
			return err
		}
		defer func() {
			if err := restore(); err != nil {
				fmt.Fprintf(w, "==> %v\n", err)
			}
		}()
	}
	res := newResults(cfg, args)
	start := time.Now()
	for _, sc := range cfg.Scenarios {
		if ctx.Err() != nil {
			break
		}
		fmt.Fprintf(w, "==> %s\n", sc)
		switch sc {
		case scChurn:
			e.churnScenario(ctx, cfg, res, w)
		case scStress:
			e.stressScenario(ctx, cfg, res, w)
		default:
			e.failoverScenario(ctx, cfg, sc, res, w)
		}
	}
	res.Elapsed = time.Since(start)
	fmt.Fprintf(w, "==> done in %s\n", res.Elapsed.Round(time.Second))
	res.printSummary(w)
	if cfg.Docs != "" {
		if err := res.write(cfg.Docs); err != nil {
			return err
		}
		fmt.Fprintf(w, "==> wrote %s/benchmarks.md and %s/bench/*.svg\n", cfg.Docs, cfg.Docs)
	}
	return ctx.Err()
}

func maxSize(cfg Config) int {
	if !containsStr(cfg.Scenarios, scSessions) {
		return 0
	}
	n := 0
	for _, s := range cfg.Sizes {
		n = max(n, s)
	}
	return n
}

// failoverScenario runs every failover of one scenario (each size of the
// sessions scenario) for both systems, interleaved run by run so that
// slow drifts of the machine hit both alike.
func (e *env) failoverScenario(ctx context.Context, cfg Config, sc string, res *Results, w io.Writer) {
	var plans []failoverPlan
	switch sc {
	case scPowerDefaults:
		plans = []failoverPlan{{tuning: Defaults, fault: PowerLoss}}
	case scPowerTuned:
		plans = []failoverPlan{{tuning: Tuned, fault: PowerLoss}}
	case scLink:
		plans = []failoverPlan{{tuning: Defaults, fault: WANDown}}
	case scDatagrams:
		plans = []failoverPlan{{tuning: Fast, fault: PowerLoss, datagrams: datagramInterval}}
	case scSessions:
		for _, n := range cfg.Sizes {
			plans = append(plans, failoverPlan{tuning: Tuned, fault: PowerLoss, sessions: n})
		}
	}
	for _, p := range plans {
		key := sc
		if p.sessions > 0 {
			key = fmt.Sprintf("%s-%d", sc, p.sessions)
		}
		runs := cfg.Runs
		if p.sessions >= 1000000 {
			runs = min(runs, cfg.LargeRuns)
		}
		for i := range runs {
			for _, sys := range cfg.Systems {
				if ctx.Err() != nil {
					return
				}
				p.system = sys
				t0 := time.Now()
				r, err := e.runFailover(ctx, p)
				if err != nil && r.Err == "" {
					r.Err = err.Error()
				}
				res.addFailover(key, sys, r)
				fmt.Fprintf(w, "    %s run %d/%d %-22s %s (%s)\n", key, i+1, runs, sys, r.brief(), time.Since(t0).Round(100*time.Millisecond))
			}
		}
	}
}

// brief is a one-line account of a failover run for the console.
func (r failoverResult) brief() string {
	var b strings.Builder
	fmt.Fprintf(&b, "gap %s", r.Gap.Length.Round(time.Millisecond))
	if r.Gap.Open {
		b.WriteString("+")
	}
	fmt.Fprintf(&b, " survived %v takeover %s", r.Survived, fmtDur(r.Takeover))
	if r.Sessions > 0 {
		fmt.Fprintf(&b, " usable %s bulk %s rss %.1f/%.1f MB", fmtDur(r.Usable), fmtDur(r.Bulk), float64(r.RSS[0])/1e6, float64(r.RSS[1])/1e6)
		if r.BareCreate > 0 {
			fmt.Fprintf(&b, " (kernel's own create %s)", fmtDur(r.BareCreate))
		}
	}
	if r.Trace.Network == "udp" {
		fmt.Fprintf(&b, " lost %d of %d datagrams, idle CPU %.3f s/s, false failovers before the fault %d", r.Trace.Lost, r.Trace.Sent, r.IdleCPU, r.FalseFailovers)
	}
	if len(r.Trace.Errors) > 0 {
		fmt.Fprintf(&b, " [%s]", strings.Join(r.Trace.Errors, "; "))
	}
	if r.Err != "" {
		fmt.Fprintf(&b, " ERROR: %s", r.Err)
	}
	return b.String()
}

func fmtDur(d time.Duration) string {
	if d < 0 {
		return "n/a"
	}
	return d.Round(time.Millisecond).String()
}

// nan is a missing measurement.
var nan = math.NaN()
