package netif

import (
	"bytes"
	"fmt"
	"net"
)

// VirtualMAC returns the FGCP-style virtual MAC of interface number index in
// cluster group group: 00:09:0f:09:<group>:<index>.
//
// Groups 0..255 give exactly that. Group ids go up to 1023; the two high bits
// of a larger group go into the high nibble of the fourth byte, so group
// 0x1a5 gives 00:09:0f:19:a5:<index> and no two groups in 0..1023 share a
// MAC. Callers validate their ranges; out-of-range values are masked to
// their low bits (group to 10, index to 8) rather than rejected.
func VirtualMAC(group, index int) net.HardwareAddr {
	g := uint(group) & 0x3ff
	return net.HardwareAddr{0x00, 0x09, 0x0f, byte(0x09 | (g>>8)<<4), byte(g), byte(uint(index))}
}

// SetMAC sets ifname's MAC address to mac and returns the one it had, so the
// caller can put it back when the node stops being primary. Setting the
// address it already has does nothing. Some drivers refuse a change while
// the link is up; SetMAC does not take the link down for them.
func (h *Handle) SetMAC(ifname string, mac net.HardwareAddr) (previous net.HardwareAddr, err error) {
	l, err := h.link(ifname)
	if err != nil {
		return nil, fmt.Errorf("set MAC %s on %s: %w", mac, ifname, err)
	}
	prev := bytes.Clone(l.Attrs().HardwareAddr)
	if len(mac) != len(prev) {
		return nil, fmt.Errorf("set MAC %s on %s: %d bytes long, the interface takes %d",
			mac, ifname, len(mac), len(prev))
	}
	if bytes.Equal(mac, prev) {
		return prev, nil
	}
	if err := h.nl.LinkSetHardwareAddr(l, mac); err != nil {
		return nil, fmt.Errorf("set MAC %s on %s: %w", mac, ifname, err)
	}
	return prev, nil
}
