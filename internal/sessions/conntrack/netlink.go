package conntrack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A small netlink layer of our own rather than a general library: bulk
// installs need many requests in one sendmsg with a single acknowledgement at
// the end, and dumps of a million entries must be parsed as they stream in
// rather than collected into memory first.

const (
	nlmsgHdrLen = 16
	nfgenHdrLen = 4
	nlaHdrLen   = 4

	nlmRequest = 0x1
	nlmMulti   = 0x2
	nlmAck     = 0x4
	nlmDumpFlg = 0x300 // NLM_F_ROOT|NLM_F_MATCH
	nlmExcl    = 0x200
	nlmCreate  = 0x400

	nlmsgError = 2
	nlmsgDone  = 3

	nlaFNested = 0x8000
	nlaTypeMsk = 0x3fff

	subsysCT   = 1
	msgCTNew   = 0
	msgCTGet   = 1
	msgCTDel   = 2
	msgCTStats = 5 // IPCTNL_MSG_CT_GET_STATS: the namespace's counts
	groupNew   = 1
	groupUpd   = 2
	groupDel   = 3
	recvBufLen = 1 << 16
)

// socket is one NETLINK_NETFILTER socket, registered with the runtime poller
// so that Close wakes a blocked reader.
type socket struct {
	f    *os.File
	rc   syscall.RawConn
	seq  uint32
	rbuf []byte
	mm   *mmsgs // recvBatch's buffers, made at its first call
}

// An event is a datagram of its own, so a primary under churn made one
// system call per event; recvBatch reads up to recvBatchMax of them in one
// (recvmmsg). Events are a few hundred bytes; a datagram that does not fit
// its slot is reported as truncated.
const (
	recvBatchMax  = 64
	recvBatchSlot = 8192
)

type mmsgs struct {
	hdrs []unix.Mmsghdr
	iovs []unix.Iovec
	bufs []byte
	out  [][]byte
}

func newMmsgs() *mmsgs {
	m := &mmsgs{hdrs: make([]unix.Mmsghdr, recvBatchMax), iovs: make([]unix.Iovec, recvBatchMax),
		bufs: make([]byte, recvBatchMax*recvBatchSlot), out: make([][]byte, 0, recvBatchMax)}
	for i := range m.hdrs {
		m.iovs[i].Base = &m.bufs[i*recvBatchSlot]
		m.iovs[i].SetLen(recvBatchSlot)
		m.hdrs[i].Hdr.Iov = &m.iovs[i]
		m.hdrs[i].Hdr.SetIovlen(1)
	}
	return m
}

// errTruncated: a datagram was larger than its slot; its messages are lost.
var errTruncated = errors.New("netlink recv: datagram truncated")

// openSocket opens a socket in the current thread's network namespace (the
// caller handles namespaces), joined to the given multicast groups bitmask.
func openSocket(groups uint32, rcvbuf, sndbuf int) (*socket, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: groups}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netlink bind: %w", err)
	}
	if rcvbuf > 0 {
		// FORCE passes rmem_max when we have CAP_NET_ADMIN; fall back quietly.
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvbuf) != nil {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf)
		}
	}
	if sndbuf > 0 {
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, sndbuf) != nil {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, sndbuf)
		}
	}
	// Extended acks are not needed; errors are matched by sequence number.
	f := os.NewFile(uintptr(fd), "netlink-netfilter")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("netlink: %w", err)
	}
	return &socket{f: f, rc: rc, rbuf: make([]byte, recvBufLen)}, nil
}

func (s *socket) Close() error { return s.f.Close() }

func (s *socket) nextSeq() uint32 {
	s.seq++
	return s.seq
}

func (s *socket) send(b []byte) error {
	var serr error
	err := s.rc.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		return serr != unix.EAGAIN
	})
	if err != nil {
		return fmt.Errorf("netlink send: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("netlink send: %w", serr)
	}
	return nil
}

// recv reads one datagram; the returned slice is valid until the next call.
// ENOBUFS is returned unwrapped so callers can test for it.
func (s *socket) recv() ([]byte, error) {
	var n int
	var rerr error
	err := s.rc.Read(func(fd uintptr) bool {
		n, _, rerr = unix.Recvfrom(int(fd), s.rbuf, 0)
		return rerr != unix.EAGAIN
	})
	if err != nil {
		return nil, fmt.Errorf("netlink recv: %w", err)
	}
	if rerr != nil {
		return nil, rerr
	}
	return s.rbuf[:n], nil
}

// recvBatch reads the datagrams waiting, up to recvBatchMax, after waiting
// for the first; the returned slices are valid until the next call. As
// recv, ENOBUFS is returned unwrapped (the kernel reports a loss after the
// datagrams read before it on the next call); a datagram cut short ends
// the batch with errTruncated, the datagrams before it returned with it.
func (s *socket) recvBatch() ([][]byte, error) {
	if s.mm == nil {
		s.mm = newMmsgs()
	}
	m := s.mm
	var n int
	var rerr error
	err := s.rc.Read(func(fd uintptr) bool {
		for i := range m.hdrs {
			m.hdrs[i].Hdr.Flags = 0
		}
		r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&m.hdrs[0])), uintptr(len(m.hdrs)), unix.MSG_DONTWAIT, 0, 0)
		n, rerr = int(r), nil
		if e != 0 {
			n, rerr = 0, e
		}
		return rerr != unix.EAGAIN
	})
	if err != nil {
		return nil, fmt.Errorf("netlink recv: %w", err)
	}
	if rerr != nil {
		return nil, rerr
	}
	m.out = m.out[:0]
	for i := range n {
		if m.hdrs[i].Hdr.Flags&unix.MSG_TRUNC != 0 {
			return m.out, errTruncated
		}
		m.out = append(m.out, m.bufs[i*recvBatchSlot:i*recvBatchSlot+int(m.hdrs[i].Len)])
	}
	return m.out, nil
}

// setOption sets a SOL_NETLINK option.
func (s *socket) setOption(opt, v int) error {
	var serr error
	if err := s.rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_NETLINK, opt, v) }); err != nil {
		return err
	}
	return serr
}

// drain discards what the socket holds, without waiting.
func (s *socket) drain() error {
	for {
		var rerr error
		err := s.rc.Read(func(fd uintptr) bool {
			_, _, rerr = unix.Recvfrom(int(fd), s.rbuf, unix.MSG_DONTWAIT)
			return true
		})
		switch {
		case err != nil:
			return fmt.Errorf("netlink drain: %w", err)
		case rerr == unix.EAGAIN:
			return nil
		case rerr != nil && rerr != unix.ENOBUFS:
			return fmt.Errorf("netlink drain: %w", rerr)
		}
	}
}

// nlmsg is one parsed netlink message header with its payload.
type nlmsg struct {
	typ, flags uint16
	seq        uint32
	data       []byte
}

// nextMsg splits the first message off b.
func nextMsg(b []byte) (nlmsg, []byte, bool) {
	if len(b) < nlmsgHdrLen {
		return nlmsg{}, nil, false
	}
	l := int(binary.NativeEndian.Uint32(b[0:4]))
	if l < nlmsgHdrLen || l > len(b) {
		return nlmsg{}, nil, false
	}
	m := nlmsg{
		typ:   binary.NativeEndian.Uint16(b[4:6]),
		flags: binary.NativeEndian.Uint16(b[6:8]),
		seq:   binary.NativeEndian.Uint32(b[8:12]),
		data:  b[nlmsgHdrLen:l],
	}
	adv := align4(l)
	if adv > len(b) {
		adv = len(b)
	}
	return m, b[adv:], true
}

// errnoOf returns the errno of an NLMSG_ERROR payload (0 for an ack).
func errnoOf(data []byte) syscall.Errno {
	if len(data) < 4 {
		return unix.EIO
	}
	e := int32(binary.NativeEndian.Uint32(data[0:4]))
	return syscall.Errno(-e)
}

func align4(n int) int { return (n + 3) &^ 3 }

// builder appends netlink messages and attributes to one buffer.
type builder struct {
	b    []byte
	msgs int
}

func (w *builder) reset() { w.b, w.msgs = w.b[:0], 0 }

// begin starts a ctnetlink message and returns its offset for end.
func (w *builder) begin(msgType uint8, flags uint16, seq uint32, family uint8) int {
	off := len(w.b)
	h := w.grow(nlmsgHdrLen + nfgenHdrLen)
	binary.NativeEndian.PutUint32(h[0:4], 0) // length, set by end
	binary.NativeEndian.PutUint16(h[4:6], uint16(subsysCT)<<8|uint16(msgType))
	binary.NativeEndian.PutUint16(h[6:8], flags|nlmRequest)
	binary.NativeEndian.PutUint32(h[8:12], seq)
	binary.NativeEndian.PutUint32(h[12:16], 0)   // port id: the kernel's
	h[16], h[17], h[18], h[19] = family, 0, 0, 0 // nfgenmsg: family, version 0, res_id 0
	return off
}

func (w *builder) end(off int) {
	binary.NativeEndian.PutUint32(w.b[off:off+4], uint32(len(w.b)-off))
	w.msgs++
}

// grow extends w.b by n bytes and returns them; the caller writes every
// byte. Attributes are written in place rather than appended piecewise: the
// encoding of a bulk install's million requests is a hot path.
func (w *builder) grow(n int) []byte {
	off := len(w.b)
	if cap(w.b)-off < n {
		w.b = append(w.b[:cap(w.b)], make([]byte, max(n, cap(w.b), 4096))...)
	}
	w.b = w.b[:off+n]
	return w.b[off : off+n : off+n]
}

func (w *builder) attr(typ uint16, data []byte) {
	n := nlaHdrLen + len(data)
	b := w.grow(align4(n))
	binary.NativeEndian.PutUint16(b[0:2], uint16(n))
	binary.NativeEndian.PutUint16(b[2:4], typ)
	copy(b[nlaHdrLen:], data)
	clear(b[n:])
}

func (w *builder) u8(typ uint16, v uint8) {
	b := w.grow(8)
	binary.NativeEndian.PutUint16(b[0:2], nlaHdrLen+1)
	binary.NativeEndian.PutUint16(b[2:4], typ)
	b[4], b[5], b[6], b[7] = v, 0, 0, 0 // the value, then padding
}

func (w *builder) be16(typ uint16, v uint16) {
	b := w.grow(8)
	binary.NativeEndian.PutUint16(b[0:2], nlaHdrLen+2)
	binary.NativeEndian.PutUint16(b[2:4], typ)
	binary.BigEndian.PutUint16(b[4:6], v)
	b[6], b[7] = 0, 0
}

func (w *builder) be32(typ uint16, v uint32) {
	b := w.grow(8)
	binary.NativeEndian.PutUint16(b[0:2], nlaHdrLen+4)
	binary.NativeEndian.PutUint16(b[2:4], typ)
	binary.BigEndian.PutUint32(b[4:8], v)
}

func (w *builder) nest(typ uint16) int {
	off := len(w.b)
	b := w.grow(nlaHdrLen)
	binary.NativeEndian.PutUint16(b[0:2], 0)
	binary.NativeEndian.PutUint16(b[2:4], typ|nlaFNested)
	return off
}

func (w *builder) unnest(off int) {
	binary.NativeEndian.PutUint16(w.b[off:off+2], uint16(len(w.b)-off))
}

// nextAttr splits the first attribute off b; typ has its flag bits cleared.
func nextAttr(b []byte) (typ uint16, data, rest []byte, ok bool) {
	if len(b) < nlaHdrLen {
		return 0, nil, nil, false
	}
	l := int(binary.NativeEndian.Uint16(b[0:2]))
	if l < nlaHdrLen || l > len(b) {
		return 0, nil, nil, false
	}
	typ = binary.NativeEndian.Uint16(b[2:4]) & nlaTypeMsk
	data = b[nlaHdrLen:l]
	adv := align4(l)
	if adv > len(b) {
		adv = len(b)
	}
	return typ, data, b[adv:], true
}

var errShort = errors.New("short attribute")

// inNetNS runs fn on a thread switched into the network namespace open at
// nsfd (no switch when nsfd < 0), so that sockets fn creates live there.
func inNetNS(nsfd int, fn func() error) error {
	if nsfd < 0 {
		return fn()
	}
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netns: %w", err)
	}
	defer orig.Close()
	if err := unix.Setns(nsfd, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netns: setns: %w", err)
	}
	ferr := fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread is in the wrong namespace: keep it locked so the
		// runtime discards it when this goroutine ends.
		return errors.Join(ferr, fmt.Errorf("netns: restore: %w", err))
	}
	runtime.UnlockOSThread()
	return ferr
}
