package daemon

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hagate/hagate/internal/metrics"
)

func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "notify")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// Finding 6: a notify command that leaves a background child holding its
// output does not stall the notifier (it waited 30 s, or for ever).
func TestNotifyBackgroundChildDoesNotStall(t *testing.T) {
	p := script(t, "sleep 60 &\necho started\n")
	n := newNotifier("gw1", slog.New(slog.DiscardHandler), metrics.New())
	start := time.Now()
	n.exec(context.Background(), notification{Command: p, Role: "primary", Reason: "elected"})
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("notify took %s with a background child", d)
	}
}

// At the timeout the command's whole process group is killed, so a child
// does not outlive it.
func TestNotifyTimeoutKillsChildren(t *testing.T) {
	saved := notifyTimeout
	notifyTimeout = 300 * time.Millisecond
	defer func() { notifyTimeout = saved }()
	pidFile := filepath.Join(t.TempDir(), "child")
	p := script(t, "sleep 60 &\necho $! > "+pidFile+"\nwait\n")
	n := newNotifier("gw1", slog.New(slog.DiscardHandler), metrics.New())
	n.exec(context.Background(), notification{Command: p, Role: "primary", Reason: "elected"})
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatal("the command's child outlived its timeout")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A reason carrying a control character still reaches the command.
func TestNotifyReasonPrintable(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	p := script(t, "echo \"$HAGATE_REASON\" > "+out+"\n")
	n := newNotifier("gw1", slog.New(slog.DiscardHandler), metrics.New())
	n.exec(context.Background(), notification{Command: p, Role: "primary", Reason: "member gw\x001 lost"})
	b, err := os.ReadFile(out)
	if err != nil || strings.TrimSpace(string(b)) != "member gw?1 lost" {
		t.Fatalf("reason %q, %v", b, err)
	}
}

// Every run is counted, and a failing one also as a failure.
func TestNotifyCounted(t *testing.T) {
	met := metrics.New()
	n := newNotifier("gw1", slog.New(slog.DiscardHandler), met)
	n.exec(context.Background(), notification{Command: script(t, "exit 0\n"), Role: "primary"})
	n.exec(context.Background(), notification{Command: script(t, "exit 3\n"), Role: "subordinate"})
	if runs, failed := value(met.NotifyRuns), value(met.NotifyFailed); runs != 2 || failed != 1 {
		t.Errorf("runs %v failed %v, want 2 and 1", runs, failed)
	}
}

// A notification that is not a role change (a checksum mismatch) passes its
// event as the first argument, never a role: a script that acts on
// "primary" must not run its takeover again.
func TestNotifyEventIsNotARole(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	p := script(t, "echo \"$1 $HAGATE_EVENT $HAGATE_ROLE\" > "+out+"\n")
	n := newNotifier("gw1", slog.New(slog.DiscardHandler), metrics.New())
	n.exec(context.Background(), notification{Command: p, Event: "checksum", Role: "primary", Previous: "primary", Kind: "checksum", Reason: "ruleset differs"})
	if b, err := os.ReadFile(out); err != nil || strings.TrimSpace(string(b)) != "checksum checksum primary" {
		t.Fatalf("got %q, %v", b, err)
	}
	n.exec(context.Background(), notification{Command: p, Role: "primary", Previous: "subordinate", Kind: "device", Reason: "gw2 silent"})
	if b, err := os.ReadFile(out); err != nil || strings.TrimSpace(string(b)) != "primary role primary" {
		t.Fatalf("role change: got %q, %v", b, err)
	}
}
