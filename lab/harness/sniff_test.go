package harness

// A passive tap on a lab link, as an attacker on the HA segment has one: it
// records the bytes one side of a TCP connection sends, without the key,
// so a test can replay them.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hagate/hagate/internal/seal"
	"github.com/hagate/hagate/internal/sessions"
)

// tcpTap reads the IPv4 packets on one interface of a namespace (both
// directions, AF_PACKET) and reassembles the first bytes of every TCP
// connection from src to dst.
type tcpTap struct {
	fd       int
	src, dst netip.AddrPort
	done     chan struct{}
	stopping chan struct{}

	mu    sync.Mutex
	conns map[uint16]*tapStream // by the source port
	order []uint16              // source ports in the order their SYN was seen
}

// tapStream is one connection's byte stream, from its SYN on.
type tapStream struct {
	isn  uint32
	segs map[uint32][]byte // by offset in the stream
}

// tapKeep bounds what a stream keeps: the handshake is in its first frames.
const tapKeep = 64 << 10

// startTCPTap taps iface in node's namespace for connections from src to
// dst (src's port 0: any) until stopped or the test ends.
func startTCPTap(t *testing.T, c *Cluster, node, iface string, src, dst netip.AddrPort) *tcpTap {
	t.Helper()
	tp := &tcpTap{fd: -1, src: src, dst: dst, done: make(chan struct{}), stopping: make(chan struct{}), conns: map[uint16]*tapStream{}}
	err := c.InNamespace(node, func() error {
		ifi, err := net.InterfaceByName(iface)
		if err != nil {
			return err
		}
		proto := int(htons(unix.ETH_P_IP))
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		tp.fd = fd
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: ifi.Index}); err != nil {
			return fmt.Errorf("bind packet socket to %s: %w", iface, err)
		}
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20) // best effort: a bigger buffer loses less
		tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	})
	if err != nil {
		if tp.fd >= 0 {
			unix.Close(tp.fd)
		}
		t.Fatalf("tap %s in %s: %v", iface, node, err)
	}
	go tp.run()
	t.Cleanup(tp.stop)
	return tp
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (tp *tcpTap) run() {
	defer close(tp.done)
	buf := make([]byte, 1<<16)
	for range 10_000_000 { // bounded: a tap lives for seconds
		select {
		case <-tp.stopping:
			return
		default:
		}
		n, _, err := unix.Recvfrom(tp.fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		tp.packet(buf[:n])
	}
}

// packet files one IPv4 packet's TCP payload, if it belongs to the tapped
// direction.
func (tp *tcpTap) packet(p []byte) {
	if len(p) < 20 || p[0]>>4 != 4 || p[9] != unix.IPPROTO_TCP {
		return
	}
	ihl := int(p[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(p[2:4]))
	if total > len(p) || total < ihl+20 {
		return
	}
	src, dst := netip.AddrFrom4([4]byte(p[12:16])), netip.AddrFrom4([4]byte(p[16:20]))
	tcp := p[ihl:total]
	sport, dport := binary.BigEndian.Uint16(tcp[0:2]), binary.BigEndian.Uint16(tcp[2:4])
	if src != tp.src.Addr() || dst != tp.dst.Addr() || dport != tp.dst.Port() || (tp.src.Port() != 0 && sport != tp.src.Port()) {
		return
	}
	seq := binary.BigEndian.Uint32(tcp[4:8])
	off := int(tcp[12]>>4) * 4
	if off < 20 || off > len(tcp) {
		return
	}
	syn := tcp[13]&0x02 != 0
	tp.mu.Lock()
	defer tp.mu.Unlock()
	if syn {
		tp.conns[sport] = &tapStream{isn: seq + 1, segs: map[uint32][]byte{}}
		tp.order = append(tp.order, sport)
		return
	}
	s := tp.conns[sport]
	payload := tcp[off:]
	if s == nil || len(payload) == 0 {
		return
	}
	if at := seq - s.isn; at < tapKeep {
		s.segs[at] = slices.Clone(payload)
	}
}

// bytes returns the contiguous start of the stream.
func (s *tapStream) bytes() []byte {
	var out []byte
	for len(out) < tapKeep {
		seg, ok := s.segs[uint32(len(out))]
		if !ok {
			// A segment may start inside what we have (a retransmission
			// split differently): find one that covers the next byte.
			for at, b := range s.segs {
				if int(at) < len(out) && int(at)+len(b) > len(out) {
					seg, ok = b[len(out)-int(at):], true
					break
				}
			}
			if !ok {
				break
			}
		}
		out = append(out, seg...)
	}
	return out
}

// syncFrames splits the start of a sync connection into its frames (each
// with its 4-byte length prefix), the complete ones only.
func syncFrames(b []byte) [][]byte {
	var out [][]byte
	for len(b) >= 4 {
		n := int(binary.BigEndian.Uint32(b))
		if n > sessions.MaxFrame || 4+n > len(b) {
			break
		}
		out = append(out, b[:4+n])
		b = b[4+n:]
	}
	return out
}

// handshakeFrames returns the first two frames of the latest tapped
// connection that has them both and whose first frame is sealed by sender:
// a primary's hello and its answer to the subordinate's challenge.
func (tp *tcpTap) handshakeFrames(sender string) [][]byte {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	for i := len(tp.order) - 1; i >= 0; i-- {
		fs := syncFrames(tp.conns[tp.order[i]].bytes())
		if len(fs) < 2 {
			continue
		}
		if h, _, err := seal.ParseHeader(fs[0][4:]); err == nil && h.Sender == sender {
			return fs[:2]
		}
	}
	return nil
}

func (tp *tcpTap) stop() {
	select {
	case <-tp.stopping:
		return
	default:
		close(tp.stopping)
	}
	<-tp.done
	unix.Close(tp.fd)
}
