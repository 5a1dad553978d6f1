package nstest

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestTestOwner(t *testing.T) {
	for _, tt := range []struct {
		name string
		pid  int
		ok   bool
	}{
		{"hgt4711-0a1b2c3d", 4711, true},
		{"hgt1-ff", 1, true},
		{"hgt4711", 0, false},        // no random part
		{"hgt-0a1b2c3d", 0, false},   // no pid
		{"hgt0-0a1b2c3d", 0, false},  // pid 0
		{"hgtx1-0a1b2c3d", 0, false}, // not a pid
		{"hg4711a-gw1", 0, false},    // a lab's namespace
		{"other", 0, false},
	} {
		pid, ok := testOwner(tt.name)
		if ok != tt.ok || (ok && pid != tt.pid) {
			t.Errorf("testOwner(%q) = %d, %v; want %d, %v", tt.name, pid, ok, tt.pid, tt.ok)
		}
	}
}

// TestNamespace checks that a test's namespace exists while the test runs,
// that Do's sockets and Run's commands are inside it and joined by Veth,
// and that the namespace is gone after the test, with the process left
// running in it.
func TestNamespace(t *testing.T) {
	var a, b *NS
	var sleeper *exec.Cmd
	done := make(chan error, 1)
	t.Run("use", func(t *testing.T) {
		a, b = New(t), New(t)
		Veth(t, a, "198.51.100.1/24", b, "198.51.100.2/24")
		sleeper = exec.Command("ip", "netns", "exec", a.Name, "sleep", "60")
		if err := sleeper.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { done <- sleeper.Wait() }() // reaps it when Remove kills it
		var l net.Listener
		if err := b.Do(func() (err error) { l, err = net.Listen("tcp", "198.51.100.2:0"); return err }); err != nil {
			t.Fatalf("listen inside b: %v", err)
		}
		defer l.Close()
		port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
		// The address exists only in b, so the listener is there; a reaches it
		// over the veth pair.
		a.Run(t, "bash", "-c", "exec 3<>/dev/tcp/198.51.100.2/"+port)
		if _, err := net.Listen("tcp", "198.51.100.2:0"); err == nil {
			t.Error("listened on b's address outside b: Do did not switch back")
		}
	})
	if sleeper != nil {
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("the process inside the namespace outlived it")
		}
	}
	for _, ns := range []*NS{a, b} {
		if ns == nil {
			continue
		}
		if _, err := os.Stat(ns.Path()); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("namespace %s still there after its test: %v", ns.Name, err)
		}
	}
}

// TestDoReportsFatal checks that fn ending without returning, as t.Fatal
// inside Do does, is an error and not a hang.
func TestDoReportsFatal(t *testing.T) {
	ns := New(t)
	err := ns.Do(func() error {
		runtime.Goexit()
		return nil
	})
	if !errors.Is(err, errNoReturn) {
		t.Fatalf("Do = %v, want %v", err, errNoReturn)
	}
}

// TestRaiseConntrackMaxNeverLowers only asks for values at or below the
// current limit, so it checks the "only upwards" rule without changing the
// host.
func TestRaiseConntrackMaxNeverLowers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	b, err := os.ReadFile(conntrackMaxPath)
	if err != nil {
		t.Skipf("conntrack not loaded: %v", err)
	}
	before := strings.TrimSpace(string(b))
	cur, err := strconv.Atoi(before)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{1, cur} {
		if err := RaiseConntrackMax(n); err != nil {
			t.Fatalf("RaiseConntrackMax(%d): %v", n, err)
		}
		b, _ := os.ReadFile(conntrackMaxPath)
		if after := strings.TrimSpace(string(b)); after != before {
			t.Fatalf("RaiseConntrackMax(%d) changed nf_conntrack_max from %s to %s", n, before, after)
		}
	}
}
