package bench

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestVIPLine(t *testing.T) {
	tests := []struct {
		line         string
		about, added bool
	}{
		{"3: lan    inet 192.0.2.1/24 scope global secondary lan\\       valid_lft forever preferred_lft forever", true, true},
		{"Deleted 3: lan    inet 192.0.2.1/24 scope global secondary lan\\       valid_lft forever preferred_lft forever", true, false},
		{"3: lan    inet 192.0.2.1/32 scope global lan", true, true},
		{"3: lan    inet 192.0.2.11/24 scope global lan", false, false},
		{"3: lan    inet6 fe80::1/64 scope link", false, false},
		{"", false, false},
		{"inet", false, false},
	}
	for _, tt := range tests {
		about, added := vipLine(tt.line)
		if about != tt.about || added != tt.added {
			t.Errorf("vipLine(%q) = %v, %v; want %v, %v", tt.line, about, added, tt.about, tt.added)
		}
	}
}

// The watcher counts each time a gateway takes the address, and the
// moments both hold it, from the lines of ip monitor split anyhow.
func TestVIPWatchCounts(t *testing.T) {
	vw := &vipWatch{held: map[string]bool{"gw1": true, "gw2": false}}
	w1 := &lineWriter{line: func(s string) { vw.line("gw1", s) }}
	w2 := &lineWriter{line: func(s string) { vw.line("gw2", s) }}
	add := "3: lan    inet 192.0.2.1/24 scope global lan\n"
	del := "Deleted " + add
	w2.Write([]byte(add[:10]))
	w2.Write([]byte(add[10:] + add)) // and a repeat: no change
	w1.Write([]byte(del))
	w2.Write([]byte(del))
	w1.Write([]byte(add))
	moves, dual := vw.stop()
	var got []string
	for _, m := range moves {
		got = append(got, m.GW)
	}
	if d := cmp.Diff([]string{"gw2", "gw1"}, got); d != "" {
		t.Errorf("moves (-want +got):\n%s", d)
	}
	if dual != 1 {
		t.Errorf("both held %d times, want 1", dual)
	}
}

func TestStressRow(t *testing.T) {
	r := newResults(Config{}, nil)
	r.addStress(sysHG, stressResult{Duration: 10 * time.Minute, Elapsed: 10 * time.Minute, CPUs: 2, Workers: 3, HogCPU: 600})
	r.addStress(sysKAD, stressResult{Duration: 10 * time.Minute, Elapsed: 10 * time.Minute, CPUs: 2, Workers: 3, HogCPU: 900,
		Moves: []vipEvent{{GW: "gw2", Added: true}, {GW: "gw1", Added: true}}, Dual: 1})
	r.addStress(sysKAD, stressResult{Duration: 10 * time.Minute, Elapsed: time.Minute, Err: "interrupted"})
	rows := r.rows()
	if len(rows) != 1 {
		t.Fatalf("%d rows, want 1", len(rows))
	}
	row := rows[0]
	if !strings.HasPrefix(row.Scenario, "False failovers in 10 min under CPU stress") {
		t.Errorf("scenario %q", row.Scenario)
	}
	if got, want := row.cell(sysHG), "0 (1 run); both gateways held the VIP at once 0 times; the hog got 50% of the machine's CPU time"; got != want {
		t.Errorf("hagate cell %q, want %q", got, want)
	}
	if got, want := row.cell(sysKAD), "2 (1 run); both gateways held the VIP at once 1 times; the hog got 75% of the machine's CPU time; 1 runs cut short"; got != want {
		t.Errorf("keepalived cell %q, want %q", got, want)
	}
}
