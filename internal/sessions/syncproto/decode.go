package syncproto

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/hagate/hagate/internal/sessions/session"
)

// reader walks a message; the first short read sets err and later reads
// return zeros.
type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil || n < 0 || n > len(r.b) {
		if r.err == nil {
			r.err = ErrTruncated
		}
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8() uint8 {
	if v := r.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (r *reader) u16() uint16 {
	if v := r.take(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if v := r.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if v := r.take(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (r *reader) uvarint32() uint32 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	// Minimal encodings only, so that every message has one encoding.
	if n <= 0 || v > 0xffffffff || n != len(binary.AppendUvarint(nil, v)) {
		r.err = ErrMalformed
		return 0
	}
	r.b = r.b[n:]
	return uint32(v)
}

// Decode decodes one message. A Batch's changes are appended to scratch
// (which may be nil) and alias nothing in b.
func Decode(b []byte, scratch []session.Change) (Message, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("empty: %w", ErrTruncated)
	}
	r := reader{b: b[1:]}
	var m Message
	switch t := Type(b[0]); t {
	case THello:
		h := Hello{Version: r.u8()}
		f := r.u8()
		n := int(r.u8())
		if n > MaxNodeID {
			return nil, fmt.Errorf("hello: node id of %d bytes: %w", n, ErrMalformed)
		}
		id := r.take(n)
		if f&^(helloWantBulk|helloNonce) != 0 {
			return nil, fmt.Errorf("hello: flags %#x: %w", f, ErrMalformed)
		}
		h.WantBulk, h.NodeID = f&helloWantBulk != 0, string(id)
		if f&helloNonce != 0 {
			copy(h.Nonce[:], r.take(NonceLen))
			if r.err == nil && h.Nonce == ([NonceLen]byte{}) {
				return nil, fmt.Errorf("hello: zero nonce: %w", ErrMalformed)
			}
		}
		// A newer peer offers more than this end speaks: the connection
		// runs at the lower version.
		if r.err == nil && h.Version < MinVersion {
			return nil, fmt.Errorf("hello: version %d, want at least %d: %w", h.Version, MinVersion, ErrVersion)
		}
		m = h
	case TBulkStart:
		m = BulkStart{Gen: r.u64(), Count: r.u64()}
	case TBulkEnd:
		m = BulkEnd{Gen: r.u64(), Count: r.u64()}
	case TAck:
		m = Ack{Seq: r.u64()}
	case THeartbeat:
		m = Heartbeat{Seq: r.u64()}
	case TResync:
		m = Resync{Reason: r.u8()}
	case TBatch:
		seq, changes := decodeBatch(&r, scratch, nil, decodeChange)
		m = Batch{Seq: seq, Changes: changes}
	case TTimedBatch:
		var oldest uint64
		seq, changes := decodeBatch(&r, scratch, &oldest, decodeChange)
		if r.err == nil && (oldest == 0 || oldest > math.MaxInt64) {
			r.err = ErrMalformed // a time of zero is a TBatch
		}
		m = Batch{Seq: seq, Changes: changes, Oldest: int64(oldest)}
	case TDigest:
		m = decodeDigest(&r)
	case TDiffer, TRepairStart:
		m = decodeRanges(&r, t)
	case TRepairEnd:
		m = RepairEnd{Round: r.u32(), Count: r.u64()}
	case TExpect:
		seq, changes := decodeBatch(&r, nil, nil, decodeExpectChange)
		m = ExpectBatch{Seq: seq, Changes: changes}
	default:
		return nil, fmt.Errorf("type %d: %w", t, ErrMalformed)
	}
	if r.err != nil {
		return nil, fmt.Errorf("%s: %w", m.Type(), r.err)
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%s: %d trailing bytes: %w", m.Type(), len(r.b), ErrMalformed)
	}
	return m, nil
}

// MaxBatchChanges bounds the changes of one batch. A decoded change takes
// 9 to 13 times its encoded size (128 bytes for a session, 184 for an
// expectation, from 14 on the wire), so without a bound a frame of tiny
// deletes would cost tens of MiB once decoded: with it, a batch decodes to
// at most 6 MiB. Senders stay well under it: a session batch is cut at 256
// KiB (at most 18,725 deletes, the smallest change), an expectation batch
// at 1,024 changes, in this release and in 0.1.0.
const MaxBatchChanges = 1 << 15

// decodeBatch reads a batch's sequence number and changes (appended to
// scratch), each read by one; a timed batch's time, after the header, into
// oldest when not nil. A count above MaxBatchChanges, or one that the bytes
// present cannot hold, is refused before anything is allocated.
func decodeBatch[C any](r *reader, scratch []C, oldest *uint64, one func(*reader, *C)) (uint64, []C) {
	seq := r.u64()
	n := int(r.u32())
	if oldest != nil {
		*oldest = r.u64()
	}
	if r.err != nil {
		return seq, nil
	}
	if n > MaxBatchChanges || n > len(r.b)/minChange {
		r.err = fmt.Errorf("%d changes in %d bytes (at most %d): %w", n, len(r.b), MaxBatchChanges, ErrMalformed)
		return seq, nil
	}
	changes := scratch[:0]
	if cap(changes) < n {
		changes = make([]C, 0, n)
	}
	for i := 0; i < n && r.err == nil; i++ {
		var c C
		one(r, &c)
		changes = append(changes, c)
	}
	return seq, changes
}

func decodeChange(r *reader, c *session.Change) {
	s := &c.Session
	f, more := readKey(r, fZone, true, &s.Family, &s.Proto, &s.Zone, &s.Orig)
	c.Op = session.Op(f & fOpMask)
	helper := f&fOpMask == opHelper
	if helper {
		c.Op = session.Upsert
	}
	if !more {
		return
	}
	v6 := f&fIPv6 != 0
	s.Status = r.uvarint32()
	s.Timeout = r.uvarint32()
	if f&fMark != 0 {
		s.Mark = r.u32()
	}
	if f&fNAT != 0 {
		readTuple(r, &s.Reply, v6)
	} else {
		s.Reply = s.Orig.Invert(s.Proto)
	}
	if f&fLabels != 0 {
		copy(s.Labels[:], r.take(16))
	}
	if f&fTCP != 0 {
		if t := r.take(5); t != nil {
			s.TCP = session.TCPInfo{State: t[0], WScaleOrig: t[1], WScaleReply: t[2], FlagsOrig: t[3], FlagsReply: t[4]}
		}
	}
	if helper {
		readName(r, s.Helper[:])
	}
	// One encoding per session: optional parts are present exactly when set.
	if r.err == nil && (f&fMark != 0 && s.Mark == 0 || f&fZone != 0 && s.Zone == 0 ||
		f&fLabels != 0 && s.Labels == ([16]byte{}) || (f&fTCP != 0) != (s.Proto == session.ProtoTCP) ||
		f&fNAT != 0 && !s.IsNAT()) {
		r.err = ErrMalformed
	}
}

// readKey reads the key part of a change (see appendKey) and returns its
// flags; more is false when nothing follows: a delete, or an error. The op
// opHelper is valid where helperOp.
func readKey(r *reader, zoneBit byte, helperOp bool, family, proto *uint8, zone *uint16, t *session.Tuple) (f byte, more bool) {
	f = r.u8()
	op := f & fOpMask
	if op != byte(session.Upsert) && op != byte(session.Delete) && !(helperOp && op == opHelper) {
		if r.err == nil {
			r.err = ErrMalformed
		}
		return f, false
	}
	v6 := f&fIPv6 != 0
	*family = session.FamilyIPv4
	if v6 {
		*family = session.FamilyIPv6
	}
	*proto = r.u8()
	if f&zoneBit != 0 {
		*zone = r.u16()
	}
	readTuple(r, t, v6)
	if op == byte(session.Delete) {
		if (f&^(fOpMask|fIPv6|zoneBit) != 0 || f&zoneBit != 0 && *zone == 0) && r.err == nil {
			r.err = ErrMalformed // upsert-only fields on a delete, or zone 0 sent
		}
		return f, false
	}
	return f, true
}

// readName reads a name written by appendName into dst: not empty, not
// longer than dst, without NUL (one encoding per name).
func readName(r *reader, dst []byte) {
	n := int(r.u8())
	if r.err == nil && (n == 0 || n > len(dst)) {
		r.err = ErrMalformed
		return
	}
	v := r.take(n)
	for _, c := range v {
		if c == 0 && r.err == nil {
			r.err = ErrMalformed
		}
	}
	copy(dst, v)
}

func readTuple(r *reader, t *session.Tuple, v6 bool) {
	if v6 {
		copy(t.Src[:], r.take(16))
		copy(t.Dst[:], r.take(16))
	} else {
		t.Src = [16]byte{10: 0xff, 11: 0xff}
		t.Dst = t.Src
		copy(t.Src[12:], r.take(4))
		copy(t.Dst[12:], r.take(4))
	}
	t.SrcPort = r.u16()
	t.DstPort = r.u16()
}
