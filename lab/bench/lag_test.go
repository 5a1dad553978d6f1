package bench

import (
	"math"
	"testing"
	"time"
)

func TestLagHistogramQuantiles(t *testing.T) {
	before := parseLagHistogram(map[string]float64{
		lagMetric + `{le="0.001"}`: 10, lagMetric + `{le="0.005"}`: 10, lagMetric + `{le="0.02"}`: 10, lagMetric + `{le="+Inf"}`: 10,
		"hagate_sync_lag_seconds_count": 10,
	})
	after := parseLagHistogram(map[string]float64{
		lagMetric + `{le="0.001"}`: 10, lagMetric + `{le="0.005"}`: 108, lagMetric + `{le="0.02"}`: 110, lagMetric + `{le="+Inf"}`: 110,
	})
	if got := after.quantile(before, 0.5); got != 5*time.Millisecond {
		t.Errorf("p50 %v, want 5ms (the step's batches, not the earlier ones under 1 ms)", got)
	}
	if got := after.quantile(before, 0.99); got != 20*time.Millisecond {
		t.Errorf("p99 %v, want 20ms", got)
	}
	if got := before.quantile(before, 0.5); got != -1 {
		t.Errorf("nothing counted: %v", got)
	}
	if !math.IsInf(after.le[len(after.le)-1], 1) {
		t.Errorf("bounds %v", after.le)
	}
}
