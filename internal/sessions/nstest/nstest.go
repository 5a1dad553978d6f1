// Package nstest gives session-pickup tests throwaway network namespaces:
// created with `ip netns add` under a unique name, removed when the test ends
// (also on failure), with helpers to run commands and Go code inside them.
// Tests that use it are skipped when not run as root.
package nstest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// NS is one network namespace owned by a test.
type NS struct {
	Name string
}

// RequireRoot skips t unless it runs as root with ip(8) available.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip(8)")
	}
}

// New creates a namespace with loopback up, removed at cleanup.
func New(t testing.TB) *NS {
	t.Helper()
	RequireRoot(t)
	var r [4]byte
	_, _ = rand.Read(r[:])
	ns := &NS{Name: "hgsess-" + hex.EncodeToString(r[:])}
	if out, err := exec.Command("ip", "netns", "add", ns.Name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns.Name).Run() })
	ns.Run(t, "ip", "link", "set", "lo", "up")
	return ns
}

// Path is the namespace's file, for setns.
func (ns *NS) Path() string { return "/var/run/netns/" + ns.Name }

// Run runs a command inside the namespace and fails t if it fails.
func (ns *NS) Run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns.Name}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("in %s: %s: %v: %s", ns.Name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Do runs fn on an OS thread switched into the namespace: sockets fn opens
// belong to the namespace.
func (ns *NS) Do(fn func() error) error {
	f, err := os.Open(ns.Path())
	if err != nil {
		return err
	}
	defer f.Close()
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("setns %s: %w", ns.Name, err)
	}
	ferr := fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("setns back: %w", err) // thread stays locked and dies with the goroutine
	}
	runtime.UnlockOSThread()
	return ferr
}

// Veth links a and b with a veth pair, giving each end an address (CIDR).
func Veth(t testing.TB, a *NS, addrA string, b *NS, addrB string) {
	t.Helper()
	ifA, ifB := "va"+a.Name[len(a.Name)-6:], "vb"+b.Name[len(b.Name)-6:]
	if out, err := exec.Command("ip", "link", "add", ifA, "netns", a.Name, "type", "veth", "peer", "name", ifB, "netns", b.Name).CombinedOutput(); err != nil {
		t.Fatalf("veth: %v: %s", err, out)
	}
	a.Run(t, "ip", "addr", "add", addrA, "dev", ifA)
	b.Run(t, "ip", "addr", "add", addrB, "dev", ifB)
	a.Run(t, "ip", "link", "set", ifA, "up")
	b.Run(t, "ip", "link", "set", ifB, "up")
}

// RaiseConntrackMax raises the host's nf_conntrack_max to at least n (never
// lowers it); namespaces follow the host's limit.
func RaiseConntrackMax(t testing.TB, n int) {
	t.Helper()
	const p = "/proc/sys/net/netfilter/nf_conntrack_max"
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("nf_conntrack_max: %v", err)
	}
	var cur int
	fmt.Sscan(strings.TrimSpace(string(b)), &cur)
	if cur >= n {
		return
	}
	if err := os.WriteFile(p, []byte(fmt.Sprint(n)), 0o644); err != nil {
		t.Fatalf("raise nf_conntrack_max to %d: %v", n, err)
	}
	t.Logf("raised host nf_conntrack_max %d -> %d", cur, n)
}
