package harness

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// TestSoak runs the chaos soak for a minute (HAGATE_SOAK_SEED repeats a
// schedule): random kills, restarts, heartbeat-link cuts and loss, link
// flaps and CPU pressure, checking that two members never hold the virtual
// IP together for longer than a heartbeat interval while the heartbeat
// links work, that every session survives every failover (session pickup
// is on), that no daemon crashes, and that none leaks goroutines.
func TestSoak(t *testing.T) {
	runSoak(t, "", SoakOptions{Duration: 60 * time.Second, Sessions: 4, RequireSessions: true}, 10)
}

// TestSoakQuorum runs the soak with the quorum rule on and members cut off
// from every heartbeat link now and then: the member cut off must never
// hold the addresses together with the primary the others elect.
func TestSoakQuorum(t *testing.T) {
	runSoak(t, QuorumExtra, SoakOptions{Duration: 30 * time.Second, Sessions: 2, Quorum: true, RequireSessions: true,
		// No loss faults: a heartbeat fault in force holds isolations back.
		Faults: []FaultKind{FaultHAIsolate, FaultKillPrimary, FaultMonitorFlap}}, 4)
}

func runSoak(t *testing.T, extra string, so SoakOptions, minFaults int) {
	o, lo := SoakClusterOptions()
	o.Extra += "session_pickup:\n  enabled: true\n" + extra
	c := setup(t, 3, o, lo)
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	if v := os.Getenv("HAGATE_SOAK_SEED"); v != "" {
		var err error
		if so.Seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("HAGATE_SOAK_SEED: %v", err)
		}
	}
	so.Logf = t.Logf
	rep, err := Soak(context.Background(), c, so)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	rep.Format(&b)
	t.Logf("\n%s", b.String())
	total := 0
	for _, v := range rep.Faults {
		total += v
	}
	if total < minFaults {
		t.Errorf("only %d faults injected in %s", total, so.Duration)
	}
	if so.Quorum && rep.Faults[FaultHAIsolate] == 0 {
		t.Errorf("no member was cut off: the quorum rule was not put to the test")
	}
	if err := rep.Err(); err != nil {
		t.Errorf("%v\n(repeat with HAGATE_SOAK_SEED=%d)", err, rep.Seed)
	}
}

func TestParseSamples(t *testing.T) {
	text := `# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 18
hagate_heartbeats_dropped_total{link="ha",reason="key"} 20
hagate_heartbeats_dropped_total{link="ha2",reason="key"} 3
hagate_heartbeats_dropped_total{link="ha",reason="auth"} 1.5e+01
hagate_odd{label="a } b"} 7 1700000000000
not a sample
process_resident_memory_bytes 1.2345e+07
`
	s, err := ParseSamples(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		got  float64
		want float64
	}{
		{"plain", s.Sum("go_goroutines"), 18},
		{"every series", s.Sum("hagate_heartbeats_dropped_total"), 38},
		{"by label", s.Sum("hagate_heartbeats_dropped_total", `reason="key"`), 23},
		{"two labels", s.Sum("hagate_heartbeats_dropped_total", `link="ha"`, `reason="key"`), 20},
		{"brace in a label value, timestamp", s.Sum("hagate_odd"), 7},
		{"exponent", s.Sum("process_resident_memory_bytes"), 12345000},
		{"absent", s.Sum("nothing"), 0},
		{"per reason: key", s.ByLabel("hagate_heartbeats_dropped_total", "reason")["key"], 23},
		{"per reason: auth", s.ByLabel("hagate_heartbeats_dropped_total", "reason")["auth"], 15},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}

func FuzzParseSamples(f *testing.F) {
	f.Add([]byte("go_goroutines 18\n"))
	f.Add([]byte(`a{b="c",d="}"} 1 2` + "\n# c\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSamples(strings.NewReader(string(b)))
		if err != nil {
			return
		}
		for k := range s {
			name, _, _ := strings.Cut(k, "{")
			s.Sum(name, `x="y"`)
			s.ByLabel(name, "x")
		}
	})
}

func TestCPUTimeOfSelf(t *testing.T) {
	d, err := CPUTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if d < 0 || d > time.Hour {
		t.Fatalf("CPU time of this test process: %s", d)
	}
}

// TestSoakWindows feeds the soak's sampler scripted holders on a fake
// clock and checks the windows it measures and the invariant it applies.
func TestSoakWindows(t *testing.T) {
	type step struct {
		holders []string
		polls   int
		haFault bool // a heartbeat link fault in force
	}
	one := []string{"gw1"}
	two := []string{"gw1", "gw2"}
	other := []string{"gw2"}
	tests := []struct {
		name       string
		script     []step
		violations int
		longest    time.Duration // longest healthy dual window
		longestAny time.Duration
		noHolder   int
		changes    int
	}{
		{"steady", []step{{one, 50, false}}, 0, 0, 0, 0, 0},
		{"handover overlap of two polls", []step{{one, 10, false}, {two, 2, false}, {other, 10, false}}, 0, 20 * time.Millisecond, 20 * time.Millisecond, 0, 1},
		{"dual for 200ms with the links healthy", []step{{one, 10, false}, {two, 20, false}, {one, 10, false}}, 1, 200 * time.Millisecond, 200 * time.Millisecond, 0, 0},
		{"dual for 200ms during a link fault is excused", []step{{one, 10, true}, {two, 20, true}, {one, 10, true}}, 0, 0, 200 * time.Millisecond, 0, 0},
		{"failover through nobody", []step{{one, 10, false}, {nil, 30, false}, {other, 10, false}}, 0, 0, 0, 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := &soak{c: &Cluster{opts: Options{Interval: 100 * time.Millisecond}}, o: SoakOptions{Poll: 10 * time.Millisecond},
					haFaults: map[string]string{}, start: time.Now()}
				var script [][]string
				var faults []bool
				for _, st := range tt.script {
					for range st.polls {
						script = append(script, st.holders)
						faults = append(faults, st.haFault)
					}
				}
				i := 0
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() {
					defer close(done)
					s.sample(ctx, func() ([]string, error) {
						k := min(i, len(script)-1)
						if faults[k] {
							s.setHAFault("gw1/ha", "ha-loss")
						} else {
							s.mu.Lock()
							delete(s.haFaults, "gw1/ha")
							s.mu.Unlock()
						}
						i++
						if i == len(script) {
							cancel()
						}
						return script[k], nil
					})
				}()
				<-done
				r := s.rep
				if len(r.Violations) != tt.violations || r.LongestDual != tt.longest || r.LongestDualAny != tt.longestAny ||
					r.NoHolder != tt.noHolder || r.PrimaryChange != tt.changes {
					t.Errorf("violations %q, longest dual %s (any %s), no-holder windows %d, changes %d; want %d violations, %s (%s), %d, %d",
						r.Violations, r.LongestDual, r.LongestDualAny, r.NoHolder, r.PrimaryChange,
						tt.violations, tt.longest, tt.longestAny, tt.noHolder, tt.changes)
				}
			})
		})
	}
}
