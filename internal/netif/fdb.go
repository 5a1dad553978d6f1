package netif

import (
	"fmt"
	"net"
	"slices"

	"github.com/mdlayher/ethernet"
	"golang.org/x/sys/unix"
)

// Transparent mode's relearning: after a failover the switches on each
// side of the bridge still send the hosts' frames toward the old primary's
// ports. The new primary sends, out of each of its ports, one frame from
// every MAC address its bridge's forwarding database placed behind another
// port, so each switch moves those addresses to the port facing the new
// primary at once (what a FortiGate does in transparent mode), instead of
// waiting for its ageing time or for the hosts to broadcast.

// RelearnEtherType marks the relearning frames: IEEE 802's Local
// Experimental Ethertype 1, which no host protocol reads. The frames are
// broadcast, so a switch learns their source whatever it knows of the
// destination, and every host drops them.
const RelearnEtherType ethernet.EtherType = 0x88b5

// FDBEntry is a MAC address a bridge learnt, and the port behind which.
type FDBEntry struct {
	MAC  net.HardwareAddr `json:"mac"`
	Port string           `json:"port"`
}

// LearnedFDB lists the MAC addresses bridge learnt on its ports: neither
// its own nor static entries, only what it would forward to.
func (h *Handle) LearnedFDB(bridge string) ([]FDBEntry, error) {
	br, err := h.link(bridge)
	if err != nil {
		return nil, fmt.Errorf("bridge forwarding database: %w", err)
	}
	neighs, err := h.nl.NeighList(0, unix.AF_BRIDGE)
	if err != nil {
		return nil, fmt.Errorf("bridge %s forwarding database: %w", bridge, err)
	}
	names := map[int]string{}
	var out []FDBEntry
	for _, n := range neighs {
		if n.MasterIndex != br.Attrs().Index || n.State&(unix.NUD_PERMANENT|unix.NUD_NOARP) != 0 || len(n.HardwareAddr) != 6 || n.Vlan > 1 {
			continue
		}
		name, ok := names[n.LinkIndex]
		if !ok {
			l, err := h.nl.LinkByIndex(n.LinkIndex)
			if err != nil {
				continue // the port left the bridge since
			}
			name = l.Attrs().Name
			names[n.LinkIndex] = name
		}
		out = append(out, FDBEntry{MAC: n.HardwareAddr, Port: name})
	}
	return out, nil
}

// Relearn sends out of each port one broadcast frame from every address of
// fdb learnt behind another of the ports. An address is never sent out of
// its own port: that switch would then place the host behind this member,
// away from the host. It returns how many frames were sent.
func (h *Handle) Relearn(ports []string, fdb []FDBEntry) (int, error) {
	sent := 0
	for _, port := range ports {
		var frames [][]byte
		for _, e := range fdb {
			if e.Port == port || !slices.Contains(ports, e.Port) {
				continue
			}
			f := &ethernet.Frame{Destination: ethernet.Broadcast, Source: e.MAC, EtherType: RelearnEtherType, Payload: make([]byte, 46)}
			b, err := f.MarshalBinary()
			if err != nil {
				return sent, fmt.Errorf("relearn frame from %s: %w", e.MAC, err)
			}
			frames = append(frames, b)
		}
		if len(frames) == 0 {
			continue
		}
		l, err := h.link(port)
		if err != nil {
			return sent, fmt.Errorf("relearn: %w", err)
		}
		ifi := stdInterface(l)
		if err := h.do(func() error { return sendFrames(ifi, frames) }); err != nil {
			return sent, fmt.Errorf("relearn on %s: %w", port, err)
		}
		sent += len(frames)
	}
	return sent, nil
}
