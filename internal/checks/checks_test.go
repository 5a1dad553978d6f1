package checks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "check.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExecExitCodeAndOutput(t *testing.T) {
	res := Exec(t.Context(), []string{script(t, "echo first\necho 'last line'\nexit 3\n")}, 5*time.Second)
	if res.OK() || res.ExitCode != 3 || res.Err != nil {
		t.Fatalf("exit 3: %+v", res)
	}
	if got := lastLine(res.Output); got != "last line" {
		t.Errorf("last line %q", got)
	}
	if res := Exec(t.Context(), []string{"/bin/true"}, 5*time.Second); !res.OK() {
		t.Errorf("/bin/true: %+v", res)
	}
	// No shell: the argument is passed as is, not expanded.
	res = Exec(t.Context(), []string{"/bin/echo", "$HOME;", "*"}, 5*time.Second)
	if got := strings.TrimSpace(string(res.Output)); got != "$HOME; *" {
		t.Errorf("argv went through a shell: %q", got)
	}
	if res := Exec(t.Context(), []string{"/nonexistent/check"}, time.Second); res.OK() || res.Err == nil {
		t.Errorf("missing command: %+v", res)
	}
}

// A command that hangs, with a child that hangs too, is killed with its
// process group at the timeout: the child does not survive it.
func TestExecTimeoutKillsGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	cmd := script(t, "sleep 30 &\necho $! > "+pidFile+"\nwait\n")
	start := time.Now()
	res := Exec(t.Context(), []string{cmd}, 300*time.Millisecond)
	if !errors.Is(res.Err, ErrTimeout) || res.OK() {
		t.Fatalf("hanging command: %+v", res)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("took %s: not killed at its timeout", took)
	}
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	if _, err := fmt.Sscan(strings.TrimSpace(string(data)), &pid); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("child %d outlived the timeout", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A command that floods its output is cut at MaxOutput and still finishes.
func TestExecOutputBounded(t *testing.T) {
	res := Exec(t.Context(), []string{script(t, "i=0\nwhile [ $i -lt 2000 ]; do echo 0123456789012345678901234567890123456789; i=$((i+1)); done\n")}, 10*time.Second)
	if !res.OK() {
		t.Fatalf("flood: %+v", res)
	}
	if len(res.Output) != MaxOutput || !res.Truncated {
		t.Fatalf("kept %d bytes (truncated %v), want %d", len(res.Output), res.Truncated, MaxOutput)
	}
}

// Fall and rise: failing after fall failures in a row, passing again after
// rise successes in a row; passing until then.
func TestFallRise(t *testing.T) {
	r, err := New([]Check{{Name: "c", Command: []string{"/bin/true"}, Interval: time.Second, Timeout: time.Second, Fall: 2, Rise: 3}})
	if err != nil {
		t.Fatal(err)
	}
	c := r.checks[0]
	ok, bad := Result{ExitCode: 0}, Result{ExitCode: 1}
	var got []string
	for _, res := range []Result{bad, ok, bad, bad, bad, ok, ok, bad, ok, ok, ok} {
		if ch, changed := r.record(c, res); changed {
			got = append(got, map[bool]string{true: "failing", false: "passing"}[ch.Failing])
		} else {
			got = append(got, "-")
		}
	}
	want := "- - - failing - - - - - - passing"
	if s := strings.Join(got, " "); s != want {
		t.Errorf("transitions %q, want %q", s, want)
	}
	if st := r.Status()[0]; st.Failing || st.Runs != 11 {
		t.Errorf("status %+v", st)
	}
}

// Run reports a failing command as a change and stops with its context.
func TestRunReportsChange(t *testing.T) {
	r, err := New([]Check{{Name: "down", Command: []string{"/bin/false"}, Interval: 50 * time.Millisecond, Timeout: time.Second, Fall: 2, Rise: 1}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	select {
	case ch := <-r.Changes():
		if ch.Name != "down" || !ch.Failing {
			t.Errorf("change %+v", ch)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no change reported")
	}
	cancel()
	<-done
	if st := r.Status()[0]; !st.Failing || st.ExitCode != 1 {
		t.Errorf("status %+v", st)
	}
}
