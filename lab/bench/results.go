package bench

import (
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Results collects every run of a suite.
type Results struct {
	cfg     Config
	args    []string
	Started time.Time
	Elapsed time.Duration

	mu       sync.Mutex
	failover map[string]map[string][]failoverResult // scenario key -> system -> runs
	churn    map[string][]churnResult
	stress   map[string][]stressResult
	hgNote   string // why hagate's sessions cannot survive, if they cannot
}

// savedResults is the raw data of a suite, kept beside the report so that
// it can be rendered again (-render) without running anything.
type savedResults struct {
	Config   Config
	Args     []string
	Started  time.Time
	Elapsed  time.Duration
	Failover map[string]map[string][]failoverResult
	Churn    map[string][]churnResult
	HGNote   string
	Stress   map[string][]stressResult `json:",omitempty"`
}

func (r *Results) save() savedResults {
	r.mu.Lock()
	defer r.mu.Unlock()
	return savedResults{r.cfg, r.args, r.Started, r.Elapsed, r.failover, r.churn, r.hgNote, r.stress}
}

func (s savedResults) results() *Results {
	r := newResults(s.Config, s.Args)
	r.Started, r.Elapsed, r.hgNote = s.Started, s.Elapsed, s.HGNote
	if s.Failover != nil {
		r.failover = s.Failover
	}
	if s.Churn != nil {
		r.churn = s.Churn
	}
	if s.Stress != nil {
		r.stress = s.Stress
	}
	return r
}

func newResults(cfg Config, args []string) *Results {
	return &Results{cfg: cfg, args: args, Started: time.Now(),
		failover: map[string]map[string][]failoverResult{}, churn: map[string][]churnResult{}, stress: map[string][]stressResult{}}
}

func (r *Results) addFailover(key, sys string, fr failoverResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failover[key] == nil {
		r.failover[key] = map[string][]failoverResult{}
	}
	r.failover[key][sys] = append(r.failover[key][sys], fr)
	if sys == sysHG && fr.Note != "" {
		r.hgNote = fr.Note
	}
}

func (r *Results) addChurn(sys string, cr churnResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.churn[sys] = append(r.churn[sys], cr)
}

func (r *Results) addStress(sys string, sr stressResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stress[sys] = append(r.stress[sys], sr)
}

// Row is one line of the table: a measurement of both systems.
type Row struct {
	Scenario string
	Unit     string
	Higher   bool // higher is better (rates)
	Values   map[string][]float64
	Extra    map[string]string // per system, after the summary (e.g. "5/5 survived")
	Notes    string
	Plot     string // SVG file name under bench/
}

func (row Row) cell(sys string) string {
	s := Summarize(row.Values[sys]).Format(row.Unit)
	if e := row.Extra[sys]; e != "" {
		s += "; " + e
	}
	return s
}

// ratio is hagate's median over keepalived+conntrackd's.
func (row Row) ratio() string {
	q := Ratio(Summarize(row.Values[sysHG]), Summarize(row.Values[sysKAD]))
	if math.IsNaN(q) {
		return "n/a"
	}
	return strconv.FormatFloat(q, 'f', 2, 64)
}

// failoverKeys lists the failover scenario keys run, in suite order.
func (r *Results) failoverKeys() []string {
	var keys []string
	for _, sc := range r.cfg.Scenarios {
		if sc == scSessions {
			for _, n := range r.cfg.Sizes {
				if k := fmt.Sprintf("%s-%d", sc, n); r.failover[k] != nil {
					keys = append(keys, k)
				}
			}
		} else if r.failover[sc] != nil {
			keys = append(keys, sc)
		}
	}
	return keys
}

var scenarioTitles = map[string]string{
	scPowerDefaults: "Power loss of the primary, defaults (hagate 200 ms x 6, VRRP advert_int 1 s): largest echo gap",
	scPowerTuned:    "Power loss of the primary, same detection time (hagate 50 ms x 3, VRRPv3 advert_int 0.05 s): largest echo gap",
	scLink:          "Link failover (the primary's WAN link down), defaults: largest echo gap",
	scDatagrams:     "Datagrams: a UDP flow (one every 2 ms, SNAT, connectionless pickup), power loss at hagate 10 ms x 3, VRRPv3 advert_int 0.01 s: largest echo gap",
}

// datagramRows are the datagram scenario's own: what the flow lost, and
// what the 10 ms heartbeats cost while nothing fails.
func datagramRows(runs map[string][]failoverResult) []Row {
	lost := Row{Scenario: "↳ datagrams lost (count x 2 ms)", Unit: "s", Values: map[string][]float64{}}
	flaps := Row{Scenario: "↳ false failovers while idle before the fault (the LAN virtual IP added, 11.5 s)", Unit: "", Values: map[string][]float64{}}
	cpu := Row{Scenario: "↳ CPU of every daemon of the stack, both gateways, idle before the fault (seconds per second)", Unit: "s", Values: map[string][]float64{}}
	for _, sys := range systemNames {
		for _, fr := range runs[sys] {
			if fr.Trace.Sent > 0 {
				lost.Values[sys] = append(lost.Values[sys], float64(fr.Trace.Lost)*datagramInterval.Seconds())
			}
			cpu.Values[sys] = append(cpu.Values[sys], fr.IdleCPU)
			flaps.Values[sys] = append(flaps.Values[sys], float64(fr.FalseFailovers))
		}
	}
	return []Row{lost, flaps, cpu}
}

// rows builds the table.
func (r *Results) rows() []Row {
	r.mu.Lock()
	defer r.mu.Unlock()
	var rows []Row
	for _, key := range r.failoverKeys() {
		runs := r.failover[key]
		gap := Row{Scenario: scenarioTitles[key], Unit: "s", Values: map[string][]float64{}, Extra: map[string]string{}, Plot: key + ".svg"}
		n := sessionsOf(key)
		if n > 0 {
			gap.Scenario = fmt.Sprintf("Power loss with %s other sessions (tuned): largest echo gap", count(n))
			gap.Plot = ""
			if n == maxSizeRun(r) {
				gap.Plot = "sessions-live.svg"
			}
		}
		usable := Row{Scenario: fmt.Sprintf("%s sessions: every session in the new primary's kernel table, after the fault", count(n)), Unit: "s", Values: map[string][]float64{}, Plot: "sessions.svg"}
		bulk := Row{Scenario: fmt.Sprintf("Bulk sync of %s sessions to a late subordinate", count(n)), Unit: "s", Values: map[string][]float64{}, Plot: "bulk.svg",
			Notes: "hagate: in the subordinate's kernel table; keepalived+conntrackd: in conntrackd's external cache (into the kernel only at takeover, see the row above)"}
		takeover := Row{Scenario: "↳ the new primary holds both virtual IPs, after the fault", Unit: "s", Values: map[string][]float64{}}
		var notes []string
		for _, sys := range systemNames {
			survived, total := 0, 0
			for _, fr := range runs[sys] {
				total++
				// A session that did not survive has no gap to speak of:
				// the run counts in "survived", not in the gap.
				if fr.Survived {
					survived++
					gap.Values[sys] = append(gap.Values[sys], fr.Gap.Length.Seconds())
				}
				takeover.Values[sys] = append(takeover.Values[sys], seconds(fr.Takeover))
				usable.Values[sys] = append(usable.Values[sys], seconds(fr.Usable))
				if n > 0 {
					bulk.Values[sys] = append(bulk.Values[sys], seconds(fr.Bulk))
				}
			}
			if total > 0 {
				gap.Extra[sys] = fmt.Sprintf("session survived %d/%d", survived, total)
			}
			if note := r.note(sys); note != "" {
				notes = append(notes, sys+": "+note)
			}
		}
		if len(notes) > 0 {
			gap.Notes = strings.Join(notes, "; ")
		}
		rows = append(rows, gap, takeover)
		if key == scDatagrams {
			rows = append(rows, datagramRows(runs)...)
		}
		if n > 0 {
			rows = append(rows, usable, bulk)
			if row, ok := bareRow(n, runs); ok {
				rows = append(rows, row)
			}
		}
	}
	if containsStr(r.cfg.Scenarios, scSessions) {
		rows = append(rows, r.memoryRows()...)
	}
	if len(r.churn) > 0 {
		rows = append(rows, r.churnRows(sysHG, "")...)
		if len(r.churn[sysHGHeld]) > 0 {
			rows = append(rows, r.churnRows(sysHGHeld, fmt.Sprintf(", hagate's subordinate holding new sessions in memory for %s (session_pickup.install_delay) as conntrackd's external cache holds them", r.cfg.ChurnHeld))...)
		}
	}
	if row, ok := r.stressRow(); ok {
		rows = append(rows, row)
	}
	return rows
}

// churnRows are the churn scenario's rate and CPU rows, with hg's runs in
// hagate's column (sysHG, or sysHGHeld) and keepalived+conntrackd's beside.
func (r *Results) churnRows(hg, variant string) []Row {
	rate := Row{Scenario: "Churn" + variant + ": highest create+destroy rate with the subordinate < 1 s behind and nothing lost", Unit: "sessions/s", Higher: true, Values: map[string][]float64{}}
	cpu := Row{Scenario: "Churn" + variant + ": CPU seconds of the sync daemons (both gateways) per 100k updates, at that rate", Unit: "s", Values: map[string][]float64{}}
	if hg == sysHG {
		rate.Plot = "churn.svg"
	}
	for col, sys := range map[string]string{sysHG: hg, sysKAD: sysKAD} {
		for _, cr := range r.churn[sys] {
			rate.Values[col] = append(rate.Values[col], float64(cr.Best))
			if cr.Best > 0 {
				cpu.Values[col] = append(cpu.Values[col], cr.CPUPer100k)
			}
		}
	}
	rate.Notes = fmt.Sprintf("rates tried: %v; each session lives %s; the generator batches creates and deletes through netlink (about 32k/s here); a step it could not keep up with is marked", churnRates(r.cfg.Quick), churnLife)
	return []Row{rate, cpu}
}

// bulkTarget is the most a late subordinate's bulk should take, as a
// multiple of the kernel's own create of as many sessions.
const bulkTarget = 1.15

// bareRow: hagate's bulk over the kernel's own create of as many sessions,
// each run's bulk against the reference measured in that run.
func bareRow(n int, runs map[string][]failoverResult) (Row, bool) {
	sockets := "one netlink socket"
	if bareWorkers > 1 {
		sockets = fmt.Sprintf("%d netlink sockets", bareWorkers)
	}
	row := Row{Scenario: fmt.Sprintf("↳ hagate's bulk of %s sessions over the kernel's own create of as many (a bare batched-create loop on %s, same run)", count(n), sockets),
		Unit: "x", Values: map[string][]float64{}, Extra: map[string]string{},
		Notes: fmt.Sprintf("target: %.2f or less; the subordinate installs over %s too; keepalived+conntrackd's bulk does not reach the kernel", bulkTarget, sockets)}
	var bare, bulk []float64
	for _, fr := range runs[sysHG] {
		if fr.BareCreate <= 0 {
			continue
		}
		bare = append(bare, fr.BareCreate.Seconds())
		if fr.Bulk > 0 {
			bulk = append(bulk, fr.Bulk.Seconds())
			row.Values[sysHG] = append(row.Values[sysHG], fr.Bulk.Seconds()/fr.BareCreate.Seconds())
		}
	}
	if len(bare) == 0 {
		return Row{}, false
	}
	median := func(v []float64) string {
		if s := Summarize(v); s.N > 0 {
			return formatValue(s.Median, "s")
		}
		return "n/a"
	}
	row.Extra[sysHG] = fmt.Sprintf("medians: bulk %s, kernel's own create %s", median(bulk), median(bare))
	return row, true
}

// stressRow: false failovers of the CPU stress runs. A run that ended in
// error counts only if it ran its whole length.
func (r *Results) stressRow() (Row, bool) {
	if len(r.stress) == 0 {
		return Row{}, false
	}
	row := Row{Unit: "", Values: map[string][]float64{}, Extra: map[string]string{}}
	var dur time.Duration
	workers := 0
	fast := false
	for _, sys := range systemNames {
		dual, hog, capacity, errs := 0, 0.0, 0.0, 0
		for _, sr := range r.stress[sys] {
			dur, workers = max(dur, sr.Duration), max(workers, sr.Workers)
			fast = fast || sr.Fast
			if sr.Err != "" && sr.Elapsed < sr.Duration {
				errs++
				continue
			}
			row.Values[sys] = append(row.Values[sys], float64(sr.FalseFailovers()))
			dual += sr.Dual
			hog += sr.HogCPU
			capacity += sr.Elapsed.Seconds() * float64(max(sr.CPUs, 1))
		}
		var extra []string
		if len(row.Values[sys]) > 0 && capacity > 0 {
			extra = append(extra, fmt.Sprintf("both gateways held the VIP at once %d times; the hog got %.0f%% of the machine's CPU time",
				dual, 100*hog/capacity))
		}
		if errs > 0 {
			extra = append(extra, fmt.Sprintf("%d runs cut short", errs))
		}
		row.Extra[sys] = strings.Join(extra, "; ")
	}
	tuning := "power loss tuning (hagate 50 ms x 3, VRRPv3 advert_int 0.05 s)"
	if fast {
		tuning = "the datagrams' tuning (hagate 10 ms x 3, VRRPv3 advert_int 0.01 s)"
	}
	row.Scenario = fmt.Sprintf("False failovers in %s under CPU stress: %s, empty table, nothing failed", fmtLength(dur), tuning)
	row.Notes = fmt.Sprintf("each time the LAN virtual IP moved to a gateway counts; CPU hog: %d busy threads (cores + 1) for the whole run", workers)
	return row, true
}

// fmtLength writes whole minutes as "10 min", anything else as a duration.
func fmtLength(d time.Duration) string {
	if d >= time.Minute && d%time.Minute == 0 {
		return fmt.Sprintf("%d min", d/time.Minute)
	}
	return d.String()
}

// memoryRows: resident memory of the sync daemon per synced session,
// against the same daemon in the smallest sessions run.
func (r *Results) memoryRows() []Row {
	sizes := slices.Clone(r.cfg.Sizes)
	sort.Ints(sizes)
	if len(sizes) < 2 {
		return nil
	}
	small := sizes[0]
	var rows []Row
	for _, n := range sizes[1:] {
		if n < 10*small {
			continue
		}
		for side, name := range []string{"primary", "subordinate"} {
			row := Row{Scenario: fmt.Sprintf("Memory of the sync daemon per session, %s, %s sessions synced", name, count(n)), Unit: "B", Values: map[string][]float64{}, Plot: "memory.svg",
				Notes: fmt.Sprintf("(RSS with %s − RSS with %s) / %d; keepalived+conntrackd: conntrackd alone", count(n), count(small), n-small)}
			for _, sys := range systemNames {
				var base []float64
				for _, fr := range r.failover[fmt.Sprintf("%s-%d", scSessions, small)][sys] {
					if fr.RSS[side] > 0 {
						base = append(base, float64(fr.RSS[side]))
					}
				}
				b := Summarize(base)
				if b.N == 0 {
					continue
				}
				for _, fr := range r.failover[fmt.Sprintf("%s-%d", scSessions, n)][sys] {
					if fr.RSS[side] > 0 && fr.Bulk >= 0 {
						row.Values[sys] = append(row.Values[sys], (float64(fr.RSS[side])-b.Median)/float64(n-small))
					}
				}
			}
			rows = append(rows, row)
		}
	}
	return rows
}

// note is what limits a system's figures, from its runs' daemons.
func (r *Results) note(sys string) string {
	if sys == sysHG && r.cfg.Pickup && r.hgNote != "" {
		return r.hgNote
	}
	if sys == sysHG && !r.cfg.Pickup {
		return "session pickup off (-pickup=false)"
	}
	return ""
}

func sessionsOf(key string) int {
	rest, ok := strings.CutPrefix(key, scSessions+"-")
	if !ok {
		return 0
	}
	n, _ := strconv.Atoi(rest)
	return n
}

func maxSizeRun(r *Results) int {
	m := 0
	for k := range r.failover {
		m = max(m, sessionsOf(k))
	}
	return m
}

// count writes 1000 as 1k and 1000000 as 1M.
func count(n int) string {
	switch {
	case n >= 1000000 && n%1000000 == 0:
		return fmt.Sprintf("%dM", n/1000000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return strconv.Itoa(n)
}

// printSummary prints the table to the console.
func (r *Results) printSummary(w io.Writer) {
	for _, row := range r.rows() {
		fmt.Fprintf(w, "\n%s\n    hagate:                %s\n    keepalived+conntrackd: %s\n    ratio: %s\n", row.Scenario, row.cell(sysHG), row.cell(sysKAD), row.ratio())
	}
}
