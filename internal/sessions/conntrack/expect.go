package conntrack

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/hagate/hagate/internal/sessions/session"
)

// Expectations live in their own ctnetlink subsystem
// (NFNL_SUBSYS_CTNETLINK_EXP), with their own messages, attributes and event
// groups (linux/netfilter/nfnetlink_conntrack.h).
const (
	subsysExp = 2

	msgExpNew = 0
	msgExpGet = 1
	msgExpDel = 2

	groupExpNew = 4
	groupExpDel = 6

	ctaExpectMaster   = 1
	ctaExpectTuple    = 2
	ctaExpectMask     = 3
	ctaExpectTimeout  = 4
	ctaExpectHelpName = 6
	ctaExpectZone     = 7
	ctaExpectFlags    = 8
	ctaExpectClass    = 9
	ctaExpectNAT      = 10
	ctaExpectFn       = 11

	ctaExpectNATDir   = 1
	ctaExpectNATTuple = 2
)

// beginExp starts a message of the expectation subsystem.
func (w *builder) beginExp(msgType uint8, flags uint16, seq uint32, family uint8) int {
	off := w.begin(msgType, flags, seq, family)
	binary.NativeEndian.PutUint16(w.b[off+4:off+6], uint16(subsysExp)<<8|uint16(msgType))
	return off
}

// name appends a NUL-terminated string attribute.
func (w *builder) name(typ uint16, n string) {
	w.attr(typ, append([]byte(n), 0))
}

// expectAttrs appends everything the kernel needs to create x.
func (w *builder) expectAttrs(x *session.Expect) {
	w.tuple(ctaExpectMaster, x.Family, x.Master.Proto, &x.Master.Orig)
	w.tuple(ctaExpectTuple, x.Family, x.Proto, &x.Tuple)
	mask := expectMask(x)
	w.tuple(ctaExpectMask, x.Family, x.Proto, &mask)
	w.be32(ctaExpectTimeout, max(x.Timeout, 1))
	if x.Zone != 0 {
		w.be16(ctaExpectZone, x.Zone)
	}
	// The kernel clears USERSPACE itself; INACTIVE and PERMANENT carry over.
	if f := x.Flags &^ session.ExpectUserspace; f != 0 {
		w.be32(ctaExpectFlags, f)
	}
	if !x.Helper.IsZero() {
		w.name(ctaExpectHelpName, x.Helper.String())
		if x.Class != 0 {
			w.be32(ctaExpectClass, x.Class)
		}
	}
	if !x.Fn.IsZero() {
		w.name(ctaExpectFn, x.Fn.String())
	}
	if x.NAT {
		n := w.nest(ctaExpectNAT)
		w.be32(ctaExpectNATDir, uint32(x.NATDir))
		// The saved address and port travel as the source of a tuple of the
		// master's protocol.
		t := session.Tuple{Src: x.NATAddr, SrcPort: x.NATPort}
		w.tuple(ctaExpectNATTuple, x.Family, x.Master.Proto, &t)
		w.unnest(n)
	}
}

// expectMask returns the mask as the kernel reads it: a full tuple whose
// destination part is all ones.
func expectMask(x *session.Expect) session.Tuple {
	m := session.Tuple{Src: x.MaskSrc, SrcPort: x.MaskSrcPort, DstPort: 0xffff}
	for i := range m.Dst {
		m.Dst[i] = 0xff
	}
	return m
}

// createExpect appends the two requests that install x: a create (which, on
// an existing expectation, only sets its timeout) and an update that sets
// the timeout, since a create takes the timeout of the helper's policy.
func (w *builder) createExpect(x *session.Expect, seq uint32) {
	off := w.beginExp(msgExpNew, nlmCreate, seq, x.Family)
	w.expectAttrs(x)
	w.end(off)
	off = w.beginExp(msgExpNew, 0, seq+1, x.Family)
	w.expectAttrs(x)
	w.end(off)
}

// delExpect appends a request deleting the expectation with key k. The
// tuple must be present: a delete without one flushes the whole table.
func (w *builder) delExpect(k *session.ExpectKey, seq uint32) {
	off := w.beginExp(msgExpDel, 0, seq, k.Family)
	w.tuple(ctaExpectTuple, k.Family, k.Proto, &k.Tuple)
	if k.Zone != 0 {
		w.be16(ctaExpectZone, k.Zone)
	}
	w.end(off)
}

// parseExpect decodes a ctnetlink expectation message (after the netlink
// header).
func parseExpect(data []byte) (session.Expect, error) {
	var x session.Expect
	var mask session.Tuple
	err := parseMsg(data, "ctnetlink expect", &x.Family, func(typ uint16, v []byte) (err error) {
		var zone uint16
		var proto uint8
		switch typ {
		case ctaExpectMaster:
			err = parseTuple(v, &x.Master.Orig, &x.Master.Proto, &zone)
		case ctaExpectTuple:
			err = parseTuple(v, &x.Tuple, &x.Proto, &zone)
		case ctaExpectMask:
			err = parseTuple(v, &mask, &proto, &zone)
		case ctaExpectTimeout:
			x.Timeout, err = be32(v)
		case ctaExpectZone:
			x.Zone, err = be16(v)
		case ctaExpectFlags:
			x.Flags, err = be32(v)
		case ctaExpectClass:
			x.Class, err = be32(v)
		case ctaExpectHelpName:
			x.Helper, err = parseName(v)
		case ctaExpectFn:
			var ok bool
			if x.Fn, ok = session.MakeFnName(cstring(v)); !ok {
				err = fmt.Errorf("function name %q too long", cstring(v))
			}
		case ctaExpectNAT:
			err = parseExpectNAT(v, &x)
		}
		return err
	})
	if err != nil {
		return x, err
	}
	x.MaskSrc, x.MaskSrcPort = mask.Src, mask.SrcPort
	x.Master.Family, x.Master.Zone = x.Family, x.Zone
	return x, nil
}

func parseExpectNAT(b []byte, x *session.Expect) error {
	x.NAT = true
	for len(b) > 0 {
		typ, v, rest, ok := nextAttr(b)
		if !ok {
			return errShort
		}
		b = rest
		switch typ {
		case ctaExpectNATDir:
			d, err := be32(v)
			if err != nil {
				return err
			}
			x.NATDir = uint8(d)
		case ctaExpectNATTuple:
			var t session.Tuple
			var proto uint8
			var zone uint16
			if err := parseTuple(v, &t, &proto, &zone); err != nil {
				return err
			}
			x.NATAddr, x.NATPort = t.Src, t.SrcPort
		}
	}
	return nil
}

// cstring returns a NUL-terminated attribute's string.
func cstring(v []byte) string {
	for i, c := range v {
		if c == 0 {
			return string(v[:i])
		}
	}
	return string(v)
}

// parseName reads a helper name; one too long for a Name is refused.
func parseName(v []byte) (session.Name, error) {
	n, ok := session.MakeName(cstring(v))
	if !ok {
		return n, fmt.Errorf("helper name %q too long", cstring(v))
	}
	return n, nil
}

// DumpExpect calls fn for every expectation in the table.
func (k *Kernel) DumpExpect(ctx context.Context, fn func(session.Expect) error) error {
	req := func(w *builder, seq uint32) { w.end(w.beginExp(msgExpGet, nlmDumpFlg, seq, unix.AF_UNSPEC)) }
	return dump(ctx, k, "conntrack expect dump", 1<<20, subsysExp, req, parseExpect, fn)
}

// WatchExpect subscribes to the expectation events: NEW when a helper (or a
// request) creates one, DESTROY when it is used, expires or is deleted. An
// overflow of the socket is reported as EventOverflow and the stream goes
// on. The channel closes when ctx ends or the socket fails.
func (k *Kernel) WatchExpect(ctx context.Context) (<-chan session.ExpectEvent, error) {
	s, err := k.open(1<<(groupExpNew-1)|1<<(groupExpDel-1), 4<<20)
	if err != nil {
		return nil, fmt.Errorf("conntrack expect watch: %w", err)
	}
	overflow := session.ExpectEvent{Kind: session.EventOverflow}
	return watch(ctx, s, k.opts.EventQueue, subsysExp, overflow, func(m nlmsg) (session.ExpectEvent, bool) {
		ev := session.ExpectEvent{Kind: session.EventNew}
		if m.typ&0xff == msgExpDel {
			ev.Kind = session.EventDestroy
		}
		var err error
		ev.Expect, err = parseExpect(m.data)
		return ev, err == nil // an unparsable event: the refresh dump repairs
	}), nil
}

// ApplyExpect installs and deletes expectations, in order, over one socket.
// Installing an existing expectation sets its timeout; deleting a missing
// one succeeds. The error joins one error per refused change; an
// expectation whose master is not in the table is refused with
// session.ErrNoMaster.
func (k *Kernel) ApplyExpect(ctx context.Context, changes []session.ExpectChange) error {
	if len(changes) == 0 {
		return nil
	}
	s, err := k.get()
	if err != nil {
		return fmt.Errorf("conntrack expect apply: %w", err)
	}
	healthy := true
	defer func() { k.put(s, healthy) }()
	var w builder
	var errs []error
	for start := 0; start < len(changes); {
		w.reset()
		first := s.seq + 1
		end := start
		for ; end < len(changes) && len(w.b) < k.opts.BatchBytes-1024; end++ {
			c := &changes[end]
			switch c.Op {
			case session.Upsert:
				w.createExpect(&c.Expect, s.seq+1)
				s.seq += 2
			case session.Delete:
				w.delExpect(&c.Expect.ExpectKey, s.nextSeq())
			default:
				return fmt.Errorf("conntrack expect apply: unknown op %d", c.Op)
			}
		}
		// Ask for one acknowledgement, on the last request; errors come
		// back for every request regardless.
		binary.NativeEndian.PutUint16(w.b[lastMsgOff(w.b)+6:], nlmRequest|nlmAck|binary.NativeEndian.Uint16(w.b[lastMsgOff(w.b)+6:]))
		got, err := k.exchange(ctx, s, w.b, first, s.seq)
		if err != nil {
			healthy = false
			return errors.Join(append(errs, fmt.Errorf("conntrack expect apply: %w", err))...)
		}
		seq := first
		for i := start; i < end; i++ {
			c := &changes[i]
			if c.Op == session.Delete {
				if e := got[seq]; e != 0 && e != unix.ENOENT {
					errs = append(errs, fmt.Errorf("delete %s: %w", c.Expect.ExpectKey, e))
				}
				seq++
				continue
			}
			switch e := got[seq]; {
			case e == unix.ENOENT:
				errs = append(errs, fmt.Errorf("install %s: %w", c.Expect.ExpectKey, session.ErrNoMaster))
			case e != 0:
				errs = append(errs, fmt.Errorf("install %s: %w", c.Expect.ExpectKey, e))
			case got[seq+1] != 0:
				errs = append(errs, fmt.Errorf("timeout of %s: %w", c.Expect.ExpectKey, got[seq+1]))
			}
			seq += 2
		}
		start = end
	}
	return errors.Join(errs...)
}

// lastMsgOff returns the offset of the last netlink message in b.
func lastMsgOff(b []byte) int {
	off := 0
	for {
		l := align4(int(binary.NativeEndian.Uint32(b[off:])))
		if off+l >= len(b) {
			return off
		}
		off += l
	}
}

// CTA_HELP carries the helper of a conntrack entry.
const (
	ctaHelp     = 5
	ctaHelpName = 1
)

// help appends the helper of a new entry, if it has one. Only creates carry
// it: the kernel attaches a helper to an entry only when it creates it, and
// refuses (EOPNOTSUPP) a helper on an update of an entry created without.
func (w *builder) help(n session.Name) {
	if n.IsZero() {
		return
	}
	h := w.nest(ctaHelp)
	w.name(ctaHelpName, n.String())
	w.unnest(h)
}

// parseHelp returns the helper name of a CTA_HELP attribute.
func parseHelp(b []byte) (session.Name, error) {
	for len(b) > 0 {
		typ, v, rest, ok := nextAttr(b)
		if !ok {
			return session.Name{}, errShort
		}
		b = rest
		if typ == ctaHelpName {
			// A name the kernel should never report is dropped, not fatal
			// to the dump of the whole table.
			n, _ := session.MakeName(cstring(v))
			return n, nil
		}
	}
	return session.Name{}, nil
}
