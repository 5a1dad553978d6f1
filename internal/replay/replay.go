// Package replay implements the sliding-window anti-replay filter of RFC 6479:
// it accepts each sequence number at most once and refuses numbers that fall
// behind the window.
package replay

const (
	blockBits  = 64
	ringBlocks = 32 // a power of two
	// WindowSize is how far behind the highest accepted number a late packet
	// may still arrive and be accepted once.
	WindowSize = (ringBlocks - 1) * blockBits
)

// Filter is an anti-replay window. The zero value is an empty filter ready to
// use. Not safe for concurrent use.
type Filter struct {
	last uint64 // highest accepted sequence number + 1 (0: nothing accepted yet)
	ring [ringBlocks]uint64
}

// Reset forgets every number seen.
func (f *Filter) Reset() { *f = Filter{} }

// Accept reports whether seq is new and inside the window, and records it.
func (f *Filter) Accept(seq uint64) bool {
	n := seq + 1 // shift so that the zero value means "nothing seen"
	if n == 0 {
		return false // seq == MaxUint64 would wrap; never valid
	}
	index := n / blockBits
	if n > f.last {
		// Moving forward: clear the blocks we skip over.
		current := f.last / blockBits
		diff := index - current
		if diff > ringBlocks {
			diff = ringBlocks
		}
		for i := uint64(1); i <= diff; i++ {
			f.ring[(current+i)%ringBlocks] = 0
		}
		f.last = n
	} else if f.last-n >= WindowSize {
		return false // too old
	}
	block := &f.ring[index%ringBlocks]
	bit := uint64(1) << (n % blockBits)
	if *block&bit != 0 {
		return false // replay
	}
	*block |= bit
	return true
}
