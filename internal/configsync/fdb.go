package configsync

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/hagate/hagate/internal/checksum"
	"github.com/hagate/hagate/internal/netif"
)

// Transparent mode's forwarding database: the subordinates' bridge ports
// learn nothing (they are fenced), so the addresses a new primary must
// announce to the switches (netif.Relearn) come from the old primary. The
// subordinates fetch its learnt addresses with OpFDB every few seconds;
// the body is the entries one after another:
//
//	mac (6), port name length (1), port name
//
// The port is the primary's name for it: the members' transparent
// sections are part of the cluster-wide configuration checksum, so the
// names agree wherever the configuration does.

// maxPortName is the longest interface name Linux allows (IFNAMSIZ - 1).
const maxPortName = 15

// AppendFDB encodes entries; an entry whose MAC is not 6 bytes or whose
// port name does not fit an interface name is an error.
func AppendFDB(dst []byte, entries []netif.FDBEntry) ([]byte, error) {
	for _, e := range entries {
		if len(e.MAC) != 6 || len(e.Port) == 0 || len(e.Port) > maxPortName {
			return dst, fmt.Errorf("forwarding database entry %s on %q cannot be encoded", e.MAC, e.Port)
		}
		dst = append(dst, e.MAC...)
		dst = append(dst, byte(len(e.Port)))
		dst = append(dst, e.Port...)
	}
	return dst, nil
}

// ParseFDB decodes a forwarding database; the entries do not alias b.
func ParseFDB(b []byte) ([]netif.FDBEntry, error) {
	var out []netif.FDBEntry
	for len(b) > 0 {
		if len(b) < 7 {
			return nil, fmt.Errorf("%w: forwarding database entry of %d bytes", ErrMalformed, len(b))
		}
		n := int(b[6])
		if n == 0 || n > maxPortName || len(b) < 7+n {
			return nil, fmt.Errorf("%w: forwarding database port name of %d bytes", ErrMalformed, n)
		}
		out = append(out, netif.FDBEntry{MAC: net.HardwareAddr(append([]byte(nil), b[:6]...)), Port: string(b[7 : 7+n])})
		b = b[7+n:]
	}
	return out, nil
}

// FetchFDB asks the member at addr for its bridge's learnt addresses.
func (p *Peer) FetchFDB(ctx context.Context, addr netip.Addr) ([]netif.FDBEntry, error) {
	resp, err := p.Fetch(ctx, addr, OpFDB, 0)
	if err != nil {
		return nil, err
	}
	if checksum.Of(resp.Body) != resp.Sum {
		return nil, fmt.Errorf("config sync: %w: forwarding database checksum", ErrMalformed)
	}
	return ParseFDB(resp.Body)
}
