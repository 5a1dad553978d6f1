package bench

import (
	"context"
	"fmt"
	"io"
	"time"
)

// churnStep is one offered rate of the churn scenario.
type churnStep struct {
	Rate     int     // sessions created (and as many destroyed) per second, offered
	Achieved float64 // created per second, as the generator managed
	Lag      time.Duration
	Lost     int     // sessions the subordinate lacks (or has extra) at the end
	Updates  int     // creates + deletes on the primary
	CPU      float64 // CPU seconds of the sync daemons, both gateways
	OK       bool
	Err      string
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
// holds exactly the primary's sessions.
const (
	churnLife    = time.Second
	churnTick    = 100 * time.Millisecond
	churnMaxLag  = time.Second
	churnLagWait = 5 * time.Second
)

func churnRates(quick bool) []int {
	if quick {
		return []int{1000, 4000}
	}
	return []int{1000, 2000, 4000, 8000, 16000, 32000}
}

func (e *env) churnScenario(ctx context.Context, cfg Config, res *Results, w io.Writer) {
	dur := 4 * time.Second
	if cfg.Quick {
		dur = 2 * time.Second
	}
	for i := range cfg.Runs {
		for _, sys := range cfg.Systems {
			if ctx.Err() != nil {
				return
			}
			t0 := time.Now()
			r, err := e.runChurn(ctx, sys, churnRates(cfg.Quick), dur)
			if err != nil && r.Err == "" {
				r.Err = err.Error()
			}
			res.addChurn(sys, r)
			fmt.Fprintf(w, "    churn run %d/%d %-22s best %d/s, %.2f CPU s per 100k updates (%s)%s\n",
				i+1, cfg.Runs, sys, r.Best, r.CPUPer100k, time.Since(t0).Round(100*time.Millisecond), errSuffix(r.Err))
			for _, s := range r.Steps {
				fmt.Fprintf(w, "        %6d/s offered, %6.0f/s achieved, lag %s, off by %d, %.2f CPU s, ok %v%s\n",
					s.Rate, s.Achieved, fmtDur(s.Lag), s.Lost, s.CPU, s.OK, errSuffix(s.Err))
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

// runChurn climbs the rate ladder on one fresh cluster until a rate fails.
func (e *env) runChurn(ctx context.Context, system string, rates []int, dur time.Duration) (churnResult, error) {
	var res churnResult
	r, err := e.newRun(system, Tuned)
	if err != nil {
		return res, err
	}
	defer r.close()
	if err := r.startAll(20 * time.Second); err != nil {
		return res, err
	}
	pool, err := dialNS(r.l.NS("gw1"), 4)
	if err != nil {
		return res, err
	}
	defer pool.Close()
	next := 0 // the next synthetic session id
	for _, rate := range rates {
		st := e.churnStep(ctx, r, pool, rate, dur, &next)
		res.Steps = append(res.Steps, st)
		if !st.OK {
			break
		}
		res.Best = rate
		if st.Updates > 0 {
			res.CPUPer100k = st.CPU / float64(st.Updates) * 100000
		}
	}
	return res, nil
}

// churnStep offers one rate for dur, then measures the subordinate's lag
// and cleans up.
func (e *env) churnStep(ctx context.Context, r *run, pool *ctPool, rate int, dur time.Duration, next *int) churnStep {
	st := churnStep{Rate: rate}
	perTick := max(1, rate*int(churnTick)/int(time.Second))
	life := int(churnLife / churnTick)
	cpu0 := daemonsCPU(r)
	var live [][2]int // [from, to) per tick, oldest first
	start := time.Now()
	created := 0
	for tick := 1; time.Since(start) < dur; tick++ {
		from := *next
		n, err := pool.Create(ctx, from, from+perTick)
		*next += perTick
		created += n
		st.Updates += n
		if err != nil && st.Err == "" {
			st.Err = err.Error()
		}
		live = append(live, [2]int{from, from + perTick})
		if len(live) > life {
			old := live[0]
			live = live[1:]
			d, err := pool.Delete(ctx, old[0], old[1])
			st.Updates += d
			if err != nil && st.Err == "" {
				st.Err = err.Error()
			}
		}
		if wait := time.Until(start.Add(time.Duration(tick) * churnTick)); wait > 0 {
			time.Sleep(wait)
		}
	}
	elapsed := time.Since(start)
	st.Achieved = float64(created) / elapsed.Seconds()
	end := time.Now()

	// Lag: until the subordinate holds exactly what the primary holds.
	want, err := pool.Count()
	if err != nil {
		st.Err = err.Error()
		return st
	}
	st.Lag = -1
	var got int
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
	st.OK = st.Err == "" && st.Achieved >= 0.9*float64(rate) && st.Lag >= 0 && st.Lag < churnMaxLag

	// Clean up, and let the subordinate drain before the next rate.
	for _, span := range live {
		pool.Delete(ctx, span[0], span[1])
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
