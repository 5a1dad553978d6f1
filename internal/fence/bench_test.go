package fence

import (
	"os"
	"testing"

	"github.com/hagate/hagate/internal/nstest"
)

// benchFence is a fence over two interfaces in a namespace of the
// benchmark's own.
func benchFence(b *testing.B) *Fence {
	nstest.RequireRoot(b, "nft")
	ns := nstest.New(b)
	f, err := os.Open(ns.Path())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	fe := NewAt(int(f.Fd()), []string{"lan", "wan"})
	b.Cleanup(fe.Close)
	return fe
}

// BenchmarkUnfence times lowering a raised fence: what a takeover waits
// for between its sessions being usable and its addresses being claimed.
// The first Raise writes the tables; the changes timed are the ones after.
// Run as root: go test -run XXX -bench 'Fence|Unfence' -benchtime 200x ./internal/fence
func BenchmarkUnfence(b *testing.B) {
	f := benchFence(b)
	for b.Loop() {
		b.StopTimer()
		if err := f.Raise(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := f.Lower(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFence times raising a lowered fence (a step down).
func BenchmarkFence(b *testing.B) {
	f := benchFence(b)
	for b.Loop() {
		b.StopTimer()
		if err := f.Lower(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := f.Raise(); err != nil {
			b.Fatal(err)
		}
	}
}
