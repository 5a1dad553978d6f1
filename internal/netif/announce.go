package netif

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// writeTimeout bounds one frame's send, should the device's queue be full.
const writeTimeout = time.Second

// allNodes is where unsolicited neighbour advertisements go (RFC 4861 7.2.6).
var allNodes = netip.MustParseAddr("ff02::1")

// Announce tells the segment on ifname that addr is now reached at ifname's
// MAC: for IPv4 a broadcast gratuitous ARP, once as a request and once as a
// reply (see the package doc); for IPv6 an unsolicited neighbour
// advertisement to all nodes with the Override flag and the target
// link-layer address option. One call sends once; [Announcer] repeats.
func (h *Handle) Announce(ifname string, addr netip.Addr) error {
	addr = addr.Unmap()
	if err := h.announce(ifname, addr); err != nil {
		return fmt.Errorf("announce %s on %s: %w", addr, ifname, err)
	}
	return nil
}

func (h *Handle) announce(ifname string, addr netip.Addr) error {
	if !addr.IsValid() || addr.IsUnspecified() || addr.IsMulticast() {
		return errors.New("not a unicast address")
	}
	l, err := h.link(ifname)
	if err != nil {
		return err
	}
	ifi := stdInterface(l)
	if len(ifi.HardwareAddr) != 6 {
		return fmt.Errorf("interface has no Ethernet address (%q)", ifi.HardwareAddr)
	}
	if addr.Is4() {
		frames, err := garpFrames(ifi.HardwareAddr, addr)
		if err != nil {
			return err
		}
		return h.do(func() error { return sendFrames(ifi, frames) })
	}
	return h.do(func() error { return sendNA(ifi, addr.WithZone("")) })
}

// garpFrames builds the two gratuitous ARP frames for addr at mac: a request
// in the RFC 5227 announcement form (target hardware address zero) and a
// reply whose target hardware address is the sender's, which is what Linux
// and RFC 2002 section 4.6 require of a gratuitous reply. Both are broadcast
// with sender and target IP set to addr.
func garpFrames(mac net.HardwareAddr, addr netip.Addr) ([][]byte, error) {
	req, err := arp.NewPacket(arp.OperationRequest, mac, addr, make(net.HardwareAddr, len(mac)), addr)
	if err != nil {
		return nil, fmt.Errorf("build ARP request: %w", err)
	}
	rep, err := arp.NewPacket(arp.OperationReply, mac, addr, mac, addr)
	if err != nil {
		return nil, fmt.Errorf("build ARP reply: %w", err)
	}
	var frames [][]byte
	for _, p := range []*arp.Packet{req, rep} {
		pb, err := p.MarshalBinary()
		if err != nil {
			return nil, fmt.Errorf("marshal ARP: %w", err)
		}
		f := &ethernet.Frame{
			Destination: ethernet.Broadcast,
			Source:      mac,
			EtherType:   ethernet.EtherTypeARP,
			Payload:     pb,
		}
		fb, err := f.MarshalBinary()
		if err != nil {
			return nil, fmt.Errorf("marshal Ethernet frame: %w", err)
		}
		frames = append(frames, fb)
	}
	return frames, nil
}

// sendFrames writes whole Ethernet frames on ifi through a packet socket. It
// must run inside Handle.do.
func sendFrames(ifi *net.Interface, frames [][]byte) error {
	c, err := packet.Listen(ifi, packet.Raw, unix.ETH_P_ARP, nil)
	if err != nil {
		return fmt.Errorf("open packet socket: %w", err)
	}
	defer c.Close()
	if err := c.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
		return fmt.Errorf("set write deadline: %w", err)
	}
	for _, f := range frames {
		if _, err := c.WriteTo(f, &packet.Addr{HardwareAddr: ethernet.Broadcast}); err != nil {
			return fmt.Errorf("send frame: %w", err)
		}
	}
	return nil
}

// unsolicitedNA builds the advertisement for addr at mac. Router must reflect
// whether this node forwards: RFC 4861 7.2.5 makes hosts drop a neighbour
// from their default router list when an advertisement clears the flag.
func unsolicitedNA(addr netip.Addr, mac net.HardwareAddr, router bool) *ndp.NeighborAdvertisement {
	return &ndp.NeighborAdvertisement{
		Router:        router,
		Solicited:     false,
		Override:      true,
		TargetAddress: addr,
		Options: []ndp.Option{
			&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: mac},
		},
	}
}

// sendNA sends the unsolicited advertisement for addr on ifi, from addr
// itself when it is on the interface (as it is for a virtual IP, usable at
// once thanks to NODAD), else from the interface's link-local address. It
// must run inside Handle.do.
func sendNA(ifi *net.Interface, addr netip.Addr) error {
	c, _, err := ndp.Listen(ifi, ndp.Addr(addr.String()))
	if err != nil {
		var errLL error
		c, _, errLL = ndp.Listen(ifi, ndp.LinkLocal)
		if errLL != nil {
			return fmt.Errorf("open ICMPv6 socket: %w", errors.Join(err, errLL))
		}
	}
	defer c.Close()
	// The socket only sends: keep it from queueing every ICMPv6 message
	// that arrives meanwhile.
	var block ipv6.ICMPFilter
	block.SetAll(true)
	if err := c.SetICMPFilter(&block); err != nil {
		return fmt.Errorf("set ICMPv6 filter: %w", err)
	}
	if err := c.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
		return fmt.Errorf("set write deadline: %w", err)
	}
	na := unsolicitedNA(addr, ifi.HardwareAddr, ipv6Forwarding(ifi.Name))
	if err := c.WriteTo(na, nil, allNodes); err != nil {
		return fmt.Errorf("send neighbour advertisement: %w", err)
	}
	return nil
}

// ipv6Forwarding reports whether ifname forwards IPv6, from the sysctl of the
// calling thread's namespace (so inside Handle.do). Unreadable means no.
func ipv6Forwarding(ifname string) bool {
	b, err := os.ReadFile("/proc/sys/net/ipv6/conf/" + ifname + "/forwarding")
	return err == nil && bytes.Equal(bytes.TrimSpace(b), []byte("1"))
}
