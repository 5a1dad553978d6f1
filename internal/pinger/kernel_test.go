package pinger

import (
	"context"
	"log/slog"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hagate/hagate/internal/nstest"
)

// Tests against the kernel: two named namespaces joined by a veth pair, the
// pinger in "src", its targets in "dst", where an nftables rule drops echo
// requests to make the target fail.

var (
	kernelDst4 = netip.MustParseAddr("203.0.113.2")
	kernelDst6 = netip.MustParseAddr("2001:db8:113::2")
)

type kernelLab struct {
	src, dst *nstest.NS
}

func newKernelLab(t *testing.T) *kernelLab {
	t.Helper()
	l := &kernelLab{src: nstest.New(t), dst: nstest.New(t)}
	mustRun(t, "ip", "-n", l.src.Name, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", l.dst.Name)
	for _, c := range [][]string{
		{"-n", l.src.Name, "addr", "add", "203.0.113.1/24", "dev", "va"},
		{"-n", l.src.Name, "addr", "add", "2001:db8:113::1/64", "dev", "va", "nodad"},
		{"-n", l.dst.Name, "addr", "add", "203.0.113.2/24", "dev", "vb"},
		{"-n", l.dst.Name, "addr", "add", "2001:db8:113::2/64", "dev", "vb", "nodad"},
		{"-n", l.src.Name, "link", "set", "va", "up"},
		{"-n", l.dst.Name, "link", "set", "vb", "up"},
	} {
		mustRun(t, "ip", c...)
	}
	l.nft(t, "add table inet t")
	l.nft(t, "add chain inet t in { type filter hook input priority 0; }")
	return l
}

func mustRun(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

func (l *kernelLab) nft(t *testing.T, rule string) {
	t.Helper()
	l.dst.Run(t, "nft", rule)
}

// drop makes the targets stop (or resume) answering.
func (l *kernelLab) drop(t *testing.T, on bool) {
	t.Helper()
	if on {
		l.nft(t, "add rule inet t in icmp type echo-request drop")
		l.nft(t, "add rule inet t in icmpv6 type echo-request drop")
	} else {
		l.nft(t, "flush chain inet t in")
	}
}

// waitCount reads updates until the count is want, and returns when it
// arrived; it fails the test after timeout.
func waitCount(t *testing.T, p *Pinger, want int, timeout time.Duration, what string) time.Time {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case n := <-p.Updates():
			if n == want {
				return time.Now()
			}
		case <-deadline:
			t.Fatalf("%s: no update to %d targets up within %v; status %+v", what, want, timeout, p.Status())
		}
	}
}

func drain(p *Pinger) {
	select {
	case <-p.Updates():
	default:
	}
}

// TestKernel runs the pinger against targets in another namespace, with
// each kind of socket: raw (the default ping_group_range refuses datagram
// sockets even to root, so the pinger falls back) and datagram (allowed).
func TestKernel(t *testing.T) {
	for _, tc := range []struct {
		name       string
		pingGroup  bool
		wantSocket string
	}{
		{"raw fallback", false, "raw"},
		{"datagram", true, "icmp-dgram"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := newKernelLab(t)
			if tc.pingGroup {
				l.src.Run(t, "sysctl", "-q", "-w", "net.ipv4.ping_group_range=0 2147483647")
			}
			testKernel(t, l, tc.wantSocket)
		})
	}
}

func testKernel(t *testing.T, l *kernelLab, wantSocket string) {
	const (
		interval = 50 * time.Millisecond
		failures = 3
		flip     = 500 * time.Millisecond
	)
	p, err := New([]Target{
		{Interface: "va", Addr: kernelDst4, Interval: interval, Failures: failures},
		{Interface: "va", Addr: kernelDst6, Interval: interval, Failures: failures},
		{Interface: "missing0", Addr: kernelDst4, Interval: interval, Failures: failures},
	}, flip, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	dial := p.dial
	p.dial = func(tg Target) (c conn, err error) {
		if e := l.src.Do(func() error { c, err = dial(tg); return nil }); e != nil {
			return nil, e
		}
		return c, err
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()

	waitCount(t, p, 2, 5*time.Second, "answering targets")
	st := p.Status()
	for i, s := range st[:2] {
		if s.Socket != wantSocket || s.State != StateUp || s.LastRTT <= 0 {
			t.Errorf("target %d: socket %q, state %v, last RTT %v; want %s, up, > 0", i, s.Socket, s.State, s.LastRTT, wantSocket)
		}
	}
	// The third target's socket fails on its own schedule: under load it
	// may not have tried yet when the other two answer.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && !strings.Contains(p.Status()[2].LastError, "no such device") {
		time.Sleep(20 * time.Millisecond)
	}
	if s := p.Status()[2]; s.State == StateUp || !strings.Contains(s.LastError, "no such device") {
		t.Errorf("target on a missing interface: state %v, last error %q; want not up, no such device", s.State, s.LastError)
	}

	// Dropped: down after `failures` probes.
	l.drop(t, true)
	waitCount(t, p, 0, 5*time.Second, "dropped")
	for i, s := range p.Status()[:2] {
		if s.State != StateDown || s.ConsecutiveFailures < failures || s.Flips != 1 {
			t.Errorf("target %d dropped: state %v, %d failures, %d flips; want down, >= %d, 1", i, s.State, s.ConsecutiveFailures, s.Flips, failures)
		}
	}

	// Answering again: up only after the flip timeout.
	drain(p)
	off := time.Now()
	l.drop(t, false)
	time.Sleep(flip / 2)
	if n := p.Up(); n != 0 {
		t.Errorf("%d targets up %v after they answered again, before the flip timeout", n, time.Since(off))
	}
	upAt := waitCount(t, p, 2, 5*time.Second, "answering again")
	if d := upAt.Sub(off); d < flip {
		t.Errorf("up %v after the targets answered again, want >= %v", d, flip)
	}

	// Flapping: rule toggled every 100 ms for 1.5 s; a target never answers
	// for the flip timeout, so it stays down throughout.
	l.drop(t, true)
	waitCount(t, p, 0, 5*time.Second, "dropped before flapping")
	drain(p)
	var longest time.Duration // longest stretch without the rule
	end := time.Now().Add(1500 * time.Millisecond)
	for on := false; time.Now().Before(end); on = !on {
		start := time.Now()
		l.drop(t, on)
		time.Sleep(100 * time.Millisecond)
		if !on {
			longest = max(longest, time.Since(start))
		}
		if n := p.Up(); n != 0 && longest < flip {
			t.Fatalf("%d targets up while flapping (longest answering stretch %v)", n, longest)
		}
	}
	l.drop(t, false) // flush even if the loop ended with the rule in
	select {
	case n := <-p.Updates():
		if longest < flip {
			t.Errorf("update to %d while flapping (longest answering stretch %v)", n, longest)
		}
	default:
	}
	waitCount(t, p, 2, 5*time.Second, "answering after flapping")
	for i, s := range p.Status()[:2] {
		if s.Flips != 2 {
			t.Errorf("target %d: %d flips, want 2", i, s.Flips)
		}
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after ctx ended")
	}
}
