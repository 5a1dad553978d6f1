package replay

import "testing"

func TestAcceptOnce(t *testing.T) {
	var f Filter
	for _, s := range []uint64{0, 1, 2, 5, 4, 3} {
		if !f.Accept(s) {
			t.Fatalf("Accept(%d) = false on first sight", s)
		}
	}
	for _, s := range []uint64{0, 1, 2, 3, 4, 5} {
		if f.Accept(s) {
			t.Fatalf("Accept(%d) = true on replay", s)
		}
	}
}

func TestWindow(t *testing.T) {
	var f Filter
	if !f.Accept(10000) {
		t.Fatal("first")
	}
	if f.Accept(10000 - WindowSize - 1) {
		t.Fatal("number far behind the window accepted")
	}
	if !f.Accept(10000 - WindowSize + 64) {
		t.Fatal("number inside the window refused")
	}
	// A big jump forward clears the whole ring.
	if !f.Accept(1 << 40) {
		t.Fatal("jump")
	}
	if !f.Accept(1<<40 - 1) {
		t.Fatal("just behind after jump refused")
	}
	if f.Accept(1<<40 - 1) {
		t.Fatal("replay after jump accepted")
	}
}

func TestMaxUint(t *testing.T) {
	var f Filter
	if f.Accept(^uint64(0)) {
		t.Fatal("MaxUint64 accepted")
	}
}

// TestAgainstModel compares the filter with a map for a pseudo-random walk.
func TestAgainstModel(t *testing.T) {
	var f Filter
	seen := map[uint64]bool{}
	var hi uint64
	x := uint64(88172645463325252)
	for i := 0; i < 200000; i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		var s uint64
		switch x % 4 {
		case 0:
			s = hi + x%100
		default:
			if hi > 3000 {
				s = hi - x%3000
			} else {
				s = x % 3000
			}
		}
		want := !seen[s] && (s+WindowSize > hi || s >= hi)
		got := f.Accept(s)
		if got && !want {
			t.Fatalf("step %d: seq %d accepted, hi %d, seen %v", i, s, hi, seen[s])
		}
		if got {
			seen[s] = true
			if s > hi {
				hi = s
			}
		}
	}
}
