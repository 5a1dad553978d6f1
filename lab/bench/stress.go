package bench

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hagate/hagate/lab/netlab"
)

// The CPU stress scenario: a settled cluster, both systems tuned to the
// same detection time (hagate 50 ms x 3, VRRPv3 adverts every 0.05 s; with
// -stress-fast the datagrams' 10 ms x 3 and 0.01 s),
// nothing wrong with it, and a CPU hog busy on every core (one worker
// per core plus one) for the whole run. Every time the LAN virtual IP
// moves to a gateway is a false failover: the primary never failed.
// keepalived users report spurious failovers under load; this counts them
// for both systems.

// stressResult is one CPU stress run.
type stressResult struct {
	Duration time.Duration // asked for
	Fast     bool          // at the datagrams' 10 ms tuning (-stress-fast), not the power loss's
	StartNS  int64         // Unix ns, when the hog started
	Elapsed  time.Duration // the hog ran this long
	Workers  int
	CPUs     int     // of the machine
	HogCPU   float64 // CPU seconds the hog got: how much stress there was
	// Moves lists every time a gateway added the LAN virtual IP after
	// the cluster settled (each a false failover), and Dual how often both
	// gateways held it at once.
	Moves []vipEvent
	Dual  int
	Err   string
	Note  string
}

// vipEvent is a gateway adding or removing the LAN virtual IP.
type vipEvent struct {
	AtNS  int64 // Unix ns, as the watcher read it
	GW    string
	Added bool
}

// FalseFailovers is the count the table shows.
func (s stressResult) FalseFailovers() int { return len(s.Moves) }

// stressDefault is the run length of the issue; -quick runs seconds.
const (
	stressDefault = 10 * time.Minute
	stressQuick   = 15 * time.Second
)

// stressScenario runs the CPU stress scenario once per system and run.
func (e *env) stressScenario(ctx context.Context, cfg Config, res *Results, w io.Writer) {
	for i := range cfg.StressRuns {
		for _, sys := range cfg.Systems {
			if ctx.Err() != nil {
				return
			}
			t0 := time.Now()
			r, err := e.runStress(ctx, sys, cfg.StressFor, cfg.StressFast)
			if err != nil && r.Err == "" {
				r.Err = err.Error()
			}
			res.addStress(sys, r)
			fmt.Fprintf(w, "    %s run %d/%d %-22s %s (%s)\n", scStress, i+1, cfg.StressRuns, sys, r.brief(), time.Since(t0).Round(100*time.Millisecond))
		}
	}
}

func (s stressResult) brief() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d false failovers in %s, both held %d times; hog %d workers, %.0f CPU s",
		s.FalseFailovers(), s.Elapsed.Round(time.Second), s.Dual, s.Workers, s.HogCPU)
	const show = 8
	for i, m := range s.Moves {
		if i == show {
			fmt.Fprintf(&b, "; ... %d more", len(s.Moves)-show)
			break
		}
		fmt.Fprintf(&b, "; %s took the VIP at +%s", m.GW, time.Duration(m.AtNS-s.StartNS).Round(time.Millisecond))
	}
	if s.Err != "" {
		fmt.Fprintf(&b, " ERROR: %s", s.Err)
	}
	return b.String()
}

// runStress runs one system's cluster under the hog for dur and counts
// the virtual IP's moves.
func (e *env) runStress(ctx context.Context, system string, dur time.Duration, fast bool) (res stressResult, err error) {
	res.Duration, res.Fast = dur, fast
	tuning := Tuned
	if fast {
		tuning = Fast
	}
	r, err := e.newRun(system, tuning)
	if err != nil {
		return res, err
	}
	defer r.close()
	defer func() { res.Note = r.sys.Note() }()
	if err := r.startAll(20 * time.Second); err != nil {
		return res, err
	}
	vw, err := watchVIP(r.l)
	if err != nil {
		return res, err
	}
	res.CPUs = runtime.NumCPU()
	res.Workers = res.CPUs + 1
	// Re-executed inside the lab, so that closing the lab kills it even
	// if this run is cut short; it also stops by itself after dur.
	hog, err := r.l.Start(netlab.Server, nil, e.self, cmdCPUHog, "-workers", strconv.Itoa(res.Workers), "-for", dur.String())
	if err != nil {
		return res, fmt.Errorf("cpu hog: %w", err)
	}
	start := time.Now()
	res.StartNS = start.UnixNano()
	select {
	case <-ctx.Done():
	case <-time.After(dur):
	}
	res.Elapsed = time.Since(start)
	if p, err := readProc(hog.Process.Pid); err == nil {
		res.HogCPU = p.CPUSecs
	}
	hog.Process.Kill()
	hog.Wait()
	res.Moves, res.Dual = vw.stop()
	if !holdsVIPs(r.l, "gw1") && !holdsVIPs(r.l, "gw2") {
		return res, fmt.Errorf("after the run no gateway holds both virtual IPs")
	}
	return res, ctx.Err()
}

// vipWatch follows `ip monitor address` on every gateway of a lab and
// records when each adds or removes the LAN virtual IP. Watching events,
// rather than polling, catches a flap however short, and adds no load.
type vipWatch struct {
	mu     sync.Mutex
	held   map[string]bool
	events []vipEvent
	dual   int
	stops  []func()
}

func watchVIP(l *netlab.Lab) (*vipWatch, error) {
	vw := &vipWatch{held: map[string]bool{}}
	for _, gw := range l.Gateways() {
		vw.held[gw] = l.HasAddr(gw, netlab.LAN, netlab.LANVIP.String())
		lw := &lineWriter{line: func(s string) { vw.line(gw, s) }}
		cmd, err := l.Start(gw, lw, "ip", "-o", "monitor", "address", "dev", netlab.LAN)
		if err != nil {
			vw.stop()
			return nil, err
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		vw.stops = append(vw.stops, func() { cmd.Process.Kill(); <-done })
	}
	return vw, nil
}

// vipLine reads one line of `ip -o monitor address`: whether it is about
// the LAN virtual IP, and whether it was added or deleted.
func vipLine(s string) (about, added bool) {
	f := strings.Fields(s)
	for i := 0; i+1 < len(f); i++ {
		if addr, _, _ := strings.Cut(f[i+1], "/"); f[i] == "inet" && addr == netlab.LANVIP.Addr().String() {
			return true, f[0] != "Deleted"
		}
	}
	return false, false
}

func (vw *vipWatch) line(gw, s string) {
	about, added := vipLine(s)
	if !about {
		return
	}
	now := time.Now()
	vw.mu.Lock()
	defer vw.mu.Unlock()
	if vw.held[gw] == added {
		return // a repeat (e.g. a refreshed address), no change
	}
	vw.held[gw] = added
	vw.events = append(vw.events, vipEvent{AtNS: now.UnixNano(), GW: gw, Added: added})
	if added {
		n := 0
		for _, h := range vw.held {
			if h {
				n++
			}
		}
		if n > 1 {
			vw.dual++
		}
	}
}

// stop ends the watchers and returns the additions of the virtual IP and
// how often more than one gateway held it.
func (vw *vipWatch) stop() (moves []vipEvent, dual int) {
	for _, s := range vw.stops {
		s()
	}
	vw.stops = nil // stopping twice is harmless
	vw.mu.Lock()
	defer vw.mu.Unlock()
	for _, ev := range vw.events {
		if ev.Added {
			moves = append(moves, ev)
		}
	}
	return moves, vw.dual
}

// lineWriter calls line for every complete line written to it.
type lineWriter struct {
	mu   sync.Mutex
	buf  []byte
	line func(string)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.line(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > 64<<10 {
		w.buf = w.buf[:0] // no line is this long: drop the garbage
	}
	return len(p), nil
}

// toolCPUHog keeps workers goroutines busy, one OS thread each, for the
// given time or until ctx ends.
func toolCPUHog(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet(cmdCPUHog, flag.ContinueOnError)
	workers := fs.Int("workers", runtime.NumCPU()+1, "busy goroutines")
	dur := fs.Duration("for", time.Minute, "how long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *workers < 1 || *workers > 1024 || *dur <= 0 || *dur > 24*time.Hour {
		return fmt.Errorf("want 1..1024 workers for 0..24h, got %d for %s", *workers, *dur)
	}
	runtime.GOMAXPROCS(*workers)
	ctx, cancel := context.WithTimeout(ctx, *dur)
	defer cancel()
	var stop atomic.Bool
	context.AfterFunc(ctx, func() { stop.Store(true) })
	var wg sync.WaitGroup
	var sink atomic.Uint64
	for range *workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			x := uint64(1)
			for !stop.Load() {
				for range 1 << 16 {
					x = x*6364136223846793005 + 1442695040888963407
				}
			}
			sink.Add(x)
		}()
	}
	wg.Wait()
	fmt.Fprintf(stdout, "cpu-hog: %d workers for %s done (%x)\n", *workers, *dur, sink.Load()&0xff)
	return nil
}
