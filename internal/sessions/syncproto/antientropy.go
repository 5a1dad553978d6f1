package syncproto

import (
	"encoding/binary"
	"fmt"
	"math/bits"
)

// Anti-entropy (version 4). Every few seconds the primary sends a Digest of
// its synced sessions: the key space cut into ranges, one hash per range
// (see sessions.digest). The subordinate compares it with its own and
// answers with a Differ naming the ranges that differ; the primary resends
// the sessions of those ranges between a RepairStart and a RepairEnd, and
// the subordinate removes what it holds in them that the repair did not
// bring. Only a connection at version 4 carries these messages.

// MaxRanges bounds the ranges of a digest.
const MaxRanges = 4096

// Digest is the primary's table, one hash per range of the key space. The
// number of ranges is a power of two; Round numbers digests per connection.
type Digest struct {
	Round  uint32
	Hashes []uint64
}

// Differ is the subordinate's answer to digest Round: the ranges whose
// hashes differ, in increasing order (empty: none; then it is not sent).
type Differ struct {
	Round uint32
	Index []uint16
}

// RepairStart begins the resending of ranges Index; the batches that follow
// until RepairEnd carry every session the primary holds in them.
type RepairStart struct {
	Round uint32
	Index []uint16
}

// RepairEnd ends the repair of round Round, which carried Count sessions.
type RepairEnd struct {
	Round uint32
	Count uint64
}

func (Digest) Type() Type      { return TDigest }
func (Differ) Type() Type      { return TDiffer }
func (RepairStart) Type() Type { return TRepairStart }
func (RepairEnd) Type() Type   { return TRepairEnd }

// AppendDigest appends a Digest.
func AppendDigest(b []byte, m Digest) []byte {
	b = append(b, byte(TDigest))
	b = binary.BigEndian.AppendUint32(b, m.Round)
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.Hashes)))
	for _, h := range m.Hashes {
		b = binary.BigEndian.AppendUint64(b, h)
	}
	return b
}

// AppendDiffer appends a Differ.
func AppendDiffer(b []byte, m Differ) []byte { return appendRanges(b, TDiffer, m.Round, m.Index) }

// AppendRepairStart appends a RepairStart.
func AppendRepairStart(b []byte, m RepairStart) []byte {
	return appendRanges(b, TRepairStart, m.Round, m.Index)
}

// AppendRepairEnd appends a RepairEnd.
func AppendRepairEnd(b []byte, m RepairEnd) []byte {
	b = append(b, byte(TRepairEnd))
	b = binary.BigEndian.AppendUint32(b, m.Round)
	return binary.BigEndian.AppendUint64(b, m.Count)
}

func appendRanges(b []byte, t Type, round uint32, index []uint16) []byte {
	b = append(b, byte(t))
	b = binary.BigEndian.AppendUint32(b, round)
	b = binary.BigEndian.AppendUint16(b, uint16(len(index)))
	for _, i := range index {
		b = binary.BigEndian.AppendUint16(b, i)
	}
	return b
}

func decodeDigest(r *reader) Message {
	m := Digest{Round: r.u32()}
	n := int(r.u16())
	if r.err != nil {
		return m
	}
	if n == 0 || n > MaxRanges || bits.OnesCount(uint(n)) != 1 {
		r.err = fmt.Errorf("%d ranges, want a power of two up to %d: %w", n, MaxRanges, ErrMalformed)
		return m
	}
	if n*8 > len(r.b) {
		r.err = ErrTruncated
		return m
	}
	m.Hashes = make([]uint64, n)
	for i := range m.Hashes {
		m.Hashes[i] = r.u64()
	}
	return m
}

// decodeRanges reads a Differ or a RepairStart: range numbers below
// MaxRanges in increasing order.
func decodeRanges(r *reader, t Type) Message {
	round := r.u32()
	n := int(r.u16())
	if r.err == nil && (n > MaxRanges || n*2 > len(r.b)) {
		r.err = fmt.Errorf("%d ranges in %d bytes: %w", n, len(r.b), ErrMalformed)
	}
	var index []uint16
	for i := 0; i < n && r.err == nil; i++ {
		x := r.u16()
		if x >= MaxRanges || i > 0 && x <= index[i-1] {
			r.err = fmt.Errorf("range %d after %v: %w", x, index, ErrMalformed)
			break
		}
		index = append(index, x)
	}
	if t == TDiffer {
		return Differ{Round: round, Index: index}
	}
	return RepairStart{Round: round, Index: index}
}
