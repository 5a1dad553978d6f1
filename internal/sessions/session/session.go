// Package session owns the value that session pickup moves between cluster
// members: one connection-tracking entry with everything the kernel needs to
// resume it under strict TCP tracking, as a fixed-size, pointer-free struct
// that can key a map and be copied cheaply. The backends (kernel, memory), the
// wire format and the engine all speak this type.
package session

import (
	"fmt"
	"net/netip"
)

// Address families, as in the kernel (AF_INET, AF_INET6).
const (
	FamilyIPv4 uint8 = 2
	FamilyIPv6 uint8 = 10
)

// IP protocol numbers the engine treats specially.
const (
	ProtoICMP    uint8 = 1
	ProtoTCP     uint8 = 6
	ProtoUDP     uint8 = 17
	ProtoDCCP    uint8 = 33
	ProtoGRE     uint8 = 47
	ProtoICMPv6  uint8 = 58
	ProtoSCTP    uint8 = 132
	ProtoUDPLite uint8 = 136
)

// Conntrack status bits (enum ip_conntrack_status) that the engine reads.
const (
	StatusExpected     uint32 = 1 << 0
	StatusSeenReply    uint32 = 1 << 1
	StatusAssured      uint32 = 1 << 2
	StatusConfirmed    uint32 = 1 << 3
	StatusSrcNAT       uint32 = 1 << 4
	StatusDstNAT       uint32 = 1 << 5
	StatusFixedTimeout uint32 = 1 << 10
	StatusDying        uint32 = 1 << 9
)

// TCP conntrack states (enum tcp_conntrack).
const (
	TCPNone uint8 = iota
	TCPSynSent
	TCPSynRecv
	TCPEstablished
	TCPFinWait
	TCPCloseWait
	TCPLastAck
	TCPTimeWait
	TCPClose
	TCPSynSent2
	TCPMax
)

var tcpStateNames = [...]string{"NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2"}

// TCPStateName returns the conntrack name of a TCP state.
func TCPStateName(s uint8) string {
	if int(s) < len(tcpStateNames) {
		return tcpStateNames[s]
	}
	return fmt.Sprintf("STATE_%d", s)
}

// TCPFlagWindowScale is IP_CT_TCP_FLAG_WINDOW_SCALE: the kernel ignores the
// window scales of an entry unless this flag is set for both directions.
const TCPFlagWindowScale uint8 = 0x01

// Tuple is one direction of a connection. Addresses are 16 bytes; IPv4 ones
// are stored IPv4-mapped (::ffff:a.b.c.d). For ICMP and ICMPv6 SrcPort holds
// the identifier and DstPort type<<8|code.
type Tuple struct {
	Src, Dst         [16]byte
	SrcPort, DstPort uint16
}

// Invert returns the tuple of the other direction without NAT.
func (t Tuple) Invert(proto uint8) Tuple {
	r := Tuple{Src: t.Dst, Dst: t.Src, SrcPort: t.DstPort, DstPort: t.SrcPort}
	if proto == ProtoICMP || proto == ProtoICMPv6 {
		typ, code := uint8(t.DstPort>>8), uint8(t.DstPort)
		r.SrcPort = t.SrcPort
		r.DstPort = uint16(icmpReplyType(proto, typ))<<8 | uint16(code)
	}
	return r
}

// icmpReplyType maps an ICMP query type to its reply type, as the kernel's
// invmap does.
func icmpReplyType(proto, typ uint8) uint8 {
	if proto == ProtoICMP {
		switch typ {
		case 8:
			return 0
		case 0:
			return 8
		case 13:
			return 14
		case 14:
			return 13
		case 15:
			return 16
		case 16:
			return 15
		case 17:
			return 18
		case 18:
			return 17
		}
		return typ
	}
	switch typ {
	case 128:
		return 129
	case 129:
		return 128
	case 130:
		return 131
	case 131:
		return 130
	}
	return typ
}

// SrcAddr returns the source address in its family's form.
func (t Tuple) SrcAddr() netip.Addr { return netip.AddrFrom16(t.Src).Unmap() }

// DstAddr returns the destination address in its family's form.
func (t Tuple) DstAddr() netip.Addr { return netip.AddrFrom16(t.Dst).Unmap() }

// Addr16 returns a in the 16-byte form Tuple stores.
func Addr16(a netip.Addr) [16]byte { return a.As16() } // As16 maps IPv4

// Key identifies a session: what the kernel looks an entry up by (zone and
// original tuple), plus family and protocol. It is comparable and 40 bytes.
type Key struct {
	Family uint8
	Proto  uint8
	Zone   uint16
	Orig   Tuple
}

// TCPFlagBeLiberal is IP_CT_TCP_FLAG_BE_LIBERAL: the kernel accepts the
// direction's segments outside the window it tracks (out-of-window RSTs
// excepted).
const TCPFlagBeLiberal = 0x08

// TCPInfo is the TCP protocol state of an entry. Flags are the per-direction
// IP_CT_TCP_FLAG_* bits.
type TCPInfo struct {
	State       uint8
	WScaleOrig  uint8
	WScaleReply uint8
	FlagsOrig   uint8
	FlagsReply  uint8
}

// Session is one connection-tracking entry.
type Session struct {
	Key
	Reply   Tuple
	Status  uint32
	Timeout uint32 // seconds left
	Mark    uint32
	Labels  [16]byte
	TCP     TCPInfo
	// Helper is the conntrack helper attached to the entry (FTP's control
	// connection has "ftp"): the expectations it creates need it on the
	// subordinate's copy too. Synced only with expectations.
	Helper Name
}

// IsNAT reports whether the reply tuple is not the plain inverse of the
// original one, i.e. the entry carries a NAT mapping.
func (s *Session) IsNAT() bool { return s.Reply != s.Orig.Invert(s.Proto) }

// HasPorts reports whether the protocol's tuples carry ports.
func HasPorts(proto uint8) bool {
	switch proto {
	case ProtoTCP, ProtoUDP, ProtoUDPLite, ProtoSCTP, ProtoDCCP, ProtoGRE:
		return true
	}
	return false
}

// IsICMP reports whether proto is ICMP or ICMPv6.
func IsICMP(proto uint8) bool { return proto == ProtoICMP || proto == ProtoICMPv6 }

// ProtoName names the protocols the engine counts separately.
func ProtoName(p uint8) string {
	switch p {
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	case ProtoICMP:
		return "icmp"
	case ProtoICMPv6:
		return "icmpv6"
	case ProtoSCTP:
		return "sctp"
	case ProtoDCCP:
		return "dccp"
	case ProtoGRE:
		return "gre"
	case ProtoUDPLite:
		return "udplite"
	}
	return fmt.Sprintf("proto-%d", p)
}

func (t Tuple) format(proto uint8) string {
	if IsICMP(proto) {
		return fmt.Sprintf("%s -> %s id=%d type=%d code=%d", t.SrcAddr(), t.DstAddr(), t.SrcPort, t.DstPort>>8, t.DstPort&0xff)
	}
	return fmt.Sprintf("%s -> %s", netip.AddrPortFrom(t.SrcAddr(), t.SrcPort), netip.AddrPortFrom(t.DstAddr(), t.DstPort))
}

func (k Key) String() string {
	return fmt.Sprintf("%s zone=%d %s", ProtoName(k.Proto), k.Zone, k.Orig.format(k.Proto))
}

func (s Session) String() string {
	str := fmt.Sprintf("%s reply %s status=%#x timeout=%d mark=%#x", s.Key, s.Reply.format(s.Proto), s.Status, s.Timeout, s.Mark)
	if s.Proto == ProtoTCP {
		str += fmt.Sprintf(" %s wscale=%d/%d flags=%#x/%#x", TCPStateName(s.TCP.State), s.TCP.WScaleOrig, s.TCP.WScaleReply, s.TCP.FlagsOrig, s.TCP.FlagsReply)
	}
	return str
}

// Op is what a Change does.
type Op uint8

const (
	// Upsert creates the entry or updates it in place.
	Upsert Op = 1
	// Delete removes the entry; deleting a missing entry is not an error.
	Delete Op = 2
)

// Change is one entry to install, update or remove. For Delete only the Key
// is used.
type Change struct {
	Op Op
	// Exists hints that the entry is probably installed already, so a
	// backend tries an update before a create. Wrong hints cost a retry.
	Exists  bool
	Session Session
}

// ApplyError is a backend's report that some changes of a batch were not
// applied while the others were: Failed holds their indices in the batch
// (ascending), Err the first cause. Any other error from Apply leaves
// every change of the batch in doubt.
type ApplyError struct {
	Failed []int
	Err    error
}

func (e *ApplyError) Error() string {
	return fmt.Sprintf("%d of the changes not applied: %v", len(e.Failed), e.Err)
}

func (e *ApplyError) Unwrap() error { return e.Err }

// EventKind says what happened to an entry in a backend's table.
type EventKind uint8

const (
	EventNew EventKind = iota + 1
	EventUpdate
	EventDestroy
	// EventOverflow: events were lost (the kernel's socket overflowed); the
	// table must be dumped again. Session is unset.
	EventOverflow
)

func (k EventKind) String() string {
	switch k {
	case EventNew:
		return "new"
	case EventUpdate:
		return "update"
	case EventDestroy:
		return "destroy"
	case EventOverflow:
		return "overflow"
	}
	return fmt.Sprintf("event(%d)", uint8(k))
}

// Event is one notification from a backend's table.
type Event struct {
	Kind    EventKind
	Session Session
}
