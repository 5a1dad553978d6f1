// Package heartbeat owns the HA links: the heartbeat message's wire format
// and the UDP transport that sends it to the peers on every link and hands
// authenticated heartbeats to the daemon.
package heartbeat

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/hagate/hagate/internal/cluster"
	"github.com/hagate/hagate/internal/seal"
)

// Wire format of a heartbeat payload (inside a sealed frame), big-endian:
//
//	0  version (1)        1  role (1)          2  flags (1)       3  priority (1)
//	4  monitored up (1)   5  monitored total   6  ping up (1)     7  elected length
//	8  uptime, ms (8)     16 hello left, ms (4)                   20 count (8)
//	28 elected node id (0..32 bytes)
const (
	version      = 1
	fixedLen     = 28
	MaxLen       = fixedLen + seal.MaxSenderLen
	flagOverride = 1 << 0
	flagFailover = 1 << 1
	flagLeaving  = 1 << 2
	flagSyncPend = 1 << 3
	knownFlags   = flagOverride | flagFailover | flagLeaving | flagSyncPend
)

// ErrMalformed is returned for a payload that is not a valid heartbeat.
var ErrMalformed = errors.New("malformed heartbeat")

// Encode appends hb's wire form to dst.
func Encode(dst []byte, hb cluster.Heartbeat) []byte {
	var b [fixedLen]byte
	b[0] = version
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
	return append(dst, elected...)
}

// Decode parses a heartbeat payload. It never panics and allocates only the
// elected node id.
func Decode(p []byte) (cluster.Heartbeat, error) {
	var hb cluster.Heartbeat
	if len(p) < fixedLen {
		return hb, fmt.Errorf("%w: %d bytes", ErrMalformed, len(p))
	}
	if p[0] != version {
		return hb, fmt.Errorf("%w: version %d", ErrMalformed, p[0])
	}
	role := cluster.Role(p[1])
	if role > cluster.Primary {
		return hb, fmt.Errorf("%w: role %d", ErrMalformed, p[1])
	}
	if p[2]&^knownFlags != 0 {
		return hb, fmt.Errorf("%w: flags %#x", ErrMalformed, p[2])
	}
	if p[4] > p[5] {
		return hb, fmt.Errorf("%w: %d of %d monitored links up", ErrMalformed, p[4], p[5])
	}
	n := int(p[7])
	if n > seal.MaxSenderLen || len(p) != fixedLen+n {
		return hb, fmt.Errorf("%w: elected id length %d in %d bytes", ErrMalformed, n, len(p))
	}
	up := binary.BigEndian.Uint64(p[8:16])
	if up > uint64(100*365*24*time.Hour/time.Millisecond) {
		return hb, fmt.Errorf("%w: uptime %d ms", ErrMalformed, up)
	}
	hb = cluster.Heartbeat{
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
		Elected:        string(p[fixedLen:]),
	}
	return hb, nil
}

func clamp(v, lo, hi int) int { return min(max(v, lo), hi) }
