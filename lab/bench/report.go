package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"time"
)

// write writes benchmarks.md and the plots into docs.
func (r *Results) write(docs string) error {
	if err := os.MkdirAll(filepath.Join(docs, "bench"), 0o755); err != nil {
		return err
	}
	for name, ch := range r.charts() {
		if err := os.WriteFile(filepath.Join(docs, "bench", name), ch.SVG(), 0o644); err != nil {
			return err
		}
	}
	raw, err := json.Marshal(r.save())
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(docs, "bench", "results.json"), raw, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(docs, "benchmarks.md"), r.markdown(), 0o644)
}

// render writes the report again from a results.json that a run saved.
func render(path, docs string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var s savedResults
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return s.results().write(docs)
}

func (r *Results) markdown() []byte {
	var b bytes.Buffer
	b.WriteString("# Benchmarks: hagate and keepalived + conntrackd\n\n")
	b.WriteString("Both systems run on the same namespace lab in one run (`make bench`, as root): a client, a server and two gateways that forward, source-NAT the LAN to the WAN virtual IP and track connections strictly (`nf_conntrack_tcp_loose=0`, `be_liberal=0`, invalid packets dropped), so a session that the new primary does not know dies visibly. ")
	b.WriteString("keepalived runs VRRPv3 on the LAN and WAN links with unicast adverts, both virtual IPs in one sync group; conntrackd runs FTFW over the HA link with the external cache, and keepalived's notify script is conntrack-tools' `primary-backup.sh` (commit the external cache on MASTER, then flush, resync and send a bulk update). hagate runs with session pickup on.\n\n")
	b.WriteString("The client keeps one TCP connection to the server through the virtual IP and sends a numbered 16-byte record every 50 ms, which the server echoes; the **gap** is the longest time between two echoes. A session **survived** when that same connection carried every record, once and in order, with no reset. Each figure is the median of the runs, with the lowest and highest in brackets; the ratio is hagate's median over keepalived+conntrackd's (below 1: hagate is faster or smaller, except for rates, where above 1 is better).\n\n")
	fmt.Fprintf(&b, "Measured %s on %s. Command: `%s` (%s).\n\n", r.Started.UTC().Format("2006-01-02 15:04 UTC"), machine(), commandLine(r.args), r.Elapsed.Round(time.Second))
	if r.hgNote == "" && r.cfg.Pickup && r.hagateSurvived() == 0 {
		b.WriteString("**Not yet comparable: no hagate session survived a failover in this run**, although session pickup was turned on: the build measured here did not yet carry sessions over (its subordinates held the synced sessions in only a few runs), so hagate's gap cells read n/a and the takeover rows are the ones that compare. The suite needs no change once session pickup works.\n\n")
	}
	if r.hgNote != "" {
		fmt.Fprintf(&b, "**Not yet comparable: hagate ran with %s.** Its sessions cannot survive a failover under strict tracking until session pickup runs, so its gap, usable, bulk, churn and memory cells read n/a (or show the session lost) and only the takeover rows compare. The suite needs no change when it lands: it already turns `session_pickup.enabled` on.\n\n", r.hgNote)
	}
	b.WriteString("| scenario | hagate | keepalived+conntrackd | ratio | notes |\n|---|---|---|---|---|\n")
	for _, row := range r.rows() {
		sc := row.Scenario
		if row.Plot != "" {
			sc += fmt.Sprintf(" ([plot](bench/%s))", row.Plot)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", md(sc), md(row.cell(sysHG)), md(row.cell(sysKAD)), row.ratio(), md(row.Notes))
	}
	b.WriteString("\nThe raw measurements of every run are in [bench/results.json](bench/results.json); `cd lab && go run ./cmd/hagate-bench -render ../docs/bench/results.json` writes this page again from them.\n\n## Plots\n\n")
	names := make([]string, 0)
	for name := range r.charts() {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(&b, "![%s](bench/%s)\n\n", strings.TrimSuffix(name, ".svg"), name)
	}
	b.WriteString(methodNotes)
	return b.Bytes()
}

const methodNotes = `## How each figure is measured

- **Power loss**: the primary's HA link is cut in the lab's switch, then its LAN and WAN links, each cut in force before the next; then its daemons are killed with SIGKILL. The client's TCP retransmits at 200 ms, 600 ms, 1.4 s, 3 s, 6.2 s ... after the last echo, so a gap is at least the first retransmission after the takeover and the sessions are usable.
- **Link failover**: the switch port of the primary's WAN link goes down (the gateway sees carrier loss).
- **Many sessions**: the primary starts alone; once it holds the virtual IPs the sessions are made in its conntrack table through netlink (established, source-NATed TCP entries); then the subordinate starts late (**bulk sync**: until it holds every session; keepalived+conntrackd: in conntrackd's external cache, which reaches the kernel only when the notify script commits it at takeover), the daemons' resident memory is read, and the primary loses power with the echo session running. "Every session in the new primary's kernel table" is timed from the fault.
- **The kernel's own create rate**, the reference for hagate's bulk: in each hagate run of many sessions, once the primary holds its table and just before the subordinate starts, the same number of sessions (the same established, source-NATed TCP entries, with the liberal TCP flags a hagate subordinate sets) are created in a fresh namespace by session pickup's own ctnetlink layer with nothing of hagate around it: one batched call (many requests per sendmsg, one acknowledgement per batch, the next batch encoded while the kernel installs the current one) over one socket, as many as the subordinate installs over. It is timed from the first send to the last acknowledgement, the requests' sessions made beforehand; then the table is flushed and the namespace removed. The conntrack hash table is host-wide (the benchmark raises its bucket count to twice the largest table for the run, and restores it afterwards), so the bare creates and the bulk's walk the same chains, the primary's entries included. The row gives the median of each run's bulk over that run's own reference.
- **Churn**: sessions are created on the primary at a steady rate and each destroyed one second later, for a few seconds per rate; a rate passes when the generator keeps up and, within a second of the churn ending, the subordinate holds exactly the primary's sessions (hagate: in its kernel table, or with -install-delay in its table, kernel or memory, as hagate sessions counts them; conntrackd: in its external cache). CPU time is that of the sync daemons on both gateways (hagate; conntrackd) over the whole step.
- **CPU stress**: both systems tuned as for the power loss (hagate 50 ms x 3, with session pickup; keepalived VRRPv3 with advert_int 0.05 s, with conntrackd) (with ` + "`-stress-fast`" + `, as for the datagrams: hagate 10 ms x 3, keepalived advert_int 0.01 s), the cluster settled with an empty table, and nothing fails; a CPU hog (one busy thread per core plus one, at normal priority, started by the benchmark inside the lab) runs for the whole run, 10 minutes unless ` + "`-stress-for`" + ` says otherwise. Every time a gateway adds the LAN virtual IP (seen with ` + "`ip monitor address`" + `, so a flap however short counts) is a false failover: the primary never failed. Beside the count: how often both gateways held the address at once, and the hog's share of the machine's CPU time. Other load on the machine adds to the hog's.
- **Datagrams** (-scenarios datagrams): both systems at FGCP's 10 ms heartbeat mode (hagate 10 ms x 3 with connectionless session pickup; keepalived VRRPv3 advert_int 0.01 s, conntrackd syncing UDP too); the client sends one UDP datagram every 2 ms through the virtual IP (source-NATed) and the server echoes it; the primary loses power as above. Datagrams lost are counted (x 2 ms); the CPU time of every daemon of the stack on both gateways is read over 10 s idle before the fault; additions of the LAN virtual IP between the settled start and the fault are false failovers (seen with ip monitor address).
- **Members** (-members 3 or 4, hagate alone): the lab has that many gateways; in the sessions scenario every subordinate starts late, together, and the bulk ends when the last of them holds every session.
- **Memory**: resident set size (VmRSS) of the sync daemon (hagate; conntrackd) after the bulk sync, less the same with the smallest table, per session.
`

func md(s string) string { return strings.ReplaceAll(s, "|", "\\|") }

func commandLine(args []string) string {
	if len(args) == 0 {
		return "make bench"
	}
	return "cd lab && go run ./cmd/hagate-bench " + strings.Join(args, " ")
}

// machine describes the host: CPUs, memory, kernel, Go and the versions of
// keepalived and conntrackd.
func machine() string {
	first := func(name string, args ...string) string {
		out, _ := exec.Command(name, args...).CombinedOutput()
		line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		return strings.TrimSpace(line)
	}
	mem := "?"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		for _, l := range strings.Split(string(b), "\n") {
			if _, err := fmt.Sscanf(l, "MemTotal: %d kB", &kb); err == nil {
				mem = fmt.Sprintf("%.0f GiB", float64(kb)/(1<<20))
				break
			}
		}
	}
	cpu := "?"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	return fmt.Sprintf("%d CPUs (%s), %s memory, Linux %s, %s, keepalived %s, conntrackd %s",
		runtime.NumCPU(), cpu, mem, first("uname", "-r"), runtime.Version(),
		versionRE.FindString(first("keepalived", "--version")), versionRE.FindString(first("conntrackd", "-v")))
}

var versionRE = regexp.MustCompile(`v[0-9]+(\.[0-9]+)+`)

// hagateSurvived counts hagate's failover runs whose session survived.
func (r *Results) hagateSurvived() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, bySys := range r.failover {
		for _, fr := range bySys[sysHG] {
			if fr.Survived {
				n++
			}
		}
	}
	return n
}

// charts builds every plot the results allow, by file name.
func (r *Results) charts() map[string]Chart {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]Chart{}
	for _, key := range []string{scPowerDefaults, scPowerTuned, scLink, scDatagrams} {
		if runs := r.failover[key]; runs != nil {
			out[key+".svg"] = timelineChart(scenarioTitles[key], runs)
		}
	}
	if n := maxSizeRun(r); n > 0 {
		key := fmt.Sprintf("%s-%d", scSessions, n)
		out["sessions-live.svg"] = timelineChart(fmt.Sprintf("Power loss with %s other sessions (tuned): the live session", count(n)), r.failover[key])
		out["sessions.svg"] = r.sessionsChart()
		out["bulk.svg"] = bulkChart(n, r.failover[key])
		if r.cfg.Sizes != nil && len(r.cfg.Sizes) > 1 {
			out["memory.svg"] = r.memoryChart()
		}
	}
	if len(r.churn) > 0 {
		out["churn.svg"] = r.churnChart()
	}
	return out
}

var sysColor = map[string]string{sysHG: colorHagate, sysHGHeld: colorHagateHeld, sysKAD: colorKAD}

// medianRun picks the run whose gap is the median, to show as typical.
func medianRun(runs []failoverResult) (failoverResult, bool) {
	var ok []failoverResult
	for _, fr := range runs {
		if len(fr.Trace.Samples) > 0 && fr.FaultNS != 0 {
			ok = append(ok, fr)
		}
	}
	if len(ok) == 0 {
		return failoverResult{}, false
	}
	sort.Slice(ok, func(i, j int) bool { return ok[i].Gap.Length < ok[j].Gap.Length })
	return ok[(len(ok)-1)/2], true
}

// timelineChart: the echo time of every record against when it was sent,
// relative to the fault, for the median run of each system.
func timelineChart(title string, runs map[string][]failoverResult) Chart {
	ch := Chart{Title: title, XLabel: "time since the fault (s), by when the record was sent", YLabel: "echo time (ms, log scale)",
		YLog: true, YMin: 0.01, YMax: 100000, Marks: []Mark{{X: 0, Label: "fault"}}}
	for _, sys := range systemNames {
		fr, ok := medianRun(runs[sys])
		if !ok {
			continue
		}
		s := Series{Name: fmt.Sprintf("%s: gap %s, survived %v (median run)", sys, fr.Gap.Length.Round(time.Millisecond), fr.Survived), Color: sysColor[sys], Line: true}
		for _, smp := range fr.Trace.Samples {
			x := float64(smp.SentNS-fr.FaultNS) / 1e9
			if smp.EchoNS == 0 {
				s.Top = append(s.Top, x)
				continue
			}
			s.Points = append(s.Points, Point{x, math.Max(0.01, float64(smp.EchoNS-smp.SentNS)/1e6)})
		}
		ch.Series = append(ch.Series, s)
		if fr.Takeover >= 0 {
			ch.Marks = append(ch.Marks, Mark{X: fr.Takeover.Seconds(), Label: sys + " takes over"})
		}
	}
	ch.Notes = []string{"Crosses along the top: records never echoed (the connection was lost)."}
	return ch
}

func (r *Results) sessionsChart() Chart {
	ch := Chart{Title: "Power loss with many sessions (tuned)", XLabel: "sessions in the table (log scale)", YLabel: "seconds after the fault", XLog: true}
	for _, sys := range systemNames {
		gap := Series{Name: sys + ": live session's gap (median)", Color: sysColor[sys], Line: true, Dots: true}
		use := Series{Name: sys + ": all sessions in the kernel (median)", Color: sysColor[sys] + "88", Line: true, Dots: true}
		for _, n := range r.cfg.Sizes {
			runs := r.failover[fmt.Sprintf("%s-%d", scSessions, n)][sys]
			var g, u []float64
			for _, fr := range runs {
				if fr.Trace.StartNS != 0 {
					g = append(g, fr.Gap.Length.Seconds())
				}
				u = append(u, seconds(fr.Usable))
			}
			if s := Summarize(g); s.N > 0 {
				gap.Points = append(gap.Points, Point{float64(n), s.Median})
			}
			if s := Summarize(u); s.N > 0 {
				use.Points = append(use.Points, Point{float64(n), s.Median})
			}
		}
		ch.Series = append(ch.Series, gap, use)
	}
	return ch
}

func bulkChart(n int, runs map[string][]failoverResult) Chart {
	ch := Chart{Title: fmt.Sprintf("Bulk sync of %s sessions to a late subordinate", count(n)), XLabel: "seconds since the subordinate's daemons started", YLabel: "sessions held by the subordinate"}
	for _, sys := range systemNames {
		var best failoverResult
		for _, fr := range runs[sys] {
			if len(fr.BulkPts) > len(best.BulkPts) {
				best = fr
			}
		}
		ch.Series = append(ch.Series, Series{Name: sys, Color: sysColor[sys], Points: best.BulkPts, Line: true})
		if best.BareCreate > 0 {
			ch.Marks = append(ch.Marks, Mark{X: best.BareCreate.Seconds(), Label: "the kernel's own create (same run)"})
		}
	}
	ch.Notes = []string{"hagate: sessions in the subordinate's kernel table; conntrackd: in its external cache (committed to the kernel at takeover)."}
	return ch
}

func (r *Results) memoryChart() Chart {
	ch := Chart{Title: "Resident memory of the sync daemon after the bulk sync", XLabel: "sessions synced (log scale)", YLabel: "RSS (MB)", XLog: true}
	for _, sys := range systemNames {
		for side, name := range []string{"primary", "subordinate"} {
			s := Series{Name: sys + " " + name, Color: sysColor[sys], Line: true, Dots: true}
			if side == 1 {
				s.Color += "88"
			}
			for _, n := range r.cfg.Sizes {
				var v []float64
				for _, fr := range r.failover[fmt.Sprintf("%s-%d", scSessions, n)][sys] {
					if fr.RSS[side] > 0 {
						v = append(v, float64(fr.RSS[side])/1e6)
					}
				}
				if m := Summarize(v); m.N > 0 {
					s.Points = append(s.Points, Point{float64(n), m.Median})
				}
			}
			ch.Series = append(ch.Series, s)
		}
	}
	return ch
}

func (r *Results) churnChart() Chart {
	ch := Chart{Title: "Churn: how far the subordinate lags after a few seconds at each rate", XLabel: "sessions created (and destroyed) per second, offered", YLabel: "lag (s); 5 = never caught up", XLog: true,
		Marks: nil}
	for _, sys := range []string{sysHG, sysHGHeld, sysKAD} {
		if len(r.churn[sys]) == 0 {
			continue
		}
		s := Series{Name: sys, Color: sysColor[sys], Dots: true}
		for _, cr := range r.churn[sys] {
			for _, st := range cr.Steps {
				lag := churnLagWait.Seconds()
				if st.Lag >= 0 {
					lag = st.Lag.Seconds()
				}
				s.Points = append(s.Points, Point{float64(st.Rate), lag})
			}
		}
		ch.Series = append(ch.Series, s)
	}
	ch.Notes = []string{"A rate passes when the lag is under 1 s, nothing is lost and the generator kept up."}
	return ch
}
