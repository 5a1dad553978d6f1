package conntrack

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hagate/hagate/internal/nstest"
)

// envInt reads an optional integer knob of the scale probes.
func envInt(t testing.TB, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return n
}

// TestKernelScaleProbe installs entries (1M by default) in steps of a tenth
// and logs the rate of each step: the kernel's insert cost as its table
// grows. Opt-in (HAGATE_SCALE=1): it takes seconds and raises
// nf_conntrack_max. Knobs: HAGATE_SCALE_N (entries), HAGATE_SCALE_WORKERS,
// HAGATE_SCALE_BATCH (bytes per sendmsg), HAGATE_SCALE_PREFILL (entries first
// created in another namespace: the kernel's hash table is shared by every
// namespace, so they lengthen the chains this namespace's inserts walk).
func TestKernelScaleProbe(t *testing.T) {
	if os.Getenv("HAGATE_SCALE") == "" {
		t.Skip("set HAGATE_SCALE=1")
	}
	n := envInt(t, "HAGATE_SCALE_N", 1_000_000)
	prefill := envInt(t, "HAGATE_SCALE_PREFILL", 0)
	opts := Options{Workers: envInt(t, "HAGATE_SCALE_WORKERS", 0), BatchBytes: envInt(t, "HAGATE_SCALE_BATCH", 0)}
	raiseConntrackMax(t, 2*(n+prefill))
	if hs, err := os.ReadFile("/sys/module/nf_conntrack/parameters/hashsize"); err == nil {
		t.Logf("host conntrack hashsize %s buckets (shared by all namespaces)", string(hs[:len(hs)-1]))
	}
	ss := synthetic(n)
	if prefill > 0 {
		ns := nstest.New(t)
		o := opts
		o.NetNSPath = ns.Path()
		pk, err := Open(o)
		if err != nil {
			t.Fatal(err)
		}
		defer pk.Close()
		pre := synthetic(prefill)
		start := time.Now()
		if err := pk.Apply(context.Background(), upserts(pre)); err != nil {
			t.Fatal(err)
		}
		t.Logf("prefilled %d entries in another namespace in %s", prefill, time.Since(start))
	}
	ns := nstest.New(t)
	opts.NetNSPath = ns.Path()
	k, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	cs := upserts(ss)
	step := max(n/10, 1)
	var total time.Duration
	u0, s0 := cpuTimes(t)
	for i := 0; i < len(cs); i += step {
		j := min(i+step, len(cs))
		start := time.Now()
		if err := k.Apply(context.Background(), cs[i:j]); err != nil {
			t.Fatal(err)
		}
		d := time.Since(start)
		total += d
		t.Logf("entries %d..%d: %s (%.0f/s)", i, j, d, float64(j-i)/d.Seconds())
	}
	u1, s1 := cpuTimes(t)
	t.Logf("total %d entries: %s (%.0f/s), process CPU user %s sys %s", n, total, float64(n)/total.Seconds(), u1-u0, s1-s0)
	if c, _, _, f := k.Counters(); c != uint64(n) || f != 0 {
		t.Errorf("created %d, failed %d; want %d, 0", c, f, n)
	}
}

// raiseConntrackMax raises the host's nf_conntrack_max to at least n (the
// only host-wide setting tests touch; namespaces follow it) and restores the
// old value at cleanup, unless someone changed it meanwhile.
func raiseConntrackMax(t testing.TB, n int) {
	t.Helper()
	nstest.RequireRoot(t)
	const p = "/proc/sys/net/netfilter/nf_conntrack_max"
	read := func() int {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("nf_conntrack_max: %v", err)
		}
		v, err := strconv.Atoi(string(b[:len(b)-1]))
		if err != nil {
			t.Fatalf("nf_conntrack_max %q: %v", b, err)
		}
		return v
	}
	cur := read()
	if cur >= n {
		return
	}
	if err := os.WriteFile(p, []byte(strconv.Itoa(n)), 0o644); err != nil {
		t.Fatalf("raise nf_conntrack_max to %d: %v", n, err)
	}
	t.Logf("raised host nf_conntrack_max %d -> %d", cur, n)
	t.Cleanup(func() {
		if read() == n {
			_ = os.WriteFile(p, []byte(strconv.Itoa(cur)), 0o644)
		}
	})
}

// cpuTimes returns the process's user and system CPU time so far: the
// kernel's insert work shows as system time, less disturbed than wall time
// by other load on the machine.
func cpuTimes(t testing.TB) (user, sys time.Duration) {
	t.Helper()
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		t.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}
