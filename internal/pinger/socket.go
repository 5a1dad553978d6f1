package pinger

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// sockKind is the kind of ICMP socket a target uses.
type sockKind uint8

const (
	// sockDgram is an ICMP datagram ("ping") socket: no privilege needed
	// when net.ipv4.ping_group_range includes our group, the kernel picks the
	// identifier and hands us only the replies to it.
	sockDgram sockKind = iota
	// sockRaw is a raw ICMP socket (CAP_NET_RAW). It sees every echo reply
	// arriving on its interface, so replies are matched by identifier.
	sockRaw
)

func (k sockKind) String() string {
	if k == sockDgram {
		return "icmp-dgram"
	}
	return "raw"
}

// defaultKinds is the order in which socket kinds are tried: datagram
// sockets first, raw sockets when ping_group_range does not allow them (its
// default, "1 0", refuses even root).
var defaultKinds = []sockKind{sockDgram, sockRaw}

// conn is what a probe needs of an ICMP socket. The real one is sock; tests
// put a fake in its place.
type conn interface {
	// id is the identifier that replies to our requests carry.
	id() uint16
	kind() sockKind
	// ipHeader reports that received datagrams start with an IPv4 header.
	ipHeader() bool
	writeTo(b []byte, dst netip.Addr) error
	// readFrom returns os.ErrDeadlineExceeded once deadline passes, and
	// os.ErrClosed (wrapped) once close was called.
	readFrom(b []byte, deadline time.Time) (n int, src netip.Addr, err error)
	close() error
}

// sock is an ICMP socket bound to one interface. Its descriptor is in Go's
// poller, so reads honour deadlines and close wakes a blocked read.
type sock struct {
	f     *os.File
	rc    syscall.RawConn
	k     sockKind
	ident uint16
	v6    bool
	zone  uint32 // scope of a link-local IPv6 target
}

// openConn opens a socket for t, trying the kinds in order. It moves on to
// the next kind only when the kernel refuses to create the socket, not when
// the interface is missing; that error is then the one returned.
func openConn(t Target, kinds []sockKind) (conn, error) {
	var refused []error
	for _, k := range kinds {
		s, created, err := openSock(t, k)
		if err == nil {
			return s, nil
		}
		if created {
			return nil, err
		}
		refused = append(refused, err)
	}
	if len(refused) == 0 {
		return nil, errors.New("no ICMP socket kind to try")
	}
	return nil, errors.Join(refused...)
}

// openSock opens one socket of kind k for t. created reports whether the
// socket itself was created, that is whether the error came later.
func openSock(t Target, k sockKind) (_ *sock, created bool, err error) {
	v6 := t.Addr.Is6()
	family, proto := unix.AF_INET, unix.IPPROTO_ICMP
	if v6 {
		family, proto = unix.AF_INET6, unix.IPPROTO_ICMPV6
	}
	typ := unix.SOCK_DGRAM
	if k == sockRaw {
		typ = unix.SOCK_RAW
	}
	fd, err := unix.Socket(family, typ|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return nil, false, fmt.Errorf("open %s ICMP socket for %s: %w", k, t.Addr, err)
	}
	owned := true // until the os.File takes the descriptor
	defer func() {
		if owned {
			unix.Close(fd)
		}
	}()
	s := &sock{k: k, v6: v6}
	if t.Interface != "" {
		if err := unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, t.Interface); err != nil {
			return nil, true, fmt.Errorf("bind %s ICMP socket to %s: %w", k, t.Interface, err)
		}
	}
	if s.zone, err = scope(t); err != nil {
		return nil, true, err
	}
	switch k {
	case sockDgram:
		// The kernel assigns the identifier when the socket is bound (it
		// rewrites it in what we send) and reports it as the local port.
		var sa unix.Sockaddr = &unix.SockaddrInet4{}
		if v6 {
			sa = &unix.SockaddrInet6{}
		}
		if err := unix.Bind(fd, sa); err != nil {
			return nil, true, fmt.Errorf("bind ICMP datagram socket: %w", err)
		}
		local, err := unix.Getsockname(fd)
		if err != nil {
			return nil, true, fmt.Errorf("ICMP datagram socket name: %w", err)
		}
		switch a := local.(type) {
		case *unix.SockaddrInet4:
			s.ident = uint16(a.Port)
		case *unix.SockaddrInet6:
			s.ident = uint16(a.Port)
		}
	case sockRaw:
		// A random identifier: several pingers (ours and others) may share
		// the interface, and each raw socket sees every reply.
		s.ident = uint16(rand.Uint32())
		if err := rawFilter(fd, v6); err != nil {
			return nil, true, err
		}
	}
	s.f = os.NewFile(uintptr(fd), "icmp:"+t.Addr.String())
	owned = false
	if s.rc, err = s.f.SyscallConn(); err != nil {
		s.f.Close()
		return nil, true, fmt.Errorf("ICMP socket: %w", err)
	}
	return s, true, nil
}

// rawFilter asks the kernel to deliver only echo replies to a raw socket,
// so a busy interface does not wake us for every ICMP message. The parser
// still checks the type: the filter is an optimisation.
func rawFilter(fd int, v6 bool) error {
	if v6 {
		var f unix.ICMPv6Filter // a set bit blocks the type
		for i := range f.Data {
			f.Data[i] = ^uint32(0)
		}
		f.Data[typeEchoReply6>>5] &^= 1 << (typeEchoReply6 & 31)
		if err := unix.SetsockoptICMPv6Filter(fd, unix.IPPROTO_ICMPV6, unix.ICMPV6_FILTER, &f); err != nil {
			return fmt.Errorf("set ICMPv6 filter: %w", err)
		}
		return nil
	}
	// struct icmp_filter: one 32-bit mask in host order, a set bit blocks.
	mask := binary.NativeEndian.AppendUint32(nil, ^uint32(1<<typeEchoReply4))
	if err := unix.SetsockoptString(fd, unix.SOL_RAW, unix.ICMP_FILTER, string(mask)); err != nil {
		return fmt.Errorf("set ICMP filter: %w", err)
	}
	return nil
}

// scope returns the interface index a link-local IPv6 target needs: its
// zone if it has one, else the target's interface.
func scope(t Target) (uint32, error) {
	a := t.Addr
	if !a.Is6() || !(a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast()) {
		return 0, nil
	}
	name := a.Zone()
	if name == "" {
		name = t.Interface
	}
	if name == "" {
		return 0, fmt.Errorf("link-local target %s needs an interface", a)
	}
	if n, err := strconv.ParseUint(name, 10, 32); err == nil {
		return uint32(n), nil
	}
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return 0, fmt.Errorf("scope of %s: %w", a, err)
	}
	return uint32(ifi.Index), nil
}

func (s *sock) id() uint16     { return s.ident }
func (s *sock) kind() sockKind { return s.k }
func (s *sock) ipHeader() bool { return s.k == sockRaw && !s.v6 }
func (s *sock) close() error   { return s.f.Close() }

func (s *sock) writeTo(b []byte, dst netip.Addr) error {
	var sa unix.Sockaddr
	if s.v6 {
		sa = &unix.SockaddrInet6{Addr: dst.As16(), ZoneId: s.zone}
	} else {
		sa = &unix.SockaddrInet4{Addr: dst.As4()}
	}
	var serr error
	err := s.rc.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), b, 0, sa)
		return serr != unix.EAGAIN
	})
	if err != nil {
		return err
	}
	return serr
}

func (s *sock) readFrom(b []byte, deadline time.Time) (int, netip.Addr, error) {
	if err := s.f.SetReadDeadline(deadline); err != nil {
		return 0, netip.Addr{}, err
	}
	var (
		n    int
		from unix.Sockaddr
		rerr error
	)
	err := s.rc.Read(func(fd uintptr) bool {
		n, from, rerr = unix.Recvfrom(int(fd), b, 0)
		return rerr != unix.EAGAIN && rerr != unix.EINTR
	})
	if err != nil {
		return 0, netip.Addr{}, err
	}
	if rerr != nil {
		return 0, netip.Addr{}, rerr
	}
	var src netip.Addr
	switch a := from.(type) {
	case *unix.SockaddrInet4:
		src = netip.AddrFrom4(a.Addr)
	case *unix.SockaddrInet6:
		src = netip.AddrFrom16(a.Addr)
	}
	return n, src, nil
}
