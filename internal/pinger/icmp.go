package pinger

import (
	"bytes"
	"encoding/binary"
	"net/netip"
)

// ICMP message types (RFC 792, RFC 4443).
const (
	typeEchoReply4   = 0
	typeEchoRequest4 = 8
	typeEchoRequest6 = 128
	typeEchoReply6   = 129

	protoICMP4  = 1
	echoHeader  = 8 // type, code, checksum, identifier, sequence number
	ipv4MinHead = 20
)

// echo is the part of an echo request or reply that matters to matching.
type echo struct {
	id, seq uint16
	payload []byte
}

// dropReason says why a received datagram is not the answer to the probe
// in flight. Each is counted per target, so `hagate status` shows what a
// busy interface delivers besides our replies.
type dropReason uint8

const (
	dropNone     dropReason = iota
	dropShort               // shorter than an ICMP echo header
	dropIPHeader            // raw IPv4: the IP header is malformed or not ICMP
	dropType                // not an echo reply
	dropCode                // echo reply with a non-zero code
	dropChecksum            // IPv4: bad ICMP checksum (raw sockets see them)
	dropSource              // reply from an address other than the target
	dropID                  // reply to another pinger (raw sockets see all)
	dropSeq                 // reply to an earlier probe that timed out
	dropPayload             // our identifier and sequence, not our payload
)

var dropNames = [...]string{
	dropNone:     "none",
	dropShort:    "short",
	dropIPHeader: "ip-header",
	dropType:     "type",
	dropCode:     "code",
	dropChecksum: "checksum",
	dropSource:   "source",
	dropID:       "other-id",
	dropSeq:      "stale-seq",
	dropPayload:  "payload",
}

func (r dropReason) String() string {
	if int(r) < len(dropNames) {
		return dropNames[r]
	}
	return "unknown"
}

// marshalEcho builds an ICMP echo message of the given type. The IPv4
// checksum is filled in; for ICMPv6 the kernel computes it, as it needs the
// addresses of the pseudo-header.
func marshalEcho(typ uint8, v6 bool, e echo) []byte {
	b := make([]byte, echoHeader+len(e.payload))
	b[0] = typ
	binary.BigEndian.PutUint16(b[4:], e.id)
	binary.BigEndian.PutUint16(b[6:], e.seq)
	copy(b[echoHeader:], e.payload)
	if !v6 {
		binary.BigEndian.PutUint16(b[2:], checksum(b))
	}
	return b
}

// echoRequest builds the echo request for the family of dst.
func echoRequest(dst netip.Addr, e echo) []byte {
	if dst.Is6() {
		return marshalEcho(typeEchoRequest6, true, e)
	}
	return marshalEcho(typeEchoRequest4, false, e)
}

// parseEchoReply parses what an ICMP socket received. ipHeader says that b
// starts with the IPv4 header (raw IPv4 sockets); ICMP datagram sockets and
// raw ICMPv6 sockets deliver the ICMP message alone. The payload aliases b.
func parseEchoReply(b []byte, v6, ipHeader bool) (echo, dropReason) {
	if ipHeader && !v6 {
		if len(b) < ipv4MinHead || b[0]>>4 != 4 {
			return echo{}, dropIPHeader
		}
		ihl := int(b[0]&0x0f) * 4
		if ihl < ipv4MinHead || ihl > len(b) || b[9] != protoICMP4 {
			return echo{}, dropIPHeader
		}
		b = b[ihl:]
	}
	if len(b) < echoHeader {
		return echo{}, dropShort
	}
	want := uint8(typeEchoReply4)
	if v6 {
		want = typeEchoReply6
	}
	if b[0] != want {
		return echo{}, dropType
	}
	if b[1] != 0 {
		return echo{}, dropCode
	}
	if !v6 && checksum(b) != 0 {
		return echo{}, dropChecksum
	}
	return echo{
		id:      binary.BigEndian.Uint16(b[4:]),
		seq:     binary.BigEndian.Uint16(b[6:]),
		payload: b[echoHeader:],
	}, dropNone
}

// matchReply says whether a parsed reply from src answers the probe want
// sent to dst.
func matchReply(got echo, src, dst netip.Addr, want echo) dropReason {
	switch {
	case src.Unmap().WithZone("") != dst.WithZone(""):
		return dropSource
	case got.id != want.id:
		return dropID
	case got.seq != want.seq:
		return dropSeq
	case !bytes.Equal(got.payload, want.payload):
		return dropPayload
	}
	return dropNone
}

// checksum is the Internet checksum (RFC 1071) of b. Over a message that
// carries its checksum it is 0 when the message is intact.
func checksum(b []byte) uint16 {
	var sum uint32
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
