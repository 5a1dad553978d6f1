package history

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Queued entries show at once and reach the file in order, across trims,
// by Close at the latest.
func TestQueue(t *testing.T) {
	dir := t.TempDir()
	const max = 10
	l, err := Open(dir, max)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1_700_000_000, 0)
	var errs []error
	const n = 5*max + 3 // several trims
	for i := range n {
		if err := l.Queue(Entry{Time: t0.Add(time.Duration(i) * time.Second), Node: "gw1", Event: "event", Reason: fmt.Sprint(i)}, func(err error) { errs = append(errs, err) }); err != nil {
			t.Fatal(err)
		}
		if last := l.Last(1); len(last) != 1 || last[0].Reason != fmt.Sprint(i) {
			t.Fatalf("after queueing %d: Last(1) = %v", i, last)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if err := l.Queue(Entry{Time: t0, Event: "event"}, nil); err == nil {
		t.Error("Queue after Close: no error")
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	f, err := os.Open(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := Read(f, n)
	if err != nil {
		t.Fatal(err)
	}
	if r.Corrupt != 0 || r.Lines > 2*max || len(r.Entries) < max {
		t.Fatalf("file: %d lines, %d entries, %d corrupt; want at most %d lines holding at least the newest %d", r.Lines, len(r.Entries), r.Corrupt, 2*max, max)
	}
	for i, e := range r.Entries {
		if want := fmt.Sprint(n - len(r.Entries) + i); e.Reason != want {
			t.Fatalf("entry %d on disk is %q, want %q: entries lost, doubled or out of order", i, e.Reason, want)
		}
	}
}

// Clear drops what was queued and not yet written.
func TestQueueThenClear(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir, 10)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := l.Queue(Entry{Time: time.Unix(int64(1_700_000_000+i), 0), Event: "event"}, func(err error) { t.Error(err) }); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Clear(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, err = Open(dir, 10)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got := l.Last(0); len(got) != 0 {
		t.Errorf("after Clear: %d entries on disk", len(got))
	}
}
