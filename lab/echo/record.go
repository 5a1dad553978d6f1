package echo

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// The wire formats. Over TCP the client writes fixed-size records and the
// server writes back every byte it reads. A record is
//
//	magic "hgb1" | sequence number (uint64, big endian) | CRC-32 (IEEE) of the first 12 bytes
//
// so the client sees at once a lost, duplicated, reordered or corrupted
// byte: the next record it reads is not the one it expects.
//
// Over UDP every datagram is one record that also names its flow (a random
// number the client picks), so that the server can tell a flow whose
// packets arrive from a new source address from a new flow:
//
//	magic "hgu1" | kind (1 byte) | flow (uint64) | sequence number (uint64) | CRC-32 (IEEE) of the first 21 bytes
//
// The client sends KindEcho; the server sends it back unchanged while the
// flow comes from the address it first came from, and answers KindMoved
// (same flow and sequence number) once it comes from another.
const (
	RecordSize   = 16
	DatagramSize = 25
	recordMagic  = "hgb1"
	dgramMagic   = "hgu1"
)

// Kinds of datagram.
const (
	// KindEcho asks for an echo (client) or is one (server).
	KindEcho byte = 'E'
	// KindMoved: the server saw the flow arrive from another source
	// address than before (a new NAT mapping), dropped the datagram as a
	// stateful UDP service drops one from a peer it does not know, and
	// tells the client its flow broke.
	KindMoved byte = 'M'
)

// Errors of ParseRecord and ParseDatagram.
var (
	ErrShortRecord = errors.New("echo: short record")
	ErrBadMagic    = errors.New("echo: bad magic")
	ErrBadChecksum = errors.New("echo: bad checksum")
	ErrBadKind     = errors.New("echo: bad datagram kind")
)

// AppendRecord appends the TCP record carrying seq to b.
func AppendRecord(b []byte, seq uint64) []byte {
	start := len(b)
	b = append(b, recordMagic...)
	b = binary.BigEndian.AppendUint64(b, seq)
	return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b[start:start+12]))
}

// ParseRecord returns the sequence number of the TCP record at the start
// of b.
func ParseRecord(b []byte) (uint64, error) {
	if len(b) < RecordSize {
		return 0, fmt.Errorf("%w: %d bytes", ErrShortRecord, len(b))
	}
	if string(b[:4]) != recordMagic {
		return 0, ErrBadMagic
	}
	if crc32.ChecksumIEEE(b[:12]) != binary.BigEndian.Uint32(b[12:16]) {
		return 0, ErrBadChecksum
	}
	return binary.BigEndian.Uint64(b[4:12]), nil
}

// Datagram is one UDP record.
type Datagram struct {
	Kind byte
	Flow uint64
	Seq  uint64
}

// AppendDatagram appends d's wire form to b.
func AppendDatagram(b []byte, d Datagram) []byte {
	start := len(b)
	b = append(b, dgramMagic...)
	b = append(b, d.Kind)
	b = binary.BigEndian.AppendUint64(b, d.Flow)
	b = binary.BigEndian.AppendUint64(b, d.Seq)
	return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b[start:start+21]))
}

// ParseDatagram reads the UDP record at the start of b.
func ParseDatagram(b []byte) (Datagram, error) {
	if len(b) < DatagramSize {
		return Datagram{}, fmt.Errorf("%w: %d bytes", ErrShortRecord, len(b))
	}
	if string(b[:4]) != dgramMagic {
		return Datagram{}, ErrBadMagic
	}
	if crc32.ChecksumIEEE(b[:21]) != binary.BigEndian.Uint32(b[21:25]) {
		return Datagram{}, ErrBadChecksum
	}
	d := Datagram{Kind: b[4], Flow: binary.BigEndian.Uint64(b[5:13]), Seq: binary.BigEndian.Uint64(b[13:21])}
	if d.Kind != KindEcho && d.Kind != KindMoved {
		return Datagram{}, fmt.Errorf("%w %q", ErrBadKind, d.Kind)
	}
	return d, nil
}
