// Package heartbeat owns the HA links: the heartbeat message's wire format
// and the UDP transport that sends it to the peers on every link and hands
// authenticated heartbeats to the daemon.
package heartbeat

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hagate/hagate/internal/cluster"
	"github.com/hagate/hagate/internal/seal"
)

// Wire format of a heartbeat payload (inside a sealed frame), big-endian:
//
//	0  version (3)        1  role (1)          2  flags (1)       3  priority (1)
//	4  monitored up (1)   5  monitored total   6  ping up (1)     7  elected length
//	8  uptime, ms (8)     16 hello left, ms (4)                   20 count (8)
//	28 elected node id (0..32 bytes)
//	then echo count (1, 0..MaxEcho) and that many boot ids (8 bytes each)
//	then, from version 3, fields as type (1), length (1), value, to the end
//
// Compatibility, the rule every release keeps: new fields go into the
// type-length-value part, whose unknown types a reader skips, so the
// version changes only when the fixed part does. A member sends each peer
// the newest version that peer has been heard sending (version 2, what
// release 0.1.0 reads, until then), so members of this release and the
// previous one read each other. An authenticated heartbeat of a version
// this member cannot read is reported as such (Received.Unreadable): a
// member is there whose state it cannot read, which is never a reason to
// take over.
//
// Version 2 (release 0.1.0) is version 3 without the fields; version 1,
// from before the echo, is version 2 without the echo.
const (
	version       = 3
	versionEcho   = 2
	versionNoEcho = 1
	fixedLen      = 28
	// MaxEcho bounds the boot ids a heartbeat echoes: one per peer, for
	// clusters of up to five members.
	MaxEcho = 4
	// MaxBuild bounds the build version a heartbeat carries.
	MaxBuild = 64
	// MaxLen bounds a payload: the fixed part, the echo and the fields
	// this release writes, with room for fields of later releases.
	MaxLen       = fixedLen + seal.MaxSenderLen + 1 + 8*MaxEcho + maxFields
	maxFields    = 256
	flagOverride = 1 << 0
	flagFailover = 1 << 1
	flagLeaving  = 1 << 2
	flagSyncPend = 1 << 3
	knownFlags   = flagOverride | flagFailover | flagLeaving | flagSyncPend
)

// Field types of the type-length-value part.
const (
	fieldBuild     = 1 // the sender's build version, printable ASCII
	fieldChecksums = 2 // configuration checksums: part id (1) and checksum (8), each part once
	fieldConfig    = 3 // configuration state: bit 0 set while a synced part differs from the primary's
)

const configPending = 1 << 0

// PeerVersion is the version to send a peer never heard: what the oldest
// release in the compatibility window reads.
const PeerVersion = versionEcho

// ErrVersion is returned for a payload of a version this build cannot read.
var ErrVersion = errors.New("heartbeat version not understood")

// ErrMalformed is returned for a payload that is not a valid heartbeat.
var ErrMalformed = errors.New("malformed heartbeat")

// ErrNodeID is returned for a heartbeat naming a node id that no
// configuration could hold (see validNodeID).
var ErrNodeID = errors.New("invalid node id in heartbeat")

// Message is one heartbeat payload: what the sender says of itself, and the
// boots of its peers it has heard.
type Message struct {
	HB cluster.Heartbeat
	// Echo holds the boot ids (sender epochs of seal.Header) the sender last
	// heard from each peer, most recent first, at most MaxEcho. A member
	// that finds its own boot here knows the heartbeat was sent after the
	// sender heard this boot, so it cannot be a capture from before it.
	Echo []uint64
	// Version is the format: Decode sets the one it read, Encode writes
	// it (0: the newest). Version 1 carries no echo, versions 1 and 2 no
	// fields.
	Version uint8
	// Build is the sender's build version (version 3 on; "" before).
	Build string
}

// Echoes reports whether m echoes the boot id boot.
func (m *Message) Echoes(boot uint64) bool {
	return slices.Contains(m.Echo, boot)
}

// Encode appends m's wire form to dst. Boot ids beyond MaxEcho are left out.
func Encode(dst []byte, m Message) []byte {
	hb := m.HB
	var b [fixedLen]byte
	v := m.Version
	if v == 0 || v > version {
		v = version
	}
	b[0] = v
	b[1] = byte(hb.Role)
	if hb.Override {
		b[2] |= flagOverride
	}
	if hb.FailoverSet {
		b[2] |= flagFailover
	}
	if hb.Leaving {
		b[2] |= flagLeaving
	}
	if hb.SyncPending {
		b[2] |= flagSyncPend
	}
	b[3] = byte(clamp(hb.Priority, 0, 255))
	b[4] = byte(clamp(hb.MonitoredUp, 0, 255))
	b[5] = byte(clamp(hb.MonitoredTotal, 0, 255))
	b[6] = byte(clamp(hb.PingUp, 0, 255))
	elected := hb.Elected
	if len(elected) > seal.MaxSenderLen {
		elected = ""
	}
	b[7] = byte(len(elected))
	binary.BigEndian.PutUint64(b[8:16], uint64(max(hb.Uptime, 0).Milliseconds()))
	binary.BigEndian.PutUint32(b[16:20], uint32(min(max(hb.HelloLeft, 0).Milliseconds(), 1<<32-1)))
	binary.BigEndian.PutUint64(b[20:28], hb.Count)
	dst = append(dst, b[:]...)
	dst = append(dst, elected...)
	if v == versionNoEcho {
		return dst
	}
	echo := m.Echo[:min(len(m.Echo), MaxEcho)]
	dst = append(dst, byte(len(echo)))
	for _, e := range echo {
		dst = binary.BigEndian.AppendUint64(dst, e)
	}
	if v < version {
		return dst
	}
	if build := m.Build; build != "" && len(build) <= MaxBuild && printableASCII(build) {
		dst = append(dst, fieldBuild, byte(len(build)))
		dst = append(dst, build...)
	}
	return appendConfigFields(dst, hb)
}

func printableASCII(s string) bool {
	for i := range len(s) {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// Decode parses a heartbeat payload of either version. It never panics and
// allocates only the elected node id and the echo.
func Decode(p []byte) (Message, error) {
	var m Message
	if len(p) < fixedLen {
		return m, fmt.Errorf("%w: %d bytes", ErrMalformed, len(p))
	}
	v := p[0]
	if v == 0 || v > version {
		return m, fmt.Errorf("%w: %d, this build reads 1 to %d", ErrVersion, v, version)
	}
	role := cluster.Role(p[1])
	if role > cluster.Primary {
		return m, fmt.Errorf("%w: role %d", ErrMalformed, p[1])
	}
	if p[2]&^knownFlags != 0 {
		return m, fmt.Errorf("%w: flags %#x", ErrMalformed, p[2])
	}
	if p[4] > p[5] {
		return m, fmt.Errorf("%w: %d of %d monitored links up", ErrMalformed, p[4], p[5])
	}
	n := int(p[7])
	if n > seal.MaxSenderLen || len(p) < fixedLen+n {
		return m, fmt.Errorf("%w: elected id length %d in %d bytes", ErrMalformed, n, len(p))
	}
	if elected := p[fixedLen : fixedLen+n]; n > 0 && !validNodeID(string(elected)) {
		return m, fmt.Errorf("%w: elected %q", ErrNodeID, elected)
	}
	rest := p[fixedLen+n:]
	noEcho := v == versionNoEcho
	var fields []byte
	switch {
	case noEcho && len(rest) != 0:
		return m, fmt.Errorf("%w: %d bytes after the elected id", ErrMalformed, len(rest))
	case noEcho:
	case len(rest) < 1 || int(rest[0]) > MaxEcho || len(rest) < 1+8*int(rest[0]):
		return m, fmt.Errorf("%w: echo of %d bytes", ErrMalformed, len(rest))
	case v == versionEcho && len(rest) != 1+8*int(rest[0]):
		return m, fmt.Errorf("%w: %d bytes after the echo", ErrMalformed, len(rest)-1-8*int(rest[0]))
	default:
		fields = rest[1+8*int(rest[0]):]
	}
	up := binary.BigEndian.Uint64(p[8:16])
	if up > uint64(100*365*24*time.Hour/time.Millisecond) {
		return m, fmt.Errorf("%w: uptime %d ms", ErrMalformed, up)
	}
	if !noEcho {
		for i := range int(rest[0]) {
			m.Echo = append(m.Echo, binary.BigEndian.Uint64(rest[1+8*i:]))
		}
	}
	m.Version = v
	m.HB = cluster.Heartbeat{
		Role:           role,
		Override:       p[2]&flagOverride != 0,
		FailoverSet:    p[2]&flagFailover != 0,
		Leaving:        p[2]&flagLeaving != 0,
		SyncPending:    p[2]&flagSyncPend != 0,
		Priority:       int(p[3]),
		MonitoredUp:    int(p[4]),
		MonitoredTotal: int(p[5]),
		PingUp:         int(p[6]),
		Uptime:         time.Duration(up) * time.Millisecond,
		HelloLeft:      time.Duration(binary.BigEndian.Uint32(p[16:20])) * time.Millisecond,
		Count:          binary.BigEndian.Uint64(p[20:28]),
		Elected:        string(p[fixedLen : fixedLen+n]),
	}
	if err := m.decodeFields(fields); err != nil {
		return Message{}, err
	}
	return m, nil
}

// decodeFields reads the type-length-value part, skipping the types this
// build does not know (later releases' fields).
func (m *Message) decodeFields(b []byte) error {
	for len(b) > 0 {
		if len(b) < 2 || len(b) < 2+int(b[1]) {
			return fmt.Errorf("%w: field of %d bytes", ErrMalformed, len(b))
		}
		typ, val := b[0], b[2:2+int(b[1])]
		b = b[2+int(b[1]):]
		if typ == fieldBuild {
			if len(val) > MaxBuild || !printableASCII(string(val)) {
				return fmt.Errorf("%w: build version %q", ErrMalformed, val)
			}
			m.Build = string(val)
			m.HB.Build = m.Build // what the node shows in status
		}
		if err := decodeConfigField(&m.HB, typ, val); err != nil {
			return err
		}
	}
	return nil
}

func clamp(v, lo, hi int) int { return min(max(v, lo), hi) }
