package bench

import (
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/hagate/hagate/lab/echo"
)

func TestSummarize(t *testing.T) {
	tests := []struct {
		name string
		in   []float64
		want Summary
	}{
		{"empty", nil, Summary{}},
		{"only NaN", []float64{math.NaN()}, Summary{}},
		{"one", []float64{2}, Summary{N: 1, Median: 2, Min: 2, Max: 2, P25: 2, P75: 2}},
		{"odd unsorted", []float64{5, 1, 3}, Summary{N: 3, Median: 3, Min: 1, Max: 5, P25: 2, P75: 4}},
		{"even", []float64{4, 1, 3, 2}, Summary{N: 4, Median: 2.5, Min: 1, Max: 4, P25: 1.75, P75: 3.25}},
		{"NaN left out", []float64{1, math.NaN(), 3}, Summary{N: 2, Median: 2, Min: 1, Max: 3, P25: 1.5, P75: 2.5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Summarize(tt.in)
			if d := cmp.Diff(tt.want, got, cmpopts.EquateApprox(0, 1e-12)); d != "" {
				t.Errorf("Summarize(%v) (-want +got):\n%s", tt.in, d)
			}
		})
	}
}

func TestSummarizeDoesNotReorderInput(t *testing.T) {
	in := []float64{3, 1, 2}
	Summarize(in)
	if d := cmp.Diff([]float64{3, 1, 2}, in); d != "" {
		t.Errorf("input changed (-want +got):\n%s", d)
	}
}

func TestRatio(t *testing.T) {
	a, b := Summarize([]float64{1, 2, 3}), Summarize([]float64{4})
	if got := Ratio(a, b); got != 0.5 {
		t.Errorf("Ratio = %v, want 0.5", got)
	}
	for _, tc := range [][2]Summary{{{}, b}, {a, {}}, {a, Summarize([]float64{0})}} {
		if got := Ratio(tc[0], tc[1]); !math.IsNaN(got) {
			t.Errorf("Ratio(%+v, %+v) = %v, want NaN", tc[0], tc[1], got)
		}
	}
}

func TestFormat(t *testing.T) {
	tests := []struct {
		s    Summary
		unit string
		want string
	}{
		{Summary{}, "s", "n/a"},
		{Summarize([]float64{0.25}), "s", "250 ms (1 run)"},
		{Summarize([]float64{0.2, 0.25, 3.4}), "s", "250 ms (200 ms–3.40 s, 3 runs)"},
		{Summarize([]float64{8000, 16000}), "sessions/s", "12000 sessions/s (8000 sessions/s–16000 sessions/s, 2 runs)"},
	}
	for _, tt := range tests {
		if got := tt.s.Format(tt.unit); got != tt.want {
			t.Errorf("Format(%+v, %q) = %q, want %q", tt.s, tt.unit, got, tt.want)
		}
	}
}

// The largest gap between echoes is measured by the echo client (package
// echo, TestTrackerVerdicts); gapOf only carries it over.
func TestGapOf(t *testing.T) {
	at := time.Unix(0, 1e6)
	r := echo.Report{MaxGap: 450 * time.Millisecond, GapAt: at, GapOpen: true}
	if d := cmp.Diff(Gap{Length: 450 * time.Millisecond, AtNS: 1e6, Open: true}, gapOf(r)); d != "" {
		t.Errorf("gapOf (-want +got):\n%s", d)
	}
	if g := gapOf(echo.Report{}); g != (Gap{}) {
		t.Errorf("gapOf(nothing) = %+v", g)
	}
}

func TestParseStatCPU(t *testing.T) {
	line := "4242 (conn (track) d) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 150 0 0 20 0 1 0 100 1000 100 18446744073709551615"
	got, err := parseStatCPU(line)
	if err != nil || got != 4 {
		t.Errorf("parseStatCPU = %v, %v; want 4 (400 ticks)", got, err)
	}
	if _, err := parseStatCPU("4242 (x) S 1"); err == nil {
		t.Error("short line: no error")
	}
}

func TestParseCtdStats(t *testing.T) {
	out := "cache internal:\ncurrent active connections:\t       12\nconnections created:\t\t 40003\tfailed:\t 0\n\ncache external:\ncurrent active connections:\t          7\n"
	in, ext, err := parseCtdStats(out)
	if err != nil || in != 12 || ext != 7 {
		t.Errorf("parseCtdStats = %d, %d, %v; want 12, 7, nil", in, ext, err)
	}
	if _, _, err := parseCtdStats("cache internal:\ncurrent active connections: 1\n"); err == nil {
		t.Error("one cache only: no error")
	}
}
