package syncproto

import (
	"encoding/binary"

	"github.com/hagate/hagate/internal/sessions/session"
)

// ExpectBatch carries expectation changes (version 2). It shares the
// sequence numbers of Batch: Seq follows the last batch of either kind, and
// an Ack covers both.
type ExpectBatch struct {
	Seq     uint64
	Changes []session.ExpectChange
}

func (ExpectBatch) Type() Type { return TExpect }

// Expectation change flag bits (the first byte of an encoded expectation).
const (
	xOpMask = fOpMask // the key bits are the sessions' (keyFlags)
	xIPv6   = fIPv6
	xZone   = 0x08
	xNAT    = 0x10
	xFlags  = 0x20 // flags and class present (not both zero)
	xHelper = 0x40
	xFn     = 0x80
)

// AppendExpectBatch appends an ExpectBatch.
func AppendExpectBatch(b []byte, m ExpectBatch) []byte {
	var w ExpectWriter
	return appendAll(&w, b, m.Seq, m.Changes)
}

// ExpectWriter builds an ExpectBatch change by change. The zero value is
// ready after Reset.
type ExpectWriter struct{ batch }

// Reset starts a batch appended to b.
func (w *ExpectWriter) Reset(b []byte) { w.reset(b, TExpect) }

// Add appends one change.
func (w *ExpectWriter) Add(c *session.ExpectChange) {
	w.b = AppendExpectChange(w.b, c)
	w.n++
}

// Finish fills the header and returns the buffer.
func (w *ExpectWriter) Finish(seq uint64) []byte { return w.finish(seq) }

// AppendExpectChange appends one encoded expectation change; a Delete
// carries only the key.
func AppendExpectChange(b []byte, c *session.ExpectChange) []byte {
	x := &c.Expect
	f := keyFlags(c.Op, x.Family, x.Zone, xZone)
	v6 := f&xIPv6 != 0
	if c.Op == session.Upsert {
		if x.NAT {
			f |= xNAT
		}
		if x.Flags != 0 || x.Class != 0 {
			f |= xFlags
		}
		if !x.Helper.IsZero() {
			f |= xHelper
		}
		if !x.Fn.IsZero() {
			f |= xFn
		}
	}
	b = appendKey(b, f, xZone, x.Proto, x.Zone, &x.Tuple)
	if c.Op != session.Upsert {
		return b
	}
	b = appendAddr(b, &x.MaskSrc, v6)
	b = binary.BigEndian.AppendUint16(b, x.MaskSrcPort)
	b = append(b, x.Master.Proto)
	b = appendTuple(b, &x.Master.Orig, v6)
	b = binary.AppendUvarint(b, uint64(x.Timeout))
	if f&xFlags != 0 {
		b = binary.AppendUvarint(b, uint64(x.Flags))
		b = binary.AppendUvarint(b, uint64(x.Class))
	}
	if f&xHelper != 0 {
		b = appendName(b, x.Helper[:])
	}
	if f&xFn != 0 {
		b = appendName(b, x.Fn[:])
	}
	if f&xNAT != 0 {
		b = append(b, x.NATDir)
		b = appendAddr(b, &x.NATAddr, v6)
		b = binary.BigEndian.AppendUint16(b, x.NATPort)
	}
	return b
}

func appendAddr(b []byte, a *[16]byte, v6 bool) []byte {
	if v6 {
		return append(b, a[:]...)
	}
	return append(b, a[12:]...)
}

func readAddr(r *reader, a *[16]byte, v6 bool) {
	if v6 {
		copy(a[:], r.take(16))
		return
	}
	*a = [16]byte{10: 0xff, 11: 0xff}
	copy(a[12:], r.take(4))
}

func decodeExpectChange(r *reader, c *session.ExpectChange) {
	x := &c.Expect
	f, more := readKey(r, xZone, false, &x.Family, &x.Proto, &x.Zone, &x.Tuple)
	c.Op = session.Op(f & xOpMask)
	if !more {
		return
	}
	v6 := f&xIPv6 != 0
	readAddr(r, &x.MaskSrc, v6)
	x.MaskSrcPort = r.u16()
	x.Master = session.Key{Family: x.Family, Proto: r.u8(), Zone: x.Zone}
	readTuple(r, &x.Master.Orig, v6)
	x.Timeout = r.uvarint32()
	if f&xFlags != 0 {
		x.Flags = r.uvarint32()
		x.Class = r.uvarint32()
	}
	if f&xHelper != 0 {
		readName(r, x.Helper[:])
	}
	if f&xFn != 0 {
		readName(r, x.Fn[:])
	}
	if f&xNAT != 0 {
		x.NAT = true
		x.NATDir = r.u8()
		readAddr(r, &x.NATAddr, v6)
		x.NATPort = r.u16()
	}
	// One encoding per expectation: optional parts are present exactly
	// when set; the kernel knows two directions.
	if r.err == nil && (f&xZone != 0 && x.Zone == 0 || f&xFlags != 0 && x.Flags == 0 && x.Class == 0 || x.NATDir > 1) {
		r.err = ErrMalformed
	}
}
