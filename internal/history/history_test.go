package history

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func entry(i int) Entry {
	return Entry{
		Time:    t0.Add(time.Duration(i) * time.Second),
		Node:    "fw-a",
		Event:   "role",
		Role:    "primary",
		Primary: "fw-a",
		Reason:  fmt.Sprintf("event %d", i),
	}
}

func entries(from, to int) []Entry {
	var out []Entry
	for i := from; i < to; i++ {
		out = append(out, entry(i))
	}
	return out
}

func mustOpen(t *testing.T, dir string, max int) *Log {
	t.Helper()
	l, err := Open(dir, max)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func fileLines(t *testing.T, l *Log) int {
	t.Helper()
	b, err := os.ReadFile(l.Path())
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(b, []byte{'\n'})
}

func TestPersistsAcrossReopen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "hagate")
	l := mustOpen(t, dir, 100)
	for _, e := range entries(0, 5) {
		if err := l.Append(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(entry(99)); err == nil {
		t.Error("Append after Close succeeded")
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o750 {
		t.Errorf("directory %v, %v; want mode 0750", fi.Mode(), err)
	}

	l2 := mustOpen(t, dir, 100)
	if diff := cmp.Diff(entries(0, 5), l2.Last(0)); diff != "" {
		t.Errorf("after reopen (-want +got):\n%s", diff)
	}
	if err := l2.Append(entry(5)); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(entries(3, 6), l2.Last(3)); diff != "" {
		t.Errorf("Last(3) (-want +got):\n%s", diff)
	}
	if l2.Corrupt() != 0 {
		t.Errorf("Corrupt() = %d, want 0", l2.Corrupt())
	}
}

func TestLast(t *testing.T) {
	l := mustOpen(t, t.TempDir(), 10)
	if got := l.Last(5); len(got) != 0 {
		t.Errorf("empty log: Last(5) = %v", got)
	}
	for _, e := range entries(0, 4) {
		if err := l.Append(e); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		n    int
		want []Entry
	}{
		{n: 1, want: entries(3, 4)},
		{n: 4, want: entries(0, 4)},
		{n: 50, want: entries(0, 4)},
		{n: 0, want: entries(0, 4)},
		{n: -1, want: entries(0, 4)},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, l.Last(tt.n)); diff != "" {
			t.Errorf("Last(%d) (-want +got):\n%s", tt.n, diff)
		}
	}
	// The result is a copy.
	got := l.Last(1)
	got[0].Reason = "changed"
	if l.Last(1)[0].Reason == "changed" {
		t.Error("Last returned the log's own slice")
	}
}

func TestTrim(t *testing.T) {
	dir := t.TempDir()
	const max = 5
	l := mustOpen(t, dir, max)
	for i := range 2 * max {
		if err := l.Append(entry(i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := fileLines(t, l); n != 2*max {
		t.Fatalf("%d lines before trim, want %d", n, 2*max)
	}
	if diff := cmp.Diff(entries(max, 2*max), l.Last(0)); diff != "" {
		t.Errorf("kept entries (-want +got):\n%s", diff)
	}
	// One more line passes 2 x max: the file is rewritten with max entries.
	if err := l.Append(entry(2 * max)); err != nil {
		t.Fatal(err)
	}
	if n := fileLines(t, l); n != max {
		t.Errorf("%d lines after trim, want %d", n, max)
	}
	// Appends after the trim go to the new file.
	for i := 2*max + 1; i < 2*max+4; i++ {
		if err := l.Append(entry(i)); err != nil {
			t.Fatal(err)
		}
	}
	want := entries(2*max+4-max, 2*max+4)
	if diff := cmp.Diff(want, l.Last(0)); diff != "" {
		t.Errorf("in memory (-want +got):\n%s", diff)
	}
	l.Close()
	if diff := cmp.Diff(want, mustOpen(t, dir, max).Last(0)); diff != "" {
		t.Errorf("after reopen (-want +got):\n%s", diff)
	}
	left, err := filepath.Glob(filepath.Join(dir, "*.tmp-*"))
	if err != nil || len(left) != 0 {
		t.Errorf("temporary files left: %v %v", left, err)
	}
	fi, err := os.Stat(filepath.Join(dir, FileName))
	if err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("history file after trim: %v %v, want mode 0640", fi.Mode(), err)
	}
}

func TestReopenWithSmallerMax(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, 100)
	for _, e := range entries(0, 20) {
		if err := l.Append(e); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	l2 := mustOpen(t, dir, 3)
	if diff := cmp.Diff(entries(17, 20), l2.Last(0)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if err := l2.Append(entry(20)); err != nil {
		t.Fatal(err)
	}
	if n := fileLines(t, l2); n != 3 {
		t.Errorf("%d lines after the first append, want 3", n)
	}
}

func TestTornLastLine(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, 10)
	for _, e := range entries(0, 3) {
		if err := l.Append(e); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	// A crash in the middle of writing the fourth entry.
	f, err := os.OpenFile(filepath.Join(dir, FileName), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"time":"2025-03-01T12:00:03Z","node":"fw-a","ev`)
	f.Close()

	l2 := mustOpen(t, dir, 10)
	if l2.Corrupt() != 1 {
		t.Errorf("Corrupt() = %d, want 1", l2.Corrupt())
	}
	if diff := cmp.Diff(entries(0, 3), l2.Last(0)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	// The next entry is not glued to the torn line.
	if err := l2.Append(entry(3)); err != nil {
		t.Fatal(err)
	}
	l2.Close()
	l3 := mustOpen(t, dir, 10)
	if diff := cmp.Diff(entries(0, 4), l3.Last(0)); diff != "" {
		t.Errorf("after append and reopen (-want +got):\n%s", diff)
	}
	if l3.Corrupt() != 1 {
		t.Errorf("Corrupt() = %d after reopen, want 1", l3.Corrupt())
	}
}

func TestRead(t *testing.T) {
	good := func(i int) string {
		return fmt.Sprintf(`{"time":"2025-03-01T12:00:%02dZ","node":"fw-a","event":"role","role":"primary","primary":"fw-a","reason":"event %d"}`, i, i)
	}
	tests := []struct {
		name string
		in   string
		max  int
		want ReadResult
	}{
		{name: "empty", in: "", max: 5, want: ReadResult{}},
		{name: "entries", in: good(0) + "\n" + good(1) + "\n", max: 5,
			want: ReadResult{Entries: entries(0, 2), Lines: 2}},
		{name: "keeps newest", in: good(0) + "\n" + good(1) + "\n" + good(2) + "\n", max: 2,
			want: ReadResult{Entries: entries(1, 3), Lines: 3}},
		{name: "corrupt in the middle", in: good(0) + "\n{garbage\n" + good(1) + "\n", max: 5,
			want: ReadResult{Entries: entries(0, 2), Lines: 3, Corrupt: 1}},
		{name: "blank line", in: good(0) + "\n\n" + good(1) + "\n", max: 5,
			want: ReadResult{Entries: entries(0, 2), Lines: 3}},
		{name: "no event", in: `{"time":"2025-03-01T12:00:00Z","node":"fw-a"}` + "\n", max: 5,
			want: ReadResult{Lines: 1, Corrupt: 1}},
		{name: "no time", in: `{"node":"fw-a","event":"role"}` + "\n", max: 5,
			want: ReadResult{Lines: 1, Corrupt: 1}},
		{name: "torn", in: good(0) + "\n" + good(1)[:20], max: 5,
			want: ReadResult{Entries: entries(0, 1), Lines: 2, Corrupt: 1, Torn: true}},
		{name: "whole entry without newline", in: good(0), max: 5,
			want: ReadResult{Entries: entries(0, 1), Lines: 1, Torn: true}},
		{name: "line over the limit", in: good(0) + "\n" + strings.Repeat("x", 3*maxLine) + "\n" + good(1) + "\n", max: 5,
			want: ReadResult{Entries: entries(0, 2), Lines: 3, Corrupt: 1}},
		{name: "line over the limit at the end", in: good(0) + "\n" + strings.Repeat("x", 2*maxLine), max: 5,
			want: ReadResult{Entries: entries(0, 1), Lines: 2, Corrupt: 1, Torn: true}},
		{name: "binary", in: "\x00\xff\n" + good(0) + "\n", max: 5,
			want: ReadResult{Entries: entries(0, 1), Lines: 2, Corrupt: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Read(strings.NewReader(tt.in), tt.max)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzRead(f *testing.F) {
	f.Add([]byte(`{"time":"2025-03-01T12:00:00Z","node":"fw-a","event":"role","reason":"x"}`+"\n"), 3)
	f.Add([]byte("{garbage\n\n{\"time\":"), 1)
	f.Fuzz(func(t *testing.T, b []byte, keep int) {
		if keep <= 0 || keep > 1000 {
			return
		}
		res, err := Read(bytes.NewReader(b), keep)
		if err != nil {
			t.Fatalf("Read from memory failed: %v", err)
		}
		if len(res.Entries) > keep {
			t.Fatalf("%d entries kept, max %d", len(res.Entries), keep)
		}
		if res.Corrupt > res.Lines || len(res.Entries) > res.Lines {
			t.Fatalf("inconsistent counts %+v", res)
		}
		if res.Torn != (len(b) > 0 && b[len(b)-1] != '\n') {
			t.Fatalf("Torn = %v for input ending %q", res.Torn, b[max(0, len(b)-1):])
		}
		for _, e := range res.Entries {
			if e.Event == "" || e.Time.IsZero() {
				t.Fatalf("kept an invalid entry %+v", e)
			}
		}
	})
}

func TestAppendRefusesInvalid(t *testing.T) {
	l := mustOpen(t, t.TempDir(), 10)
	tests := []struct {
		name string
		e    Entry
	}{
		{name: "no event", e: Entry{Time: t0, Node: "fw-a"}},
		{name: "no time", e: Entry{Node: "fw-a", Event: "role"}},
		{name: "too long", e: Entry{Time: t0, Event: "role", Reason: strings.Repeat("x", maxLine)}},
	}
	for _, tt := range tests {
		if err := l.Append(tt.e); err == nil {
			t.Errorf("%s: Append succeeded", tt.name)
		}
	}
	if got := l.Last(0); len(got) != 0 {
		t.Errorf("refused entries kept: %v", got)
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open(t.TempDir(), 0); err == nil {
		t.Error("Open with max 0 succeeded")
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(filepath.Join(file, "sub"), 10); err == nil {
		t.Error("Open under a regular file succeeded")
	}
}

func TestConcurrentAppends(t *testing.T) {
	dir := t.TempDir()
	const max, writers, each = 20, 8, 25
	l := mustOpen(t, dir, max)
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				e := entry(w*each + i)
				e.Node = fmt.Sprintf("fw-%d", w)
				if err := l.Append(e); err != nil {
					errs <- err
				}
				_ = l.Last(3)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	mem := l.Last(0)
	if len(mem) != max {
		t.Fatalf("%d entries kept, want %d", len(mem), max)
	}
	l.Close()
	// Every line on disk is whole, and the file holds what memory held.
	l2 := mustOpen(t, dir, max)
	if l2.Corrupt() != 0 {
		t.Errorf("%d corrupt lines after concurrent appends", l2.Corrupt())
	}
	if diff := cmp.Diff(mem, l2.Last(0)); diff != "" {
		t.Errorf("reopened (-memory +disk):\n%s", diff)
	}
	// Each writer's entries stay in its own order.
	last := map[string]time.Time{}
	for _, e := range mem {
		if !e.Time.After(last[e.Node]) {
			t.Errorf("%s: entry at %v after one at %v", e.Node, e.Time, last[e.Node])
		}
		last[e.Node] = e.Time
	}
}

// Clear empties the history for good: a reopen finds nothing, and what is
// appended afterwards is kept.
func TestClear(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, 100)
	for _, e := range entries(0, 5) {
		if err := l.Append(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Clear(); err != nil {
		t.Fatal(err)
	}
	if got := l.Last(0); len(got) != 0 {
		t.Fatalf("after Clear: %v", got)
	}
	if err := l.Append(entry(7)); err != nil {
		t.Fatal(err)
	}
	l.Close()
	l2 := mustOpen(t, dir, 100)
	defer l2.Close()
	if diff := cmp.Diff(entries(7, 8), l2.Last(0)); diff != "" {
		t.Errorf("after reopen (-want +got):\n%s", diff)
	}
}
