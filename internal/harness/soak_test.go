package harness

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSoak runs the chaos soak for a minute (HAGATE_SOAK_SEED repeats a
// schedule): random kills, restarts, heartbeat-link cuts and loss, link
// flaps and CPU pressure, checking that two members never hold the virtual
// IP together for longer than a heartbeat interval while the heartbeat
// links work, that no daemon crashes, and that none leaks goroutines.
func TestSoak(t *testing.T) {
	o, lo := SoakClusterOptions()
	c := setup(t, 3, o, lo)
	if err := c.StartAll(); err != nil {
		t.Fatal(err)
	}
	var seed uint64
	if v := os.Getenv("HAGATE_SOAK_SEED"); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("HAGATE_SOAK_SEED: %v", err)
		}
	}
	rep, err := Soak(context.Background(), c, SoakOptions{Duration: 60 * time.Second, Seed: seed, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	rep.Format(&b)
	t.Logf("\n%s", b.String())
	if total := func() (n int) {
		for _, v := range rep.Faults {
			n += v
		}
		return n
	}(); total < 10 {
		t.Errorf("only %d faults injected in a minute", total)
	}
	if err := rep.Err(); err != nil {
		t.Errorf("%v\n(repeat with HAGATE_SOAK_SEED=%d)", err, rep.Seed)
	}
}
