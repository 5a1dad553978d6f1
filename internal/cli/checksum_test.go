package cli

import (
	"slices"
	"testing"
)

func TestUnifiedLines(t *testing.T) {
	a := []string{"t", "r1", "r2", "r3", "end"}
	b := []string{"t", "r1", "rX", "r3", "r4", "end"}
	got := unifiedLines(a, b)
	want := []string{"@@ 2 lines in common @@", "-r2", "+rX", " r3", "+r4", "@@ 1 lines in common @@"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q\nwant %q", got, want)
	}
	if got := unifiedLines(a, a); !slices.Equal(got, []string{"@@ 5 lines in common @@"}) {
		t.Fatalf("same texts: %q", got)
	}
}
