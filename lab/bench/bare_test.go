package bench

import (
	"math"
	"strings"
	"testing"
	"time"
)

// TestBareRow checks that each run's bulk is set against that run's own
// reference, and that runs without one are left out.
func TestBareRow(t *testing.T) {
	runs := map[string][]failoverResult{
		sysHG: {
			{Bulk: 460 * time.Millisecond, BareCreate: 400 * time.Millisecond},
			{Bulk: 900 * time.Millisecond, BareCreate: 450 * time.Millisecond},
			{Bulk: -1, BareCreate: 500 * time.Millisecond}, // the bulk failed
			{Bulk: 300 * time.Millisecond},                 // no reference
		},
		sysKAD: {{Bulk: 2 * time.Second}},
	}
	row, ok := bareRow(100000, runs)
	if !ok {
		t.Fatal("no row")
	}
	got := row.Values[sysHG]
	if len(got) != 2 || math.Abs(got[0]-1.15) > 1e-9 || math.Abs(got[1]-2) > 1e-9 {
		t.Errorf("ratios %v, want [1.15 2]", got)
	}
	if len(row.Values[sysKAD]) != 0 || row.ratio() != "n/a" {
		t.Errorf("keepalived+conntrackd has %v, ratio %s; want nothing", row.Values[sysKAD], row.ratio())
	}
	if want := "medians: bulk 680 ms, kernel's own create 450 ms"; row.Extra[sysHG] != want {
		t.Errorf("extra %q, want %q", row.Extra[sysHG], want)
	}
	if !strings.Contains(row.Scenario, "100k") {
		t.Errorf("scenario %q does not name the size", row.Scenario)
	}

	delete(runs, sysHG)
	if _, ok := bareRow(100000, runs); ok {
		t.Error("a row without any reference measured")
	}
}
