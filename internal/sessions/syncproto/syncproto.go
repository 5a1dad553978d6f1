// Package syncproto is the wire format of session pickup: the messages a
// primary and a subordinate exchange inside sealed frames on the TCP sync
// connection. The format is versioned and compact (an IPv4 TCP session
// without NAT is about 30 bytes). Decoding never panics and never allocates
// from a length field it has not checked against the bytes present.
package syncproto

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/hagate/hagate/internal/sessions/session"
)

// Version is the highest protocol version this package speaks; MinVersion
// the lowest. A connection runs at the lower of the two ends' versions: each
// Hello carries its sender's highest, and the subordinate answers with the
// version the connection will use.
//
// Version 2 adds the helper of a session (a change with op bits 3) and
// expectation batches (TExpect); a sender leaves both out at version 1.
// Version 3 adds the challenge: the subordinate's Hello carries a random
// Nonce, which the primary's second Hello must echo before anything else,
// so that a recorded connection cannot be replayed to a subordinate.
// Version 4 adds anti-entropy (TDigest, TDiffer, TRepairStart, TRepairEnd:
// antientropy.go) and timed batches (TTimedBatch), which carry when the
// primary saw the oldest change they hold.
const (
	Version    = 4
	MinVersion = 1
)

// NonceLen is the length of a Hello's challenge.
const NonceLen = 16

// Type identifies a message.
type Type uint8

const (
	THello     Type = 1
	TBulkStart Type = 2
	TBatch     Type = 3
	TBulkEnd   Type = 4
	TAck       Type = 5
	THeartbeat Type = 6
	TResync    Type = 7
	TExpect    Type = 8 // version 2
	// Version 4 (antientropy.go).
	TDigest      Type = 9
	TDiffer      Type = 10
	TRepairStart Type = 11
	TRepairEnd   Type = 12
	TTimedBatch  Type = 13
)

func (t Type) String() string {
	switch t {
	case THello:
		return "hello"
	case TBulkStart:
		return "bulk-start"
	case TBatch:
		return "batch"
	case TBulkEnd:
		return "bulk-end"
	case TAck:
		return "ack"
	case THeartbeat:
		return "heartbeat"
	case TResync:
		return "resync"
	case TExpect:
		return "expect"
	case TDigest:
		return "digest"
	case TDiffer:
		return "differ"
	case TRepairStart:
		return "repair-start"
	case TRepairEnd:
		return "repair-end"
	case TTimedBatch:
		return "timed-batch"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// MaxNodeID bounds a node id.
const MaxNodeID = 64

// Message is one decoded message.
type Message interface{ Type() Type }

// Hello opens a connection, both ways. From version 3, the subordinate's
// answer carries a Nonce and the primary echoes it in a second Hello; a zero
// Nonce is none.
type Hello struct {
	Version  uint8
	NodeID   string
	WantBulk bool
	Nonce    [NonceLen]byte
}

// BulkStart begins a full copy of the primary's table, generation Gen, of
// about Count sessions.
type BulkStart struct{ Gen, Count uint64 }

// Batch carries changes. Seq counts batches per connection from 1; a gap
// means loss, answered by a resync. Oldest, when not zero (version 4: a
// TTimedBatch), is when the primary saw the oldest change the batch holds,
// in Unix nanoseconds: the subordinate measures its lag per change from it.
type Batch struct {
	Seq     uint64
	Changes []session.Change
	Oldest  int64
}

// BulkEnd ends generation Gen: what the subordinate holds from older
// generations and did not receive again is stale.
type BulkEnd struct{ Gen, Count uint64 }

// Ack tells the primary the last batch applied.
type Ack struct{ Seq uint64 }

// Heartbeat keeps an idle connection alive and says the last batch sent.
type Heartbeat struct{ Seq uint64 }

// Resync asks the primary for a new bulk.
type Resync struct{ Reason uint8 }

func (Hello) Type() Type     { return THello }
func (BulkStart) Type() Type { return TBulkStart }
func (m Batch) Type() Type {
	if m.Oldest != 0 {
		return TTimedBatch
	}
	return TBatch
}
func (BulkEnd) Type() Type   { return TBulkEnd }
func (Ack) Type() Type       { return TAck }
func (Heartbeat) Type() Type { return THeartbeat }
func (Resync) Type() Type    { return TResync }

// Errors a decoder returns; all are wrapped with detail.
var (
	ErrTruncated = errors.New("truncated message")
	ErrMalformed = errors.New("malformed message")
	ErrVersion   = errors.New("unsupported protocol version")
)

// Hello flags.
const (
	helloWantBulk = 1 << iota
	helloNonce
)

// AppendHello appends a Hello.
func AppendHello(b []byte, h Hello) []byte {
	id := h.NodeID
	if len(id) > MaxNodeID {
		id = id[:MaxNodeID]
	}
	var f byte
	if h.WantBulk {
		f |= helloWantBulk
	}
	if h.Nonce != ([NonceLen]byte{}) {
		f |= helloNonce
	}
	b = append(b, byte(THello), h.Version, f, byte(len(id)))
	b = append(b, id...)
	if f&helloNonce != 0 {
		b = append(b, h.Nonce[:]...)
	}
	return b
}

func appendU64Pair(b []byte, t Type, x, y uint64) []byte {
	b = append(b, byte(t))
	b = binary.BigEndian.AppendUint64(b, x)
	return binary.BigEndian.AppendUint64(b, y)
}

// AppendBulkStart appends a BulkStart.
func AppendBulkStart(b []byte, m BulkStart) []byte {
	return appendU64Pair(b, TBulkStart, m.Gen, m.Count)
}

// AppendBulkEnd appends a BulkEnd.
func AppendBulkEnd(b []byte, m BulkEnd) []byte { return appendU64Pair(b, TBulkEnd, m.Gen, m.Count) }

// AppendAck appends an Ack.
func AppendAck(b []byte, m Ack) []byte {
	return binary.BigEndian.AppendUint64(append(b, byte(TAck)), m.Seq)
}

// AppendHeartbeat appends a Heartbeat.
func AppendHeartbeat(b []byte, m Heartbeat) []byte {
	return binary.BigEndian.AppendUint64(append(b, byte(THeartbeat)), m.Seq)
}

// AppendResync appends a Resync.
func AppendResync(b []byte, m Resync) []byte { return append(b, byte(TResync), m.Reason) }

// batchHeaderLen is type, seq, count.
const batchHeaderLen = 1 + 8 + 4

// AppendBatch appends a whole Batch (a TTimedBatch when m.Oldest is set).
func AppendBatch(b []byte, m Batch) []byte {
	w := BatchWriter{Oldest: m.Oldest}
	return appendAll(&w, b, m.Seq, m.Changes)
}

// batch is what both kinds of batch share: the header (type, sequence
// number, count of changes), then the changes, appended one by one.
type batch struct {
	b     []byte
	start int
	n     uint32
}

func (w *batch) reset(b []byte, t Type) {
	w.start, w.n = len(b), 0
	w.b = append(b, make([]byte, batchHeaderLen)...)
	w.b[w.start] = byte(t)
}

func (w *batch) finish(seq uint64) []byte {
	binary.BigEndian.PutUint64(w.b[w.start+1:], seq)
	binary.BigEndian.PutUint32(w.b[w.start+9:], w.n)
	return w.b
}

// Len returns the bytes of the batch so far; Count the changes.
func (w *batch) Len() int   { return len(w.b) - w.start }
func (w *batch) Count() int { return int(w.n) }

// Writer builds a batch of changes C change by change, so that a sender
// can cut batches at a size: BatchWriter for sessions, ExpectWriter for
// expectations.
type Writer[C any] interface {
	Reset(b []byte)
	Add(c *C)
	Len() int
	Count() int
	Finish(seq uint64) []byte
}

// appendAll appends a whole batch of cs to b.
func appendAll[C any](w Writer[C], b []byte, seq uint64, cs []C) []byte {
	w.Reset(b)
	for i := range cs {
		w.Add(&cs[i])
	}
	return w.Finish(seq)
}

// BatchWriter builds a Batch change by change, so a sender can cut batches
// at a byte size. The zero value is ready after Reset.
type BatchWriter struct {
	// Version is the connection's protocol version (0: Version); below 2
	// the helpers of sessions are left out.
	Version uint8
	// Oldest, when not zero, makes the batch a TTimedBatch carrying it
	// (see Batch): only for a connection at version 4 or later.
	Oldest int64
	batch
}

// Reset starts a batch appended to b.
func (w *BatchWriter) Reset(b []byte) {
	if w.Oldest == 0 {
		w.reset(b, TBatch)
		return
	}
	w.reset(b, TTimedBatch)
	w.b = binary.BigEndian.AppendUint64(w.b, uint64(w.Oldest))
}

// Add appends one change.
func (w *BatchWriter) Add(c *session.Change) {
	if w.Version == 1 && !c.Session.Helper.IsZero() {
		v1 := *c
		v1.Session.Helper = session.Name{}
		c = &v1
	}
	w.b = AppendChange(w.b, c)
	w.n++
}

// Finish fills the header and returns the buffer.
func (w *BatchWriter) Finish(seq uint64) []byte { return w.finish(seq) }

// SetBatchSeq rewrites the sequence number of an encoded Batch or
// ExpectBatch in place.
func SetBatchSeq(msg []byte, seq uint64) error {
	if len(msg) < batchHeaderLen || Type(msg[0]) != TBatch && Type(msg[0]) != TExpect && Type(msg[0]) != TTimedBatch {
		return fmt.Errorf("set seq: not a batch: %w", ErrMalformed)
	}
	binary.BigEndian.PutUint64(msg[1:9], seq)
	return nil
}

// Change flag bits (the first byte of an encoded change).
const (
	fOpMask   = 0x03
	fIPv6     = 0x04
	fNAT      = 0x08 // reply tuple present (otherwise the inverse of orig)
	fLabels   = 0x10
	fZone     = 0x20
	fMark     = 0x40
	fTCP      = 0x80
	minChange = 1 + 1 + 4 + 4 + 2 + 2 // a delete of an IPv4 key
	// opHelper in the op bits (version 2): an upsert followed by the
	// session's helper name.
	opHelper = 0x03
)

// AppendChange appends one encoded change.
func AppendChange(b []byte, c *session.Change) []byte {
	s := &c.Session
	f := keyFlags(c.Op, s.Family, s.Zone, fZone)
	if c.Op == session.Upsert && !s.Helper.IsZero() {
		f |= opHelper
	}
	v6 := f&fIPv6 != 0
	if c.Op == session.Upsert {
		if s.IsNAT() {
			f |= fNAT
		}
		if s.Labels != ([16]byte{}) {
			f |= fLabels
		}
		if s.Mark != 0 {
			f |= fMark
		}
		if s.Proto == session.ProtoTCP {
			f |= fTCP
		}
	}
	b = appendKey(b, f, fZone, s.Proto, s.Zone, &s.Orig)
	if f&fOpMask == byte(session.Delete) {
		return b
	}
	b = binary.AppendUvarint(b, uint64(s.Status))
	b = binary.AppendUvarint(b, uint64(s.Timeout))
	if f&fMark != 0 {
		b = binary.BigEndian.AppendUint32(b, s.Mark)
	}
	if f&fNAT != 0 {
		b = appendTuple(b, &s.Reply, v6)
	}
	if f&fLabels != 0 {
		b = append(b, s.Labels[:]...)
	}
	if f&fTCP != 0 {
		t := &s.TCP
		b = append(b, t.State, t.WScaleOrig, t.WScaleReply, t.FlagsOrig, t.FlagsReply)
	}
	if f&fOpMask == opHelper {
		b = appendName(b, s.Helper[:])
	}
	return b
}

// A change of either kind starts with its key: a flags byte (the op in
// the low two bits, then the IPv6 bit; the place of the zone bit is the
// kind's, the other bits say which of the kind's optional fields follow),
// the protocol, the zone when not 0, and the key's tuple. A delete carries
// nothing more.

// keyFlags returns the flag bits of a change's key.
func keyFlags(op session.Op, family uint8, zone uint16, zoneBit byte) byte {
	f := byte(op) & fOpMask
	if family == session.FamilyIPv6 {
		f |= fIPv6
	}
	if zone != 0 {
		f |= zoneBit
	}
	return f
}

// appendKey appends the key part of a change flagged f.
func appendKey(b []byte, f, zoneBit, proto byte, zone uint16, t *session.Tuple) []byte {
	b = append(b, f, proto)
	if f&zoneBit != 0 {
		b = binary.BigEndian.AppendUint16(b, zone)
	}
	return appendTuple(b, t, f&fIPv6 != 0)
}

// appendName appends a name up to its first NUL, length first.
func appendName(b, name []byte) []byte {
	n := 0
	for n < len(name) && name[n] != 0 {
		n++
	}
	return append(append(b, byte(n)), name[:n]...)
}

func appendTuple(b []byte, t *session.Tuple, v6 bool) []byte {
	if v6 {
		b = append(b, t.Src[:]...)
		b = append(b, t.Dst[:]...)
	} else {
		b = append(b, t.Src[12:]...)
		b = append(b, t.Dst[12:]...)
	}
	b = binary.BigEndian.AppendUint16(b, t.SrcPort)
	return binary.BigEndian.AppendUint16(b, t.DstPort)
}
