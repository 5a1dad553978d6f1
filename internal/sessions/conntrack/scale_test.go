package conntrack

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/hagate/hagate/internal/sessions/nstest"
)

// TestKernelScaleProbe installs 1M entries in steps and logs the rate of each
// step. Opt-in (HAGATE_SCALE=1): it takes seconds and raises nf_conntrack_max.
func TestKernelScaleProbe(t *testing.T) {
	if os.Getenv("HAGATE_SCALE") == "" {
		t.Skip("set HAGATE_SCALE=1")
	}
	nstest.RaiseConntrackMax(t, 2_000_000)
	_, k := openNS(t)
	ss := synthetic(1_000_000)
	cs := upserts(ss)
	for i := 0; i < len(cs); i += 100_000 {
		start := time.Now()
		if err := k.Apply(context.Background(), cs[i:i+100_000]); err != nil {
			t.Fatal(err)
		}
		t.Logf("entries %d..%d: %s", i, i+100_000, time.Since(start))
	}
}
