package bench

import (
	"context"
	"testing"

	"github.com/hagate/hagate/internal/nstest"
)

// TestCtCounter: the counter follows its own namespace's table, as
// conntrack -C does, and not another's.
func TestCtCounter(t *testing.T) {
	nstest.RequireRoot(t)
	mine, other := nstest.New(t), nstest.New(t)
	c, err := openCounter(mine.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fill := func(ns string, n int) {
		t.Helper()
		gen, err := openChurnGen(ns, 1)
		if err != nil {
			t.Fatal(err)
		}
		defer gen.Close()
		if err := gen.prepare([2]int{0, n}, [2]int{}); err != nil {
			t.Fatal(err)
		}
		if created, _, err := gen.apply(context.Background()); err != nil || created != n {
			t.Fatalf("%d of %d created: %v", created, n, err)
		}
	}
	want := func(n int) {
		t.Helper()
		if got, err := c.count(); err != nil || got != n {
			t.Fatalf("count %d (%v), want %d", got, err, n)
		}
	}
	want(0)
	fill(other.Name, 7)
	want(0)
	fill(mine.Name, 5)
	want(5)
}
