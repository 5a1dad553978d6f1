// Package nstest makes the network namespaces hagate's kernel tests run in,
// and the namespace plumbing the lab (lab/netlab) builds its nodes with: one
// way to create, enter and remove a namespace for both.
//
// A test takes a throwaway namespace with [New]: loopback up, removed when
// the test ends (also on failure), named hgt<pid>-<random>. The pid in the
// name lets the next run remove what a killed test process left behind.
// [NS.Run] runs a command in it, [NS.Do] Go code, [Veth] joins two.
// Tests that use it are skipped unless run as root ([RequireRoot]).
//
// The lab, whose namespaces outlive any one test, uses the plain functions:
// [Add], [Remove], [RemoveStale], [Do] and [RaiseConntrackMax].
//
// Everything shells out to ip(8), as an operator reproducing a failure
// would, and changes nothing in the caller's namespace. The one host-wide
// setting it can change is nf_conntrack_max, and only when asked.
//
// The package does not import testing, so the lab's commands can use it;
// [TB] is the part of testing.TB it needs.
package nstest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Dir is where `ip netns` keeps its named namespaces.
const Dir = "/run/netns"

// TB is the part of testing.TB the test helpers use.
type TB interface {
	Helper()
	Skip(args ...any)
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
}

// RequireRoot skips t unless it runs as root with ip(8) and the other named
// tools (nft, sysctl, ...) installed.
func RequireRoot(t TB, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	for _, tool := range append([]string{"ip"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skip("needs " + tool)
		}
	}
}

// NS is one network namespace owned by a test.
type NS struct {
	Name string
}

// testPrefix starts the name of every namespace New makes.
const testPrefix = "hgt"

// sweepOnce removes, once per process, what killed test processes left.
var sweepOnce sync.Once

// New creates a namespace for t with loopback up, removed (with any process
// still inside) when t ends.
func New(t TB) *NS {
	t.Helper()
	RequireRoot(t)
	sweepOnce.Do(func() {
		removed, err := RemoveStale(testOwner)
		if err != nil {
			t.Logf("nstest: removing namespaces of dead test processes: %v", err)
		} else if len(removed) > 0 {
			t.Logf("nstest: removed namespaces of dead test processes: %v", removed)
		}
	})
	var r [4]byte
	_, _ = rand.Read(r[:])
	ns := &NS{Name: fmt.Sprintf("%s%d-%s", testPrefix, os.Getpid(), hex.EncodeToString(r[:]))}
	if err := Add(ns.Name); err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() {
		if err := Remove(ns.Name); err != nil {
			t.Errorf("%v", err)
		}
	})
	return ns
}

// testOwner returns the pid in the name of a namespace New made.
func testOwner(name string) (pid int, ok bool) {
	rest, found := strings.CutPrefix(name, testPrefix)
	if !found {
		return 0, false
	}
	digits, _, found := strings.Cut(rest, "-")
	pid, err := strconv.Atoi(digits)
	return pid, found && err == nil && pid > 0
}

// Path is the namespace's file, for setns and for the product's NetNSPath
// options.
func (ns *NS) Path() string { return Dir + "/" + ns.Name }

// Run runs a command inside the namespace and fails t if it fails.
func (ns *NS) Run(t TB, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns.Name}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("in %s: %s: %v: %s", ns.Name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Do runs fn inside the namespace; see the function [Do].
func (ns *NS) Do(fn func() error) error { return Do(ns.Name, fn) }

// Veth links a and b with a veth pair, giving each end an address (CIDR).
// The ends are named after the namespaces (va<6 chars of a's name>,
// vb<6 chars of b's>).
func Veth(t TB, a *NS, addrA string, b *NS, addrB string) { VethNamed(t, "v", a, addrA, b, addrB) }

// VethNamed is Veth with the ends' names starting with prefix, for more
// than one pair between the same namespaces.
func VethNamed(t TB, prefix string, a *NS, addrA string, b *NS, addrB string) {
	t.Helper()
	n := min(6, 15-len(prefix)-1) // interface names hold 15 bytes
	ifA, ifB := prefix+"a"+a.Name[len(a.Name)-n:], prefix+"b"+b.Name[len(b.Name)-n:]
	if out, err := exec.Command("ip", "link", "add", ifA, "netns", a.Name, "type", "veth", "peer", "name", ifB, "netns", b.Name).CombinedOutput(); err != nil {
		t.Fatalf("veth: %v: %s", err, out)
	}
	a.Run(t, "ip", "addr", "add", addrA, "dev", ifA)
	b.Run(t, "ip", "addr", "add", addrB, "dev", ifB)
	a.Run(t, "ip", "link", "set", ifA, "up")
	b.Run(t, "ip", "link", "set", ifB, "up")
}

// Add creates the named namespace with loopback up.
func Add(name string) error {
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return fmt.Errorf("add namespace %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		return errors.Join(fmt.Errorf("loopback up in %s: %w: %s", name, err, strings.TrimSpace(string(out))), Remove(name))
	}
	return nil
}

// maxKillRounds bounds how often Remove looks for processes that are still
// inside a namespace (a fork racing the kill).
const maxKillRounds = 5

// Remove kills every process inside the named namespace and deletes it. A
// process left inside would keep the namespace, and its links, alive after
// the name is gone. A namespace that does not exist is not an error.
func Remove(name string) error {
	if _, err := os.Stat(Dir + "/" + name); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	self := os.Getpid()
	for range maxKillRounds {
		out, err := exec.Command("ip", "netns", "pids", name).Output()
		if err != nil {
			break // deleted under us, or no longer a namespace: try delete anyway
		}
		killed := 0
		for _, f := range strings.Fields(string(out)) {
			pid, err := strconv.Atoi(f)
			if err != nil || pid == self || pid <= 1 {
				continue
			}
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				killed++
			}
		}
		if killed == 0 {
			break
		}
	}
	if out, err := exec.Command("ip", "netns", "delete", name).CombinedOutput(); err != nil {
		if _, serr := os.Stat(Dir + "/" + name); errors.Is(serr, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("remove namespace %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// RemoveStale removes the named namespaces whose owner is gone: owner
// returns the pid of the process that made a namespace, from its name, or
// false for a name that is not its kind. Namespaces of live processes are
// left alone, so it is safe to call while other tests run. It returns the
// names removed.
func RemoveStale(owner func(name string) (pid int, ok bool)) ([]string, error) {
	entries, err := os.ReadDir(Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list namespaces: %w", err)
	}
	var removed []string
	var errs []error
	for _, e := range entries {
		pid, ok := owner(e.Name())
		if !ok || alive(pid) {
			continue
		}
		if err := Remove(e.Name()); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, e.Name())
	}
	return removed, errors.Join(errs...)
}

// alive reports whether a process with this pid exists. Permission errors
// count as alive: someone owns it.
func alive(pid int) bool {
	if pid == os.Getpid() {
		return true
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// errNoReturn is Do's error when fn ended without returning (it called
// runtime.Goexit, as t.FailNow does).
var errNoReturn = errors.New("function ended without returning (t.Fatal inside Do?)")

// Do runs fn on an OS thread switched into the named namespace: the sockets
// fn opens belong to that namespace for their whole life, wherever they are
// used afterwards. fn runs on a goroutine of its own, so it must report
// failure by returning an error, not with t.Fatal, and must not start
// goroutines that open sockets (they may run on other threads).
//
// The thread goes back to its own namespace and is unlocked, so it
// survives: processes started with a parent-death signal get it when the
// thread that forked them exits, and the runtime ends a thread whose
// goroutine exits while locked to it. Only if the way back fails is the
// thread left locked, and so thrown away: the lesser harm.
func Do(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("current namespace: %w", err)
			return
		}
		defer orig.Close()
		target, err := os.Open(Dir + "/" + name)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("namespace %s: %w", name, err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter namespace %s: %w", name, err)
			return
		}
		ferr := errNoReturn
		defer func() {
			if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
				errc <- errors.Join(ferr, fmt.Errorf("leave namespace %s: %w", name, err))
				return
			}
			runtime.UnlockOSThread()
			errc <- ferr
		}()
		ferr = fn()
	}()
	return <-errc
}

// conntrackMaxPath is the host-wide conntrack table limit; only the initial
// namespace may write it, and every namespace is bound by it.
const conntrackMaxPath = "/proc/sys/net/netfilter/nf_conntrack_max"

// RaiseConntrackMax raises the host-wide net.netfilter.nf_conntrack_max to
// at least n, for tests and benchmarks that hold many sessions. It never
// lowers it, and does not put the old value back: the limit is shared by
// every process on the host, and a concurrent test run that found it high
// enough would lose its sessions if it dropped under it. conntrack must be
// loaded (a namespace with a ct rule, as any lab gateway, ensures it).
func RaiseConntrackMax(n int) error {
	b, err := os.ReadFile(conntrackMaxPath)
	if err != nil {
		return fmt.Errorf("raise nf_conntrack_max: %w", err)
	}
	cur, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("raise nf_conntrack_max: reading %q: %w", b, err)
	}
	if cur >= n {
		return nil
	}
	if err := os.WriteFile(conntrackMaxPath, []byte(strconv.Itoa(n)), 0o644); err != nil {
		return fmt.Errorf("raise nf_conntrack_max from %d to %d: %w", cur, n, err)
	}
	return nil
}
