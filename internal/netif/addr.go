package netif

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// dumpAttempts bounds the retries of an address dump that the kernel marked
// inconsistent (an address changed while it was being listed).
const dumpAttempts = 3

// AddAddress puts the address p (address and prefix length, e.g.
// 192.0.2.10/24) on ifname. IPv6 addresses skip duplicate address detection
// (see the package doc) so they are usable at once. An address already there
// with the same prefix length is not an error.
func (h *Handle) AddAddress(ifname string, p netip.Prefix) error {
	p, err := normPrefix(p)
	if err != nil {
		return fmt.Errorf("add %s to %s: %w", p, ifname, err)
	}
	l, err := h.link(ifname)
	if err != nil {
		return fmt.Errorf("add %s to %s: %w", p, ifname, err)
	}
	a := &netlink.Addr{IPNet: ipNet(p)}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	err = h.nl.AddrAdd(l, a)
	if errors.Is(err, unix.EEXIST) {
		// IPv6 refuses a second prefix length for the same address with
		// EEXIST too: only an exact match counts as done.
		has, herr := h.hasAddress(l, p)
		switch {
		case herr != nil:
			err = herr
		case has:
			return nil
		default:
			err = fmt.Errorf("present with another prefix length: %w", err)
		}
	}
	if err != nil {
		return fmt.Errorf("add %s to %s: %w", p, ifname, err)
	}
	return nil
}

// DelAddress removes the address p from ifname. An absent address is not an
// error; a missing interface is (ErrNoInterface), because it usually means a
// configuration mistake rather than work already done.
func (h *Handle) DelAddress(ifname string, p netip.Prefix) error {
	p, err := normPrefix(p)
	if err != nil {
		return fmt.Errorf("del %s from %s: %w", p, ifname, err)
	}
	l, err := h.link(ifname)
	if err != nil {
		return fmt.Errorf("del %s from %s: %w", p, ifname, err)
	}
	err = h.nl.AddrDel(l, &netlink.Addr{IPNet: ipNet(p)})
	if err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
		return fmt.Errorf("del %s from %s: %w", p, ifname, err)
	}
	return nil
}

// HasAddress reports whether ifname holds the address p with p's prefix
// length.
func (h *Handle) HasAddress(ifname string, p netip.Prefix) (bool, error) {
	p, err := normPrefix(p)
	if err != nil {
		return false, fmt.Errorf("look for %s on %s: %w", p, ifname, err)
	}
	l, err := h.link(ifname)
	if err != nil {
		return false, fmt.Errorf("look for %s on %s: %w", p, ifname, err)
	}
	has, err := h.hasAddress(l, p)
	if err != nil {
		return false, fmt.Errorf("look for %s on %s: %w", p, ifname, err)
	}
	return has, nil
}

func (h *Handle) hasAddress(l netlink.Link, p netip.Prefix) (bool, error) {
	family := netlink.FAMILY_V4
	if p.Addr().Is6() {
		family = netlink.FAMILY_V6
	}
	addrs, err := h.addrList(l, family)
	if err != nil {
		return false, err
	}
	for _, a := range addrs {
		if q, ok := prefixOf(a.IPNet); ok && q == p {
			return true, nil
		}
	}
	return false, nil
}

// LocalAddrs returns every address on every interface of the namespace,
// without zones, sorted and without duplicates. Conntrack entries carry no
// zone either, which is what this list is matched against.
func (h *Handle) LocalAddrs() ([]netip.Addr, error) {
	addrs, err := h.addrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list local addresses: %w", err)
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if p, ok := prefixOf(a.IPNet); ok {
			out = append(out, p.Addr())
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out), nil
}

// addrList dumps addresses (of one link, or all when l is nil), retrying a
// dump the kernel reports as interrupted.
func (h *Handle) addrList(l netlink.Link, family int) ([]netlink.Addr, error) {
	var err error
	for range dumpAttempts {
		var addrs []netlink.Addr
		addrs, err = h.nl.AddrList(l, family)
		if err == nil {
			return addrs, nil
		}
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return nil, err
		}
	}
	return nil, err
}

// normPrefix checks p and strips what the kernel does not take: a zone, and
// the IPv4-in-IPv6 mapping.
func normPrefix(p netip.Prefix) (netip.Prefix, error) {
	if !p.IsValid() {
		return p, errors.New("invalid prefix")
	}
	a := p.Addr().WithZone("")
	bits := p.Bits()
	if a.Is4In6() {
		if bits < 96 {
			return p, errors.New("IPv4-mapped prefix shorter than /96")
		}
		a, bits = a.Unmap(), bits-96
	}
	return netip.PrefixFrom(a, bits), nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{
		IP:   p.Addr().AsSlice(),
		Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen()),
	}
}

// prefixOf converts the kernel's view of an address back to a prefix that
// keeps the host bits.
func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	ones, bits := n.Mask.Size()
	if bits == 0 || (bits == 32) != a.Is4() {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, ones), true
}
