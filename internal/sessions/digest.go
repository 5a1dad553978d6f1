package sessions

import (
	"encoding/binary"

	"github.com/hagate/hagate/internal/sessions/session"
)

// A digest sums up the synced sessions of a table so that two tables can be
// compared by exchanging a few kilobytes instead of the tables (anti-entropy,
// antientropy.go). The key space is cut into digestRanges ranges by a hash
// of the key; each range's hash is the XOR of its sessions' hashes. XOR
// makes it independent of the order sessions came in and lets the table
// update it as each session is stored or removed, at the cost of two hash
// computations per change.
//
// Only the key is hashed: a digest finds the sessions one table holds and
// the other does not (a lost create or a lost end), which is what a failover
// loses. A session's state (TCP state, timeout) changes with traffic; its
// next update, or the refresh before its copy expires, carries it.

// digestRanges is the number of ranges (a power of two, at most
// syncproto.MaxRanges): 8 KiB of hashes per digest. With a million sessions
// a range holds about a thousand, so a repair of one range costs about 30
// KiB on the wire.
const (
	digestBits   = 10
	digestRanges = 1 << digestBits
)

// digest is one hash per range of the key space.
type digest [digestRanges]uint64

// mix64 is the finalizer of SplitMix64: every input bit affects every
// output bit. The hash must be the same on every member, whatever the
// build or the process: no seeded hash.
func mix64(h uint64) uint64 {
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	return h ^ h>>31
}

// keyHash hashes a session's key; its top bits pick the range.
func keyHash(k *session.Key) uint64 {
	o := &k.Orig
	h := mix64(uint64(k.Family) | uint64(k.Proto)<<8 | uint64(k.Zone)<<16 | uint64(o.SrcPort)<<32 | uint64(o.DstPort)<<48)
	for _, w := range [4]uint64{binary.BigEndian.Uint64(o.Src[:8]), binary.BigEndian.Uint64(o.Src[8:]),
		binary.BigEndian.Uint64(o.Dst[:8]), binary.BigEndian.Uint64(o.Dst[8:])} {
		h = mix64(h ^ w)
	}
	return h
}

// rangeOf returns the range of a key.
func rangeOf(k *session.Key) int { return int(keyHash(k) >> (64 - digestBits)) }

// flip adds k to its range's hash, or takes it out: XOR is its own inverse.
func (d *digest) flip(k *session.Key) {
	h := keyHash(k)
	// The range's hash uses the bits below the range number, mixed again,
	// so that the sessions of one range do not share the bits that chose it.
	d[h>>(64-digestBits)] ^= mix64(h ^ 0x9e3779b97f4a7c15)
}

// update records a session stored or removed: it counts while synced.
func (d *digest) update(k *session.Key, was, is bool) {
	if was != is {
		d.flip(k)
	}
}

// differ returns the ranges whose hashes differ from other's.
func (d *digest) differ(other []uint64) []uint16 {
	var out []uint16
	for i := range d {
		if d[i] != other[i] {
			out = append(out, uint16(i))
		}
	}
	return out
}
