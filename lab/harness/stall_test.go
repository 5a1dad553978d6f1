package harness

// A stalled session-sync peer against a real primary. The primary dials its
// subordinates' sync port (703 on the heartbeat link); here gw3's daemon
// does not run and the test listens on gw3's address instead. It completes
// the handshake as a subordinate would (a hello sealed with the cluster
// key), then never reads again while it keeps sending acks, so the
// primary's read side stays content and only its writes block: the nastier
// stall. The primary must keep syncing the healthy subordinate gw2, drop the
// stalled peer's queue when it overflows (counted), disconnect it after its
// write timeout, and resync it with a new bulk when it connects again.

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hagate/hagate/internal/control"
	"github.com/hagate/hagate/internal/nstest"
	"github.com/hagate/hagate/internal/seal"
	"github.com/hagate/hagate/internal/sessions"
	"github.com/hagate/hagate/internal/sessions/conntrack"
	"github.com/hagate/hagate/internal/sessions/session"
	"github.com/hagate/hagate/internal/sessions/syncproto"
	"github.com/hagate/hagate/lab/netlab"
)

// syncPeer speaks the sync protocol's framing on one connection, as gw3.
type syncPeer struct {
	c      net.Conn
	sealer *seal.Sealer
	opener *seal.Opener
	hdr    [4]byte
}

func newSyncPeer(t *testing.T, c net.Conn) *syncPeer {
	t.Helper()
	kr, err := seal.ParseKeys([]byte(Key))
	if err != nil {
		t.Fatal(err)
	}
	s, err := seal.NewSealer(kr, seal.Encrypt, seal.Sync, groupID, "gw3", uint64(time.Now().UnixNano()))
	if err != nil {
		t.Fatal(err)
	}
	return &syncPeer{c: c, sealer: s, opener: seal.NewOpener(kr, seal.Encrypt, seal.Sync, groupID, "gw3", time.Minute)}
}

func (p *syncPeer) write(payload []byte) error {
	f := p.sealer.Seal(make([]byte, 4, 4+len(payload)+seal.Overhead), 1, time.Now(), payload)
	binary.BigEndian.PutUint32(f[:4], uint32(len(f)-4))
	if err := p.c.SetWriteDeadline(time.Now().Add(2 * time.Second)); err != nil {
		return err
	}
	_, err := p.c.Write(f)
	return err
}

func (p *syncPeer) read(timeout time.Duration) (seal.Header, syncproto.Message, error) {
	if err := p.c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return seal.Header{}, nil, err
	}
	if _, err := io.ReadFull(p.c, p.hdr[:]); err != nil {
		return seal.Header{}, nil, err
	}
	n := binary.BigEndian.Uint32(p.hdr[:])
	if n > sessions.MaxFrame {
		return seal.Header{}, nil, fmt.Errorf("frame of %d bytes", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(p.c, b); err != nil {
		return seal.Header{}, nil, err
	}
	h, payload, err := p.opener.Open(b, time.Now())
	if err != nil {
		return h, nil, err
	}
	m, err := syncproto.Decode(payload, nil)
	return h, m, err
}

// handshake reads the primary's hello, answers as gw3 with a challenge and
// reads the primary's answer to it.
func (p *syncPeer) handshake() error {
	h, m, err := p.read(5 * time.Second)
	if err != nil {
		return fmt.Errorf("primary's hello: %w", err)
	}
	if hello, ok := m.(syncproto.Hello); !ok || hello.NodeID != "gw1" || h.Sender != "gw1" {
		return fmt.Errorf("first frame %T %+v from %q, want gw1's hello", m, m, h.Sender)
	}
	nonce := [syncproto.NonceLen]byte{3, 1, 4, 1, 5, 9, 2, 6}
	if err := p.write(syncproto.AppendHello(nil, syncproto.Hello{Version: syncproto.Version, NodeID: "gw3", Nonce: nonce})); err != nil {
		return err
	}
	_, m, err = p.read(5 * time.Second)
	if echo, ok := m.(syncproto.Hello); err != nil || !ok || echo.Nonce != nonce {
		return fmt.Errorf("primary's answer to the challenge: %v %+v", err, m)
	}
	return nil
}

// ackEvery sends an ack every interval until a write fails or stop closes;
// it returns when the connection failed (zero if stopped first).
func (p *syncPeer) ackEvery(interval time.Duration, stop <-chan struct{}) <-chan time.Time {
	failed := make(chan time.Time, 1)
	go func() {
		defer close(failed)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for range 1000 {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if err := p.write(syncproto.AppendAck(nil, syncproto.Ack{Seq: 0})); err != nil {
				failed <- time.Now()
				return
			}
		}
	}()
	return failed
}

// listenSmall listens on addr in node's namespace with a small receive
// buffer, which the accepted connections inherit: a stalled reader's
// window closes after a few kilobytes.
func listenSmall(t *testing.T, c *Cluster, node string, addr netip.AddrPort) net.Listener {
	t.Helper()
	var ln net.Listener
	err := c.InNamespace(node, func() error {
		lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4096)
			}); err != nil {
				return err
			}
			return serr
		}}
		var err error
		ln, err = lc.Listen(context.Background(), "tcp", addr.String())
		return err
	})
	if err != nil {
		t.Fatalf("listen %s in %s: %v", addr, node, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// connectFromPrimary accepts connections on ln until one completes the
// handshake with gw1, within the given time. Connections that fail it (a
// member that was primary for a moment, or one the primary gave up on
// while it waited in the backlog) are closed.
func connectFromPrimary(t *testing.T, ln net.Listener, within time.Duration) *syncPeer {
	t.Helper()
	deadline := time.Now().Add(within)
	var last error
	for range 50 {
		ln.(*net.TCPListener).SetDeadline(deadline)
		c, err := ln.Accept()
		if err != nil {
			t.Fatalf("no handshake with the primary on the stalled peer's port within %s: %v (last: %v)", within, err, last)
		}
		p := newSyncPeer(t, c)
		if last = p.handshake(); last == nil {
			t.Cleanup(func() { c.Close() })
			return p
		}
		c.Close()
	}
	t.Fatalf("no handshake with the primary: %v", last)
	return nil
}

func syncStats(t *testing.T, c *Cluster, gw string) sessions.Stats {
	t.Helper()
	st, err := trySyncStats(c, gw)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// trySyncStats is what `hagate sessions` shows, for any goroutine.
func trySyncStats(c *Cluster, gw string) (sessions.Stats, error) {
	var st sessions.Stats
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	resp, err := control.Call(ctx, c.Socket(gw), control.Request{Command: "sessions"})
	if err != nil {
		return st, fmt.Errorf("hagate sessions on %s: %w", gw, err)
	}
	if !resp.OK {
		return st, fmt.Errorf("hagate sessions on %s: %s", gw, resp.Error)
	}
	if err := resp.Decode(&st); err != nil {
		return st, fmt.Errorf("hagate sessions on %s: %w", gw, err)
	}
	return st, nil
}

func conntrackCount(t *testing.T, c *Cluster, gw string) int {
	t.Helper()
	out, err := c.Lab.Exec(gw, "conntrack", "-C")
	if err != nil {
		t.Fatalf("conntrack -C in %s: %v", gw, err)
	}
	n, _ := strconv.Atoi(strings.TrimSpace(out))
	return n
}

// rssMiB returns a process's resident memory.
func rssMiB(t *testing.T, pid int) float64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.Atoi(f[1])
			return float64(kb) / 1024
		}
	}
	t.Fatalf("no VmRSS for %d", pid)
	return 0
}

func deletes(cs []session.Change) []session.Change {
	out := make([]session.Change, len(cs))
	for i := range cs {
		out[i] = session.Change{Op: session.Delete, Session: session.Session{Key: cs[i].Session.Key}}
	}
	return out
}

func TestStalledSyncPeerLab(t *testing.T) {
	const (
		n      = 20000 // sessions per round
		rounds = 2     // create and delete: 2n changes a round, then n more
		// The engine's defaults, which the daemon uses.
		queueLen  = 65536
		ioTimeout = 10 * time.Second
	)
	// A 3 s dead interval: the load below (and whatever else the machine
	// runs) must not fail the heartbeats over, or gw2 would stop being the
	// healthy subordinate this test watches.
	c := setup(t, 3, Options{Extra: pickupOn + MetricsExtra(), Interval: 250 * time.Millisecond, LostThreshold: 12, Holddown: 4 * time.Second}, netlab.Options{})
	if err := nstest.RaiseConntrackMax(8 * n); err != nil {
		t.Fatal(err)
	}
	// gw1's send buffers stay small (64 KiB), so that a stalled reader
	// blocks its writes after thousands of changes, not after the 4 MiB
	// the kernel would otherwise buffer: the same stall, at a size the
	// test can reach in seconds.
	if out, err := c.Lab.Exec("gw1", "sysctl", "-w", "net.ipv4.tcp_wmem=4096 16384 65536"); err != nil {
		t.Fatalf("sysctl in gw1: %v: %s", err, out)
	}
	ln := listenSmall(t, c, "gw3", netip.AddrPortFrom(haAddr(3), sessions.DefaultPort))
	c.Start("gw1")
	c.Start("gw2")
	mustHolder(t, c, 15*time.Second, "gw1")

	stalled := connectFromPrimary(t, ln, 20*time.Second)
	stopAcks := make(chan struct{})
	defer close(stopAcks)
	cut := stalled.ackEvery(500*time.Millisecond, stopAcks)
	stallStart := time.Now()
	if err := netlab.WaitFor(10*time.Second, 100*time.Millisecond, func() (bool, error) {
		for _, p := range syncStats(t, c, "gw1").Peers {
			if p.Node == "gw2" && p.Connected {
				return true, nil
			}
		}
		return false, nil
	}); err != nil {
		t.Fatalf("gw1 never connected to gw2: %+v", syncStats(t, c, "gw1").Peers)
	}
	pid := c.DaemonPID("gw1")
	rss0 := rssMiB(t, pid)

	k, err := conntrack.Open(conntrack.Options{NetNSPath: "/run/netns/" + c.Lab.NS("gw1")})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	cs := established(n)
	// Sample the primary's view of the stalled peer while the load runs.
	var peak struct {
		sync.Mutex
		queued   int
		over     uint64
		progress int // samples in which gw2 acked more while gw3 was stalled
		lastAck  uint64
	}
	sampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for range 2000 {
			select {
			case <-sampling:
				return
			case <-time.After(100 * time.Millisecond):
			}
			st, err := trySyncStats(c, "gw1")
			if err != nil {
				continue
			}
			peak.Lock()
			peak.over = max(peak.over, st.QueueOverflows)
			var gw3, gw2 *sessions.PeerStats
			for i, p := range st.Peers {
				switch p.Node {
				case "gw3":
					gw3 = &st.Peers[i]
					peak.queued = max(peak.queued, p.Queued)
				case "gw2":
					gw2 = &st.Peers[i]
				}
			}
			if gw3 != nil && gw3.Connected && gw2 != nil {
				if gw2.AckedSeq > peak.lastAck {
					peak.progress++
				}
				peak.lastAck = gw2.AckedSeq
			}
			peak.Unlock()
		}
	}()
	loadStart := time.Now()
	for range rounds {
		if err := k.Apply(context.Background(), cs); err != nil {
			t.Fatal(err)
		}
		if err := k.Apply(context.Background(), deletes(cs)); err != nil {
			t.Fatal(err)
		}
	}
	if err := k.Apply(context.Background(), cs); err != nil {
		t.Fatal(err)
	}
	load := time.Since(loadStart)

	// gw2 keeps up while the stalled peer blocks the primary's writes.
	if err := netlab.WaitFor(30*time.Second, 100*time.Millisecond, func() (bool, error) {
		return conntrackCount(t, c, "gw2") >= n, nil
	}); err != nil {
		t.Fatalf("gw2 holds %d of the %d sessions: %v", conntrackCount(t, c, "gw2"), n, err)
	}
	synced := time.Since(loadStart)
	stillStalled := len(cut) == 0
	close(sampling)
	<-sampled
	st := syncStats(t, c, "gw1")
	rss1 := rssMiB(t, pid)
	t.Logf("%d changes made on gw1 in %s; gw2 held all %d sessions %s after the load started (stalled peer still connected: %v)",
		(2*rounds+1)*n, load.Round(time.Millisecond), n, synced.Round(time.Millisecond), stillStalled)
	t.Logf("gw1: queue overflows %d, event overflows %d, resyncs %d; RSS %.1f -> %.1f MiB", st.QueueOverflows, st.EventOverflows, st.Resyncs, rss0, rss1)
	for _, p := range st.Peers {
		t.Logf("gw1 peer %s (%s): connected %v, queued %d, sent seq %d, acked %d, bulks %d", p.Addr, p.Node, p.Connected, p.Queued, p.SentSeq, p.AckedSeq, p.Bulks)
		if p.Queued > queueLen {
			t.Errorf("%d changes queued for %s, over the queue bound %d", p.Queued, p.Addr, queueLen)
		}
	}
	// The queue is bounded; whether it overflows (and is counted) before
	// the write timeout disconnects the peer depends on the rate of changes.
	t.Logf("stalled peer's queue: at most %d changes seen (bound %d), overflows counted %d; gw2 acknowledged new batches in %d samples (every 100 ms) while the stalled peer was connected",
		peak.queued, queueLen, peak.over, peak.progress)
	if peak.queued > queueLen {
		t.Errorf("%d changes queued for the stalled peer, over the bound %d", peak.queued, queueLen)
	}
	if peak.progress == 0 {
		t.Error("gw2 acknowledged nothing new while the stalled peer was connected: the stall held up the healthy subordinate")
	}

	// The primary gives up on the stalled peer once a write has blocked
	// for its I/O timeout; the peer notices when its next ack is reset.
	var dropped time.Time
	select {
	case dropped = <-cut:
	case <-time.After(ioTimeout + 10*time.Second):
		t.Fatalf("the stalled peer is still connected %s after it stopped reading", time.Since(stallStart).Round(time.Second))
	}
	t.Logf("stalled peer disconnected %s after it stopped reading", dropped.Sub(stallStart).Round(100*time.Millisecond))

	// It connects again and reads: a fresh bulk carries the whole table.
	// The primary redialled while the test waited, and gave up on
	// connections that sat unanswered in the backlog: skip those.
	got, bulkStart := 0, false
	deadline := time.Now().Add(40 * time.Second)
	for attempt := 0; attempt < 10 && !bulkStart && time.Now().Before(deadline); attempt++ {
		healthy := connectFromPrimary(t, ln, time.Until(deadline))
		healthy.ackEvery(time.Second, stopAcks)
		got = 0
		for done := false; !done && time.Now().Before(deadline); {
			_, m, err := healthy.read(5 * time.Second)
			if err != nil {
				t.Logf("reconnection %d: %v (bulk started %v, %d sessions)", attempt+1, err, bulkStart, got)
				bulkStart = false
				healthy.c.Close()
				break
			}
			switch m := m.(type) {
			case syncproto.BulkStart:
				bulkStart = true
			case syncproto.Batch:
				got += len(m.Changes)
			case syncproto.BulkEnd:
				done = bulkStart
			}
		}
	}
	if !bulkStart || got < n {
		t.Fatalf("resync after the stall: bulk started %v, %d sessions, want at least %d", bulkStart, got, n)
	}
	t.Logf("reconnected peer resynced: bulk of %d sessions", got)
	mustRole(t, c, "gw1", "primary", "gw1")
	mustRole(t, c, "gw2", "subordinate", "gw1")
	if rss1-rss0 > 256 {
		t.Errorf("gw1's RSS grew by %.0f MiB during the stall", rss1-rss0)
	}
}

// recorder keeps a copy of every byte read from a connection.
type recorder struct {
	net.Conn
	mu  sync.Mutex
	got []byte
}

func (r *recorder) Read(b []byte) (int, error) {
	n, err := r.Conn.Read(b)
	r.mu.Lock()
	r.got = append(r.got, b[:n]...)
	r.mu.Unlock()
	return n, err
}

// TestSyncReplayToAnotherSubordinate replays, from gw3's address, the
// bytes of the primary's sync connection to gw3 (recorded by the test,
// which plays gw3) to the other subordinate gw2. An attacker on the link
// can record them without the key. gw2 must refuse them: they were sealed
// for another connection. gw2's hello challenges the primary with a fresh
// nonce that the recording cannot answer (it accepted such a replay before
// the challenge: a bulk that removed the newer sessions).
func TestSyncReplayToAnotherSubordinate(t *testing.T) {
	const n = 100
	c := setup(t, 3, Options{Extra: pickupOn, Interval: 250 * time.Millisecond, LostThreshold: 12, Holddown: 4 * time.Second}, netlab.Options{})
	ln := listenSmall(t, c, "gw3", netip.AddrPortFrom(haAddr(3), sessions.DefaultPort))
	c.Start("gw1")
	c.Start("gw2")
	mustHolder(t, c, 15*time.Second, "gw1")
	k, err := conntrack.Open(conntrack.Options{NetNSPath: "/run/netns/" + c.Lab.NS("gw1")})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	cs := established(n + n/2)
	if err := k.Apply(context.Background(), cs[:n]); err != nil {
		t.Fatal(err)
	}

	// Play gw3 and record what the primary sends, up to its bulk's end.
	var rec *recorder
	deadline := time.Now().Add(30 * time.Second)
	for got := 0; got < n && time.Now().Before(deadline); {
		ln.(*net.TCPListener).SetDeadline(deadline)
		conn, err := ln.Accept()
		if err != nil {
			t.Fatalf("the primary never connected to gw3: %v", err)
		}
		rec = &recorder{Conn: conn}
		p := newSyncPeer(t, rec)
		if p.handshake() != nil {
			conn.Close()
			continue
		}
		for got = 0; ; {
			_, m, err := p.read(5 * time.Second)
			if err != nil {
				conn.Close()
				break
			}
			if b, ok := m.(syncproto.Batch); ok {
				got += len(b.Changes)
			}
			if _, ok := m.(syncproto.BulkEnd); ok {
				break
			}
		}
		defer conn.Close()
	}
	rec.mu.Lock()
	replay := slices.Clone(rec.got)
	rec.mu.Unlock()

	// Sessions made after the recording: gw2 holds them too.
	if err := k.Apply(context.Background(), cs[n:]); err != nil {
		t.Fatal(err)
	}
	if err := netlab.WaitFor(20*time.Second, 100*time.Millisecond, func() (bool, error) {
		return conntrackCount(t, c, "gw2") >= len(cs), nil
	}); err != nil {
		t.Fatalf("gw2 holds %d of %d sessions", conntrackCount(t, c, "gw2"), len(cs))
	}

	conn, err := c.DialTCP(context.Background(), "gw3", netip.AddrPortFrom(haAddr(2), sessions.DefaultPort))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	go io.Copy(io.Discard, conn) // gw2's hello and acks
	if _, err := conn.Write(replay); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	var accepted []string
	for _, line := range strings.Split(c.Log("gw2"), "\n") {
		if strings.Contains(line, "session pickup: primary connected") && strings.Contains(line, "remote="+haAddr(3).String()) ||
			strings.Contains(line, fmt.Sprintf("sessions=%d ", n)) && strings.Contains(line, "bulk received") {
			accepted = append(accepted, line)
		}
	}
	if len(accepted) > 0 {
		t.Errorf("gw2 took %d bytes of the primary's connection to gw3, replayed from gw3's address, as a sync from its primary:\n%s",
			len(replay), strings.Join(accepted, "\n"))
	}
	if !strings.Contains(c.Log("gw2"), "did not answer the challenge") {
		t.Errorf("gw2 did not log the refused challenge:\n%s", c.Log("gw2"))
	}
	if got := conntrackCount(t, c, "gw2"); got < len(cs) {
		t.Errorf("gw2 holds %d of %d sessions after the replay", got, len(cs))
	}
}
