package conntrack

import (
	"encoding/binary"
	"fmt"

	"github.com/hagate/hagate/internal/sessions/session"
)

// ctnetlink attribute numbers (linux/netfilter/nfnetlink_conntrack.h).
const (
	ctaTupleOrig  = 1
	ctaTupleReply = 2
	ctaStatus     = 3
	ctaProtoinfo  = 4
	ctaNATSrc     = 6
	ctaTimeout    = 7
	ctaMark       = 8
	ctaNATDst     = 13
	ctaZone       = 18
	ctaLabels     = 22

	ctaTupleIP    = 1
	ctaTupleProto = 2
	ctaTupleZone  = 3

	ctaIPv4Src = 1
	ctaIPv4Dst = 2
	ctaIPv6Src = 3
	ctaIPv6Dst = 4

	ctaProtoNum      = 1
	ctaProtoSrcPort  = 2
	ctaProtoDstPort  = 3
	ctaProtoICMPID   = 4
	ctaProtoICMPType = 5
	ctaProtoICMPCode = 6
	ctaProtoICMP6ID  = 7
	ctaProtoICMP6Typ = 8
	ctaProtoICMP6Cod = 9

	ctaProtoinfoTCP      = 1
	ctaTCPState          = 1
	ctaTCPWScaleOrig     = 2
	ctaTCPWScaleReply    = 3
	ctaTCPFlagsOrig      = 4
	ctaTCPFlagsReply     = 5
	ctaNATV4MinIP        = 1
	ctaNATV4MaxIP        = 2
	ctaNATProto          = 3
	ctaNATV6MinIP        = 4
	ctaNATV6MaxIP        = 5
	ctaProtoNATPortMin   = 1
	ctaProtoNATPortMax   = 2
	settableStatus       = session.StatusSeenReply | session.StatusAssured | session.StatusFixedTimeout
	defaultCreateTimeout = 120
)

// parseFlow decodes a ctnetlink conntrack message (after the netlink header).
func parseFlow(data []byte) (session.Session, error) {
	var s session.Session
	err := parseMsg(data, "ctnetlink", &s.Family, func(typ uint16, v []byte) (err error) {
		switch typ {
		case ctaTupleOrig:
			err = parseTuple(v, &s.Orig, &s.Proto, &s.Zone)
		case ctaTupleReply:
			var proto uint8
			var zone uint16
			err = parseTuple(v, &s.Reply, &proto, &zone)
		case ctaStatus:
			s.Status, err = be32(v)
		case ctaTimeout:
			s.Timeout, err = be32(v)
		case ctaMark:
			s.Mark, err = be32(v)
		case ctaZone:
			var z uint16
			z, err = be16(v)
			s.Zone = z
		case ctaLabels:
			copy(s.Labels[:], v)
		case ctaProtoinfo:
			err = parseProtoinfo(v, &s.TCP)
		case ctaHelp:
			s.Helper, err = parseHelp(v)
		}
		return err
	})
	return s, err
}

// parseMsg reads a ctnetlink message of either subsystem (after the
// netlink header): its family, then each attribute, handed to attr. what
// names the message in errors.
func parseMsg(data []byte, what string, family *uint8, attr func(typ uint16, v []byte) error) error {
	if len(data) < nfgenHdrLen {
		return fmt.Errorf("%s: %w", what, errShort)
	}
	*family = data[0]
	b := data[nfgenHdrLen:]
	for len(b) > 0 {
		typ, v, rest, ok := nextAttr(b)
		if !ok {
			return fmt.Errorf("%s: malformed attribute", what)
		}
		b = rest
		if err := attr(typ, v); err != nil {
			return fmt.Errorf("%s attribute %d: %w", what, typ, err)
		}
	}
	return nil
}

func be32(v []byte) (uint32, error) {
	if len(v) < 4 {
		return 0, errShort
	}
	return binary.BigEndian.Uint32(v), nil
}

func be16(v []byte) (uint16, error) {
	if len(v) < 2 {
		return 0, errShort
	}
	return binary.BigEndian.Uint16(v), nil
}

func parseTuple(b []byte, t *session.Tuple, proto *uint8, zone *uint16) error {
	var icmpType, icmpCode uint8
	for len(b) > 0 {
		typ, v, rest, ok := nextAttr(b)
		if !ok {
			return errShort
		}
		b = rest
		switch typ {
		case ctaTupleIP:
			for len(v) > 0 {
				at, av, r, ok := nextAttr(v)
				if !ok {
					return errShort
				}
				v = r
				switch at {
				case ctaIPv4Src, ctaIPv4Dst:
					if len(av) != 4 {
						return errShort
					}
					a := [16]byte{10: 0xff, 11: 0xff}
					copy(a[12:], av)
					if at == ctaIPv4Src {
						t.Src = a
					} else {
						t.Dst = a
					}
				case ctaIPv6Src, ctaIPv6Dst:
					if len(av) != 16 {
						return errShort
					}
					if at == ctaIPv6Src {
						copy(t.Src[:], av)
					} else {
						copy(t.Dst[:], av)
					}
				}
			}
		case ctaTupleProto:
			for len(v) > 0 {
				at, av, r, ok := nextAttr(v)
				if !ok || len(av) == 0 {
					return errShort
				}
				v = r
				var err error
				switch at {
				case ctaProtoNum:
					*proto = av[0]
				case ctaProtoSrcPort:
					t.SrcPort, err = be16(av)
				case ctaProtoDstPort:
					t.DstPort, err = be16(av)
				case ctaProtoICMPID, ctaProtoICMP6ID:
					t.SrcPort, err = be16(av)
				case ctaProtoICMPType, ctaProtoICMP6Typ:
					icmpType = av[0]
				case ctaProtoICMPCode, ctaProtoICMP6Cod:
					icmpCode = av[0]
				}
				if err != nil {
					return err
				}
			}
		case ctaTupleZone:
			z, err := be16(v)
			if err != nil {
				return err
			}
			*zone = z
		}
	}
	if session.IsICMP(*proto) {
		t.DstPort = uint16(icmpType)<<8 | uint16(icmpCode)
	}
	return nil
}

func parseProtoinfo(b []byte, tcp *session.TCPInfo) error {
	for len(b) > 0 {
		typ, v, rest, ok := nextAttr(b)
		if !ok {
			return errShort
		}
		b = rest
		if typ != ctaProtoinfoTCP {
			continue
		}
		for len(v) > 0 {
			at, av, r, ok := nextAttr(v)
			if !ok || len(av) == 0 {
				return errShort
			}
			v = r
			switch at {
			case ctaTCPState:
				tcp.State = av[0]
			case ctaTCPWScaleOrig:
				tcp.WScaleOrig = av[0]
			case ctaTCPWScaleReply:
				tcp.WScaleReply = av[0]
			case ctaTCPFlagsOrig: // struct nf_ct_tcp_flags {flags, mask}
				tcp.FlagsOrig = av[0]
			case ctaTCPFlagsReply:
				tcp.FlagsReply = av[0]
			}
		}
	}
	return nil
}

func (w *builder) tuple(typ uint16, family, proto uint8, t *session.Tuple) {
	n := w.nest(typ)
	ip := w.nest(ctaTupleIP)
	if family == session.FamilyIPv4 {
		w.attr(ctaIPv4Src, t.Src[12:])
		w.attr(ctaIPv4Dst, t.Dst[12:])
	} else {
		w.attr(ctaIPv6Src, t.Src[:])
		w.attr(ctaIPv6Dst, t.Dst[:])
	}
	w.unnest(ip)
	p := w.nest(ctaTupleProto)
	w.u8(ctaProtoNum, proto)
	switch {
	case proto == session.ProtoICMP:
		w.u8(ctaProtoICMPType, uint8(t.DstPort>>8))
		w.u8(ctaProtoICMPCode, uint8(t.DstPort))
		w.be16(ctaProtoICMPID, t.SrcPort)
	case proto == session.ProtoICMPv6:
		w.u8(ctaProtoICMP6Typ, uint8(t.DstPort>>8))
		w.u8(ctaProtoICMP6Cod, uint8(t.DstPort))
		w.be16(ctaProtoICMP6ID, t.SrcPort)
	case session.HasPorts(proto):
		w.be16(ctaProtoSrcPort, t.SrcPort)
		w.be16(ctaProtoDstPort, t.DstPort)
	}
	w.unnest(p)
	w.unnest(n)
}

// natRange writes a CTA_NAT_SRC or CTA_NAT_DST of a single address and port.
func (w *builder) natRange(typ uint16, family uint8, addr [16]byte, port uint16, withPort bool) {
	n := w.nest(typ)
	if family == session.FamilyIPv4 {
		w.attr(ctaNATV4MinIP, addr[12:])
		w.attr(ctaNATV4MaxIP, addr[12:])
	} else {
		w.attr(ctaNATV6MinIP, addr[:])
		w.attr(ctaNATV6MaxIP, addr[:])
	}
	if withPort {
		p := w.nest(ctaNATProto)
		w.be16(ctaProtoNATPortMin, port)
		w.be16(ctaProtoNATPortMax, port)
		w.unnest(p)
	}
	w.unnest(n)
}

// state writes the mutable part of an entry: status, timeout, mark, TCP
// state, labels.
func (w *builder) state(s *session.Session) {
	// The kernel refuses (EBUSY) a status that drops CONFIRMED, and only lets
	// userspace set a few bits; NAT bits follow from CTA_NAT_*.
	w.be32(ctaStatus, session.StatusConfirmed|s.Status&settableStatus)
	to := s.Timeout
	if to == 0 {
		to = 1
	}
	w.be32(ctaTimeout, to)
	w.be32(ctaMark, s.Mark)
	if s.Proto == session.ProtoTCP {
		pi := w.nest(ctaProtoinfo)
		t := w.nest(ctaProtoinfoTCP)
		w.u8(ctaTCPState, s.TCP.State)
		w.u8(ctaTCPWScaleOrig, s.TCP.WScaleOrig)
		w.u8(ctaTCPWScaleReply, s.TCP.WScaleReply)
		// Flags with a full mask: the kernel applies flags before the window
		// scales, and keeps the scales only when WINDOW_SCALE is set on both
		// sides.
		w.attr(ctaTCPFlagsOrig, []byte{s.TCP.FlagsOrig, 0xff})
		w.attr(ctaTCPFlagsReply, []byte{s.TCP.FlagsReply, 0xff})
		w.unnest(t)
		w.unnest(pi)
	}
	if s.Labels != ([16]byte{}) {
		w.attr(ctaLabels, s.Labels[:])
	}
}

// create appends a request creating s. A NAT mapping cannot be given as a
// reply tuple (the kernel would not mark the entry as NATed, and packets would
// pass untranslated): the reply is sent un-NATed with CTA_NAT_SRC/DST ranges
// of one address and port, and the kernel derives the same reply tuple.
func (w *builder) create(s *session.Session, seq uint32, flags uint16) {
	off := w.begin(msgCTNew, flags|nlmCreate|nlmExcl, seq, s.Family)
	w.tuple(ctaTupleOrig, s.Family, s.Proto, &s.Orig)
	plain := s.Orig.Invert(s.Proto)
	w.tuple(ctaTupleReply, s.Family, s.Proto, &plain)
	icmp := session.IsICMP(s.Proto)
	ports := session.HasPorts(s.Proto)
	if s.Reply.Src != plain.Src || ports && s.Reply.SrcPort != plain.SrcPort {
		w.natRange(ctaNATDst, s.Family, s.Reply.Src, s.Reply.SrcPort, ports)
	}
	switch {
	case icmp: // the identifier belongs to the source side
		if s.Reply.Dst != plain.Dst || s.Reply.SrcPort != plain.SrcPort {
			w.natRange(ctaNATSrc, s.Family, s.Reply.Dst, s.Reply.SrcPort, true)
		}
	case s.Reply.Dst != plain.Dst || ports && s.Reply.DstPort != plain.DstPort:
		w.natRange(ctaNATSrc, s.Family, s.Reply.Dst, s.Reply.DstPort, ports)
	}
	w.zone(s.Zone)
	w.state(s)
	w.help(s.Helper)
	w.end(off)
}

// update appends a request changing the state of an existing entry. NAT and
// the reply tuple cannot change on an existing entry.
func (w *builder) update(s *session.Session, seq uint32, flags uint16) {
	off := w.begin(msgCTNew, flags, seq, s.Family)
	w.tuple(ctaTupleOrig, s.Family, s.Proto, &s.Orig)
	w.zone(s.Zone)
	w.state(s)
	w.end(off)
}

// zone appends the conntrack zone, which the kernel takes as 0 when absent.
func (w *builder) zone(z uint16) {
	if z != 0 {
		w.be16(ctaZone, z)
	}
}

// del appends a request deleting the entry with key k.
func (w *builder) del(k *session.Key, seq uint32, flags uint16) { w.byKey(msgCTDel, k, seq, flags) }

// get appends a request for the entry with key k.
func (w *builder) get(k *session.Key, seq uint32, flags uint16) { w.byKey(msgCTGet, k, seq, flags) }

// byKey appends a request of type msg naming one entry by its key.
func (w *builder) byKey(msg uint8, k *session.Key, seq uint32, flags uint16) {
	off := w.begin(msg, flags, seq, k.Family)
	w.tuple(ctaTupleOrig, k.Family, k.Proto, &k.Orig)
	w.zone(k.Zone)
	w.end(off)
}
