// Package configsync carries the configuration sync: a subordinate whose
// synced parts differ from the primary's (as the heartbeats' checksums
// say) fetches the primary's content over a small authenticated TCP
// exchange and applies it in one nftables transaction.
//
// Why a pull over its own exchange rather than a new session-sync message:
// the heartbeats already tell every member the primary's checksums, so the
// subordinate knows when it must fetch and what it must end up with; a
// fetch of the current content makes the last state win by itself when
// the primary changes quickly; the primary keeps no state per subordinate;
// members of release 0.1.0 never see the exchange; and it works without
// session pickup. It runs on its own port (config_sync.port) with its own
// seal purpose, so its keys and sequence spaces are separate from the
// heartbeats' and the sessions'.
package configsync

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/hagate/hagate/internal/checksum"
)

// Wire format, inside a sealed frame, big-endian:
//
//	request:  version (1), op (1), part (1), nonce (16)
//	response: version (1), status (1), op (1), part (1), nonce (16), checksum (8), body
//
// The response echoes the request's random nonce, so a response recorded
// from another exchange cannot be replayed into this one. The body is the
// content (status OK) or why it is refused (status Refused).
const (
	protoVersion = 1
	nonceLen     = 16
	requestLen   = 3 + nonceLen
	responseHead = 4 + nonceLen + 8
)

// Op is what a request asks for.
type Op uint8

const (
	OpApply Op = 1 // the content to apply (for the ruleset: nft's text of the synced tables)
	OpText  Op = 2 // the normalised text the checksum is computed over (for diffs)
	// OpFDB asks for the addresses the primary's transparent bridge learnt
	// (fdb.go); its part is 0. A build without it closes the connection
	// without an answer, which the asking member takes as "none yet".
	OpFDB Op = 3
)

// Status says whether a response carries the content.
type Status uint8

const (
	OK      Status = 0
	Refused Status = 1
)

// Request asks the primary for one part.
type Request struct {
	Op    Op
	Part  checksum.Part
	Nonce [nonceLen]byte
}

// Response answers a Request.
type Response struct {
	Status Status
	Op     Op
	Part   checksum.Part
	Nonce  [nonceLen]byte
	Sum    uint64
	Body   []byte
}

// ErrMalformed is returned for a message that is not valid.
var ErrMalformed = errors.New("malformed configuration sync message")

func (r Request) Append(dst []byte) []byte {
	dst = append(dst, protoVersion, byte(r.Op), byte(r.Part))
	return append(dst, r.Nonce[:]...)
}

func ParseRequest(b []byte) (Request, error) {
	var r Request
	if len(b) != requestLen || b[0] != protoVersion {
		return r, fmt.Errorf("%w: request of %d bytes", ErrMalformed, len(b))
	}
	r.Op, r.Part = Op(b[1]), checksum.Part(b[2])
	switch {
	case r.Op == OpFDB:
		if r.Part != 0 {
			return r, fmt.Errorf("%w: part %d with the forwarding database", ErrMalformed, b[2])
		}
	case r.Op != OpApply && r.Op != OpText:
		return r, fmt.Errorf("%w: op %d", ErrMalformed, b[1])
	case !r.Part.Known():
		return r, fmt.Errorf("%w: part %d", ErrMalformed, b[2])
	}
	copy(r.Nonce[:], b[3:])
	return r, nil
}

func (r Response) Append(dst []byte) []byte {
	dst = append(dst, protoVersion, byte(r.Status), byte(r.Op), byte(r.Part))
	dst = append(dst, r.Nonce[:]...)
	dst = binary.BigEndian.AppendUint64(dst, r.Sum)
	return append(dst, r.Body...)
}

// ParseResponse reads a response; Body aliases b.
func ParseResponse(b []byte) (Response, error) {
	var r Response
	if len(b) < responseHead || b[0] != protoVersion {
		return r, fmt.Errorf("%w: response of %d bytes", ErrMalformed, len(b))
	}
	r.Status, r.Op, r.Part = Status(b[1]), Op(b[2]), checksum.Part(b[3])
	if r.Status != OK && r.Status != Refused {
		return r, fmt.Errorf("%w: status %d", ErrMalformed, b[1])
	}
	copy(r.Nonce[:], b[4:])
	r.Sum = binary.BigEndian.Uint64(b[4+nonceLen:])
	r.Body = b[responseHead:]
	return r, nil
}
