package heartbeat

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hagate/hagate/internal/cluster"
	"github.com/hagate/hagate/internal/seal"
)

// Link is one HA interface and the peers reached over it.
type Link struct {
	Interface string
	Peers     []netip.Addr
}

// Counters receives what the transport counts; the daemon wires it to
// metrics. Every method must be safe for concurrent use.
type Counters interface {
	Sent(link string)
	Received(link, peer string)
	Dropped(link, reason string)
}

// StartMargin is how long after this member started a heartbeat must have
// been sent, by the sender's clock, to be accepted without echoing this
// member's boot. A frame sent earlier may be a capture from before this
// member started, which its replay windows, new with it, cannot recognise;
// a heartbeat that echoes this boot was sent after its sender heard this
// boot, whatever the clocks say. The margin covers a sender whose clock
// runs ahead of this member's by up to that much. It delays only hearing a
// peer that does not echo: one that cannot hear this member (a one-way
// link failure) or one from before the echo.
const StartMargin = 500 * time.Millisecond

// maxHeard bounds the peers whose boots the transport remembers.
const maxHeard = 2 * MaxEcho

// Transport sends heartbeats on every HA link and receives them. Received
// heartbeats arrive on Packets in the order they were read.
type Transport struct {
	port     int
	links    []*linkConn
	sealer   *seal.Sealer
	opener   *seal.Opener
	counters Counters
	packets  chan cluster.Received
	now      func() time.Time
	wg       sync.WaitGroup

	boot       uint64    // this member's boot id: the sealer's epoch
	acceptFrom time.Time // frames sent before must echo boot

	dead time.Duration // see Options; 0: DefaultDeadInterval
	log  *slog.Logger

	mu       sync.Mutex
	versions map[netip.Addr]spoken // by peer address: the version to send it
	sends    uint64                // Send calls, to pace the probes (see probeEvery)
	heard    map[string]heardBoot  // by sender: the boot to echo
	hearings uint64                // counts hear calls, to order heard
	bindings map[bindKey]*binding  // see bind

	dropMu sync.Mutex
	drops  dropBook
}

// SourceCounters is what Counters may also implement to count drops by
// source address: the configured peers, at most maxDropSources other
// addresses, then OtherSource.
type SourceCounters interface {
	DroppedFrom(link, reason, source string)
}

// spoken is the heartbeat version a peer's boot sends: the version this
// member sends it. A peer not heard in its current boot is sent the newest
// version; one heard sending an older one (release 0.1.0) is sent that.
// Members of this release that start together thus speak the newest
// version at once, and a 0.1.0 member misses at most the heartbeats sent
// before its first one arrives, while one of the two is starting.
//
// Two members of this release can still mirror each other in the older
// version: one restarts (upgraded) and hears the other, which still sends
// version 2 to its address, before it sends anything itself. So a peer
// sent an older version gets the newest one every probeEvery heartbeats;
// a member of this release reads it and answers in the newest from then
// on (a boot never goes back to an older version), while release 0.1.0
// drops that one heartbeat as malformed, which it only counts.
type spoken struct {
	epoch   uint64
	version uint8
}

// probeEvery paces the newest-version probes to peers sent an older
// version: far fewer than the heartbeats a member may miss (lost_threshold
// is at least 2), so a 0.1.0 peer never loses a member over them.
const probeEvery = 16

type heardBoot struct {
	boot uint64
	at   uint64 // the hearings count when last heard
}

type linkConn struct {
	Link
	index int
	conn  *net.UDPConn
	peers map[netip.Addr]bool
}

// Open binds one UDP socket per link to its interface (SO_BINDTODEVICE), so
// a heartbeat is known to have come in on the link it names. now stamps the
// frames (wall clock: frames carry their send time for the freshness check).
// The sealer's epoch is this member's boot id and its start time (unix
// nanoseconds): frames sent before it, plus StartMargin, are accepted only
// if they echo it.
func Open(links []Link, port int, sealer *seal.Sealer, opener *seal.Opener, counters Counters, now func() time.Time) (*Transport, error) {
	t := &Transport{port: port, sealer: sealer, opener: opener, counters: counters,
		packets: make(chan cluster.Received, 256), now: now, boot: sealer.Epoch()}
	t.acceptFrom = time.Unix(0, int64(t.boot)).Add(StartMargin)
	for i, l := range links {
		c, err := listen(l.Interface, port)
		if err != nil {
			t.Close()
			return nil, fmt.Errorf("heartbeat link %s: %w", l.Interface, err)
		}
		lc := &linkConn{Link: l, index: i, conn: c, peers: map[netip.Addr]bool{}}
		for _, p := range l.Peers {
			lc.peers[p.Unmap()] = true
		}
		t.links = append(t.links, lc)
	}
	return t, nil
}

func listen(ifname string, port int) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); serr != nil {
				return
			}
			serr = unix.BindToDevice(int(fd), ifname)
			if serr == nil {
				// Heartbeats are small and urgent: ask for the
				// network-control traffic class (DSCP CS6).
				_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_TOS, 0xc0)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp", fmt.Sprintf(":%d", port))
	if err != nil {
		return nil, err
	}
	return pc.(*net.UDPConn), nil
}

// Packets delivers authenticated, well-formed heartbeats.
func (t *Transport) Packets() <-chan cluster.Received { return t.packets }

// Run reads every link until ctx ends, then closes the sockets.
func (t *Transport) Run(ctx context.Context) {
	for _, l := range t.links {
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			t.read(ctx, l)
		}()
	}
	<-ctx.Done()
	t.Close()
	t.wg.Wait()
}

// Close closes the sockets.
func (t *Transport) Close() {
	for _, l := range t.links {
		l.conn.Close()
	}
}

// Send seals hb, with the boots of the peers heard most recently as its
// echo, and sends it to every peer on every link. A link that fails (down,
// no route) does not stop the others; the first error is returned.
func (t *Transport) Send(hb cluster.Heartbeat) error {
	echo := t.echo()
	var payloads [version + 1][]byte // by version, encoded when first needed
	payload := func(v uint8) []byte {
		if payloads[v] == nil {
			payloads[v] = Encode(make([]byte, 0, MaxLen), Message{HB: hb, Echo: echo, Version: v, Build: hb.Build})
		}
		return payloads[v]
	}
	now := t.now()
	probe := t.probeDue()
	var first error
	for _, l := range t.links {
		var frames [version + 1][]byte
		var probeFrame []byte // sealed after the older frames: a later sequence number
		for _, p := range l.Peers {
			v := t.versionFor(p)
			if frames[v] == nil {
				frames[v] = t.sealer.Seal(make([]byte, 0, MaxLen+seal.Overhead), uint32(l.index), now, payload(v))
			}
			send := [][]byte{frames[v]}
			if probe && v < version {
				// The probe goes beside the heartbeat the peer reads, never
				// instead of it: a 0.1.0 peer misses nothing.
				if probeFrame == nil {
					probeFrame = t.sealer.Seal(make([]byte, 0, MaxLen+seal.Overhead), uint32(l.index), now, payload(version))
				}
				send = append(send, probeFrame)
			}
			for _, f := range send {
				if _, err := l.conn.WriteToUDPAddrPort(f, netip.AddrPortFrom(p, uint16(t.port))); err != nil {
					t.counters.Dropped(l.Interface, "send-error") // local: no source to blame
					if first == nil {
						first = fmt.Errorf("heartbeat link %s to %s: %w", l.Interface, p, err)
					}
				}
			}
		}
		t.counters.Sent(l.Interface)
	}
	return first
}

func (t *Transport) read(ctx context.Context, l *linkConn) {
	buf := make([]byte, 2048)
	for {
		n, from, err := l.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			t.counters.Dropped(l.Interface, "read-error")
			continue
		}
		src := from.Addr().Unmap()
		rx, d := t.accept(l, src, buf[:n])
		if rx.Unreadable != "" {
			select {
			case t.packets <- rx:
			default:
			}
		}
		if d == nil {
			select {
			case t.packets <- rx:
				t.counters.Received(l.Interface, rx.From)
				continue
			default:
				d = &seal.DropError{Reason: "queue-full"}
			}
		}
		t.dropped(l, src, d)
	}
}

// dropped counts, records and (at most once a minute) logs one drop.
func (t *Transport) dropped(l *linkConn, src netip.Addr, d *seal.DropError) {
	t.counters.Dropped(l.Interface, d.Reason)
	label := t.noteDrop(l, src, d.Reason, d.Detail, t.now())
	if sc, ok := t.counters.(SourceCounters); ok {
		sc.DroppedFrom(l.Interface, d.Reason, label)
	}
}

// accept checks one datagram; it returns why when it drops it. The cheap
// checks (source, size) come before any cryptography. An authenticated
// heartbeat this build cannot read is dropped and yet returned, marked
// Unreadable.
func (t *Transport) accept(l *linkConn, from netip.Addr, b []byte) (cluster.Received, *seal.DropError) {
	if !l.peers[from] {
		return cluster.Received{}, &seal.DropError{Reason: "unknown-source", Detail: from.String() + " on " + l.Interface}
	}
	if len(b) > MaxLen+seal.Overhead {
		return cluster.Received{}, &seal.DropError{Reason: "oversize", Detail: fmt.Sprintf("%d bytes", len(b))}
	}
	now := t.now()
	h, payload, err := t.opener.Open(b, now)
	if err != nil {
		var d *seal.DropError
		if errors.As(err, &d) {
			return cluster.Received{}, d
		}
		return cluster.Received{}, &seal.DropError{Reason: "malformed", Detail: err.Error()}
	}
	// The sender id reaches logs, metric labels and the notify command's
	// environment: only the characters a configuration allows pass.
	if !validNodeID(h.Sender) {
		return cluster.Received{}, &seal.DropError{Reason: "node-id", Detail: fmt.Sprintf("sender %q", h.Sender)}
	}
	m, err := Decode(payload)
	if errors.Is(err, ErrNodeID) {
		return cluster.Received{}, &seal.DropError{Reason: "node-id", Detail: err.Error()}
	}
	if err != nil {
		// Authenticated, so a member is there: one whose state this build
		// cannot read (a later release). Counted as a drop, and reported
		// so that it is never taken for silence.
		return cluster.Received{From: h.Sender, Link: l.Interface, Addr: from, Seq: h.Seq, Epoch: h.Epoch, Unreadable: err.Error()},
			&seal.DropError{Reason: "malformed", Detail: err.Error()}
	}
	t.spoke(from, h.Epoch, m.Version)
	// Any authenticated heartbeat proves its sender's boot was up: echo it,
	// even if this frame is refused below, so that two members that started
	// together hear each other within a round trip.
	t.hear(h.Sender, h.Epoch)
	if h.Sent.Before(t.acceptFrom) && !m.Echoes(t.boot) {
		return cluster.Received{}, &seal.DropError{Reason: "early", Detail: "from " + h.Sender}
	}
	if d := t.bind(l, h, from, now); d != nil {
		return cluster.Received{}, d
	}
	return cluster.Received{From: h.Sender, Link: l.Interface, Addr: from, Seq: h.Seq, Epoch: h.Epoch, HB: m.HB}, nil
}

// spoke records the version a peer's boot sends.
func (t *Transport) spoke(from netip.Addr, epoch uint64, v uint8) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.versions == nil {
		t.versions = map[netip.Addr]spoken{}
	}
	if len(t.versions) >= maxVersions {
		clear(t.versions) // only configured peers get here: never in practice
	}
	if sp, ok := t.versions[from]; ok && sp.epoch == epoch && sp.version > v {
		return // a late frame of the older version, sent before our probe
	}
	t.versions[from] = spoken{epoch: epoch, version: v}
}

// probeDue counts a Send and says whether it is a probe (see spoken).
func (t *Transport) probeDue() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sends++
	return t.sends%probeEvery == 0
}

// maxVersions bounds the peer addresses whose version is remembered.
const maxVersions = 64

// versionFor is the heartbeat version to send the peer at addr.
func (t *Transport) versionFor(addr netip.Addr) uint8 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if sp, ok := t.versions[addr.Unmap()]; ok {
		return min(sp.version, version)
	}
	return version
}

// hear records sender's boot for the echo.
func (t *Transport) hear(sender string, boot uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.heard == nil {
		t.heard = map[string]heardBoot{}
	}
	if _, ok := t.heard[sender]; !ok && len(t.heard) >= maxHeard {
		var oldest string
		for id, hb := range t.heard {
			if oldest == "" || hb.at < t.heard[oldest].at {
				oldest = id
			}
		}
		delete(t.heard, oldest)
	}
	t.hearings++
	t.heard[sender] = heardBoot{boot: boot, at: t.hearings}
}

// echo returns the boots of the MaxEcho peers heard most recently.
func (t *Transport) echo() []uint64 {
	t.mu.Lock()
	hs := make([]heardBoot, 0, len(t.heard))
	for _, hb := range t.heard {
		hs = append(hs, hb)
	}
	t.mu.Unlock()
	slices.SortFunc(hs, func(a, b heardBoot) int { return cmp.Compare(b.at, a.at) })
	out := make([]uint64, 0, MaxEcho)
	for _, hb := range hs[:min(len(hs), MaxEcho)] {
		out = append(out, hb.boot)
	}
	return out
}
