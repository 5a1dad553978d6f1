package heartbeat

import (
	"encoding/binary"
	"fmt"

	"github.com/hagate/hagate/internal/checksum"
	"github.com/hagate/hagate/internal/cluster"
)

// appendConfigFields writes the configuration checksums (the parts known)
// and state fields.
func appendConfigFields(dst []byte, hb cluster.Heartbeat) []byte {
	n := 0
	for _, v := range hb.Checksums {
		if v != 0 {
			n++
		}
	}
	if n > 0 {
		dst = append(dst, fieldChecksums, byte(9*n))
		for part, v := range hb.Checksums {
			if v != 0 {
				dst = append(dst, byte(part))
				dst = binary.BigEndian.AppendUint64(dst, v)
			}
		}
	}
	if hb.ConfigPending {
		dst = append(dst, fieldConfig, 1, configPending)
	}
	return dst
}

// decodeConfigField reads the configuration fields into hb (other types are
// left alone). Parts beyond checksum.MaxPart, of a later release, are
// skipped.
func decodeConfigField(hb *cluster.Heartbeat, typ byte, val []byte) error {
	switch typ {
	case fieldChecksums:
		if len(val)%9 != 0 {
			return fmt.Errorf("%w: checksums field of %d bytes", ErrMalformed, len(val))
		}
		var seen [256]bool
		for i := 0; i < len(val); i += 9 {
			part, v := val[i], binary.BigEndian.Uint64(val[i+1:])
			if part == 0 || v == 0 || seen[part] {
				return fmt.Errorf("%w: checksum of part %d repeated or zero", ErrMalformed, part)
			}
			seen[part] = true
			if int(part) <= checksum.MaxPart {
				hb.Checksums[part] = v
			}
		}
	case fieldConfig:
		// Later releases may add bits: this one reads its own.
		if len(val) < 1 {
			return fmt.Errorf("%w: empty configuration state field", ErrMalformed)
		}
		hb.ConfigPending = val[0]&configPending != 0
	}
	return nil
}
