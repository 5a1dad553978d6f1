package harness

// Hostile input on the session-sync port (TCP 703), against real daemons:
// a replayed primary hello during a big bulk, and connection floods from
// the LAN side and from a peer's address on the HA link.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hagate/hagate/internal/nstest"
	"github.com/hagate/hagate/internal/seal"
	"github.com/hagate/hagate/internal/sessions"
	"github.com/hagate/hagate/internal/sessions/conntrack"
	"github.com/hagate/hagate/internal/sessions/syncproto"
	"github.com/hagate/hagate/lab/netlab"
)

// dialFrom opens a TCP connection from src (an address of node) to dst,
// inside node's namespace.
func dialFrom(c *Cluster, node string, src netip.Addr, dst netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	var conn net.Conn
	err := c.InNamespace(node, func() error {
		d := net.Dialer{Timeout: timeout, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))}
		var err error
		conn, err = d.Dial("tcp", dst.String())
		return err
	})
	return conn, err
}

// readSyncFrame reads one length-prefixed sync frame (without its prefix).
func readSyncFrame(conn net.Conn, timeout time.Duration) ([]byte, error) {
	if err := conn.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return nil, err
	}
	var hdr [4]byte
	if _, err := io.ReadFull(conn, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > sessions.MaxFrame {
		return nil, fmt.Errorf("frame of %d bytes", n)
	}
	b := make([]byte, n)
	_, err := io.ReadFull(conn, b)
	return b, err
}

// replayOutcome is what a replayed handshake got from the subordinate.
type replayOutcome struct {
	challenged time.Time // when the subordinate answered the hello with a challenge
	answer     syncproto.Hello
	closed     bool // it closed the connection after the recorded (wrong) answer
}

// replayHandshake connects from gw1's address to dst and plays the
// recorded hello and answer: the subordinate must authenticate the hello
// (it answers with its own hello and a nonce, which proves the replay
// reached its handshake), then refuse the recorded answer to another
// nonce by closing the connection.
func replayHandshake(t *testing.T, c *Cluster, dst netip.AddrPort, frames [][]byte) replayOutcome {
	t.Helper()
	var out replayOutcome
	conn, err := dialFrom(c, "gw1", haAddr(1), dst, 3*time.Second)
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	defer conn.Close()
	if _, err := conn.Write(frames[0]); err != nil {
		t.Fatalf("replay the hello: %v", err)
	}
	f, err := readSyncFrame(conn, 5*time.Second)
	if err != nil {
		t.Logf("replayed hello: no answer from %s: %v", dst, err)
		return out
	}
	kr, err := seal.ParseKeys([]byte(Key))
	if err != nil {
		t.Fatal(err)
	}
	_, payload, err := seal.NewOpener(kr, seal.Encrypt, seal.Sync, groupID, "gw1", time.Minute).Open(f, time.Now())
	if err != nil {
		t.Fatalf("the subordinate's answer to the replayed hello: %v", err)
	}
	m, err := syncproto.Decode(payload, nil)
	if hello, ok := m.(syncproto.Hello); err == nil && ok && hello.Nonce != ([syncproto.NonceLen]byte{}) {
		out.challenged, out.answer = time.Now(), hello
	} else {
		t.Fatalf("the subordinate answered the replayed hello with %T %+v (%v), want a hello with a challenge", m, m, err)
	}
	if _, err := conn.Write(frames[1]); err != nil {
		t.Fatalf("replay the answer: %v", err)
	}
	_, err = readSyncFrame(conn, 5*time.Second)
	out.closed = errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
	if err == nil {
		t.Errorf("the subordinate sent another frame after the recorded answer to another challenge")
	}
	return out
}

// TestReplayedSyncHelloDuringBulk is issue 15's finding 1 in the lab: an
// attacker on the HA link records the primary's hello to gw2 (a passive
// tap in gw2's namespace: no key) and replays it, from the primary's
// address, to gw3 while gw3 receives its bulk of 100,000 sessions. gw3
// must challenge the replay and refuse it without touching the primary's
// connection: the bulk completes at the first attempt, no resync, and a
// live TCP session survives the primary's power loss right after, through
// gw3. The test checks the replay reached gw3's handshake (gw3 answered
// it with a challenge, and counted the wrong answer), so a replay that
// never arrived cannot pass for one that was refused.
func TestReplayedSyncHelloDuringBulk(t *testing.T) {
	const n = 100_000
	// gw3 is the next primary (150 over gw2's 100), so the session lives
	// on through the subordinate that was attacked.
	c := setup(t, 3, Options{Extra: pickupOn + MetricsExtra(), Priorities: []int{200, 100, 150},
		Interval: 250 * time.Millisecond, LostThreshold: 12, Holddown: 4 * time.Second}, netlab.Options{})
	if err := nstest.RaiseConntrackMax(4 * n); err != nil {
		t.Fatal(err)
	}
	c.Start("gw1")
	mustHolder(t, c, 15*time.Second, "gw1")
	k, err := conntrack.Open(conntrack.Options{NetNSPath: "/run/netns/" + c.Lab.NS("gw1")})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	loadStart := time.Now()
	if err := k.Apply(context.Background(), established(n)); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d sessions made on gw1 in %s", n, time.Since(loadStart).Round(time.Millisecond))

	// gw2 joins; the attacker records the primary's connection to it.
	syncPort := func(k int) netip.AddrPort { return netip.AddrPortFrom(haAddr(k), sessions.DefaultPort) }
	tap := startTCPTap(t, c, "gw2", netlab.HA, netip.AddrPortFrom(haAddr(1), 0), syncPort(2))
	c.Start("gw2")
	var recorded [][]byte
	if err := netlab.WaitFor(20*time.Second, 50*time.Millisecond, func() (bool, error) {
		recorded = tap.handshakeFrames("gw1")
		return recorded != nil, nil
	}); err != nil {
		t.Fatal("no handshake of gw1 with gw2 recorded on the HA link")
	}
	tap.stop()
	h, _, _ := seal.ParseHeader(recorded[0][4:])
	if err := netlab.WaitFor(40*time.Second, 200*time.Millisecond, func() (bool, error) {
		return conntrackCount(t, c, "gw2") >= n, nil
	}); err != nil {
		t.Fatalf("gw2 holds %d of the %d sessions", conntrackCount(t, c, "gw2"), n)
	}
	s := startSession(t, c)

	// gw3 joins and receives its bulk; the replay goes in once the bulk
	// has started installing.
	before := syncStats(t, c, "gw1")
	c.Start("gw3")
	if err := netlab.WaitFor(40*time.Second, 50*time.Millisecond, func() (bool, error) {
		return conntrackCount(t, c, "gw3") >= 2000, nil
	}); err != nil {
		t.Fatal("gw3's bulk never started installing")
	}
	st3 := syncStats(t, c, "gw3")
	atReplay := conntrackCount(t, c, "gw3")
	got := replayHandshake(t, c, syncPort(3), recorded)
	t.Logf("replayed gw1's hello to gw2 (sent %s earlier) to gw3 with %d sessions installed: challenged %v, closed after the recorded answer %v",
		time.Since(h.Sent).Round(100*time.Millisecond), atReplay, !got.challenged.IsZero(), got.closed)
	if got.challenged.IsZero() || got.answer.NodeID != "gw3" {
		t.Fatalf("gw3 did not take the replayed hello into its handshake (answer %+v): the replay proves nothing", got.answer)
	}
	if !got.closed {
		t.Errorf("gw3 did not close the replayed connection after the wrong answer to its challenge")
	}

	// The bulk completes, at the first attempt, after the replay.
	var bulk sessions.BulkStats
	if err := netlab.WaitFor(40*time.Second, 500*time.Millisecond, func() (bool, error) {
		st, err := trySyncStats(c, "gw3")
		bulk = st.LastBulk
		return err == nil && bulk.Sessions >= n, err
	}); err != nil {
		t.Fatalf("gw3's bulk never completed: last bulk %+v", bulk)
	}
	after3, after1 := syncStats(t, c, "gw3"), syncStats(t, c, "gw1")
	var peer sessions.PeerStats
	for _, p := range after1.Peers {
		if p.Node == "gw3" {
			peer = p
		}
	}
	t.Logf("gw3's bulk: %d sessions in %s, completed %s after the replay; gw1's link to gw3: %d bulks, %d resyncs; gw3 frame errors %d -> %d",
		bulk.Sessions, bulk.Duration.Round(time.Millisecond), bulk.At.Sub(got.challenged).Round(time.Millisecond),
		peer.Bulks, peer.Resyncs, st3.FrameErrors, after3.FrameErrors)
	if !bulk.At.After(got.challenged) {
		t.Errorf("gw3's bulk completed at %s, before the replay at %s: the replay was not during the bulk", bulk.At, got.challenged)
	}
	if peer.Bulks != 1 || peer.Resyncs != 0 || after1.Resyncs != before.Resyncs || after3.Resyncs != 0 {
		t.Errorf("gw3 needed more than one bulk: gw1's link to gw3 %d bulks, %d resyncs; resyncs gw1 %d -> %d, gw3 %d",
			peer.Bulks, peer.Resyncs, before.Resyncs, after1.Resyncs, after3.Resyncs)
	}
	if after3.FrameErrors <= st3.FrameErrors {
		t.Errorf("gw3 did not count the replay's wrong answer (frame errors %d -> %d)", st3.FrameErrors, after3.FrameErrors)
	}
	if strings.Contains(c.Log("gw3"), "sync connection from primary ended") {
		t.Errorf("gw3 lost its sync connection from the primary")
	}

	// Right after, the primary loses power: the session carries on
	// through gw3.
	if err := c.PowerOff("gw1"); err != nil {
		t.Fatal(err)
	}
	mustHolder(t, c, 15*time.Second, "gw3")
	survived, rep := finish(t, s)
	t.Logf("session: %s", rep)
	if !survived {
		t.Fatalf("session did not survive the failover to gw3: %s", rep)
	}
}

// floodSync opens up to n TCP connections from src in node's namespace to
// dst, for at most d, and keeps the ones that connect open (an idle
// attacker's connection) until the returned function closes them. It
// returns how many connected and how many the kernel refused (RST) or
// timed out.
func floodSync(t *testing.T, c *Cluster, node string, src netip.Addr, dst netip.AddrPort, n int, d time.Duration) (open []net.Conn, refused, timedOut int) {
	t.Helper()
	err := c.InNamespace(node, func() error {
		dl := net.Dialer{Timeout: 200 * time.Millisecond, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))}
		start := time.Now()
		for i := 0; i < n && time.Since(start) < d; i++ {
			conn, err := dl.Dial("tcp", dst.String())
			switch {
			case err == nil:
				open = append(open, conn)
			case errors.Is(err, syscall.ECONNREFUSED):
				refused++
			case isTimeout(err):
				timedOut++
			default:
				return fmt.Errorf("dial %s: %w", dst, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, conn := range open {
			conn.Close()
		}
	})
	return open, refused, timedOut
}

// TestSyncPortFlood floods the session-sync port (TCP 703) with 2,000
// connections (at most 10 s): from the client on the LAN, to the primary's
// LAN and HA addresses, then from gw3's address on the HA link (a
// configured peer whose daemon does not run) to the subordinate gw2. From
// the LAN, nothing may connect: the listener is bound to the sync link, so
// the kernel answers with a reset, and the daemon never sees them. From a
// peer address the connections reach the daemon, which refuses all but a
// few handshakes at accept and closes those after the handshake timeout;
// its memory and goroutines stay flat, and the cluster keeps syncing: a
// session opened after the flood survives a failover.
func TestSyncPortFlood(t *testing.T) {
	const (
		conns     = 2000
		floodFor  = 10 * time.Second
		maxGrowth = 8.0 // MiB of RSS
	)
	c := setup(t, 3, Options{Extra: pickupOn + MetricsExtra()}, netlab.Options{})
	c.Start("gw1")
	c.Start("gw2")
	mustHolder(t, c, 15*time.Second, "gw1")
	if err := netlab.WaitFor(10*time.Second, 100*time.Millisecond, func() (bool, error) {
		for _, p := range syncStats(t, c, "gw1").Peers {
			if p.Node == "gw2" && p.Connected {
				return true, nil
			}
		}
		return false, nil
	}); err != nil {
		t.Fatal("gw1 never connected to gw2's sync port")
	}

	// The control: the port takes connections from a peer on the HA
	// link, so what the LAN side gets below is the binding's doing.
	probe, err := dialFrom(c, "gw3", haAddr(3), netip.AddrPortFrom(haAddr(1), sessions.DefaultPort), 3*time.Second)
	if err != nil {
		t.Fatalf("gw3's address cannot connect to gw1's sync port on the HA link: %v", err)
	}
	probe.Close()

	t.Run("lan", func(t *testing.T) {
		before := syncStats(t, c, "gw1")
		pid := c.DaemonPID("gw1")
		rss0 := rssMiB(t, pid)
		lanAddr, err := netlab.GatewayAddr(1, netlab.LAN)
		if err != nil {
			t.Fatal(err)
		}
		for _, dst := range []netip.Addr{lanAddr.Addr(), haAddr(1)} {
			open, refused, timedOut := floodSync(t, c, netlab.Client, netlab.ClientAddr.Addr(), netip.AddrPortFrom(dst, sessions.DefaultPort), conns/2, floodFor/2)
			t.Logf("client to %s:%d: %d connected, %d reset, %d unanswered", dst, sessions.DefaultPort, len(open), refused, timedOut)
			if len(open) > 0 {
				t.Errorf("%d connections from the LAN to %s:%d were accepted", len(open), dst, sessions.DefaultPort)
			}
			if refused+timedOut < conns/4 {
				t.Errorf("only %d connection attempts from the LAN to %s in %s", refused+timedOut, dst, floodFor/2)
			}
		}
		after := syncStats(t, c, "gw1")
		rss1 := rssMiB(t, pid)
		t.Logf("gw1: refused connections %d -> %d, RSS %.1f -> %.1f MiB", before.Refused, after.Refused, rss0, rss1)
		if after.Refused != before.Refused {
			t.Errorf("gw1's daemon saw %d connections from the LAN", after.Refused-before.Refused)
		}
	})

	t.Run("peer", func(t *testing.T) {
		pid := c.DaemonPID("gw2")
		before := syncStats(t, c, "gw2")
		rss0 := rssMiB(t, pid)
		g0 := mustScrape(t, c, "gw2").Sum("go_goroutines")
		start := time.Now()
		open, refused, timedOut := floodSync(t, c, "gw3", haAddr(3), netip.AddrPortFrom(haAddr(2), sessions.DefaultPort), conns, floodFor)
		took := time.Since(start)
		time.Sleep(200 * time.Millisecond) // the last accepts
		during := syncStats(t, c, "gw2")
		rss1 := rssMiB(t, pid)
		g1 := mustScrape(t, c, "gw2").Sum("go_goroutines")
		t.Logf("gw3's address to gw2:%d: %d connected in %s (%d reset, %d unanswered by the kernel); gw2 refused %d at accept; RSS %.1f -> %.1f MiB, goroutines %.0f -> %.0f with all %d held open",
			sessions.DefaultPort, len(open), took.Round(time.Millisecond), refused, timedOut, during.Refused-before.Refused, rss0, rss1, g0, g1, len(open))
		if len(open) < conns/2 {
			t.Fatalf("only %d of %d flood connections reached gw2's sync port: the flood proves nothing", len(open), conns)
		}
		// All but the handshakes let in (4 per source, each for up to 3 s)
		// are refused at accept.
		slots := 4 * (1 + int(took/(3*time.Second)))
		if int(during.Refused-before.Refused) < len(open)-slots {
			t.Errorf("gw2 refused %d of %d connections from one address at accept, want all but %d", during.Refused-before.Refused, len(open), slots)
		}
		if rss1-rss0 > maxGrowth {
			t.Errorf("gw2's RSS grew by %.1f MiB with %d idle connections", rss1-rss0, len(open))
		}
		if g1-g0 > 8 {
			t.Errorf("gw2's goroutines grew from %.0f to %.0f with %d idle connections", g0, g1, len(open))
		}
		// Every connection is closed by gw2: at accept, or when its
		// handshake times out (3 s).
		deadline := time.Now().Add(5 * time.Second)
		stillOpen := 0
		for _, conn := range open {
			conn.SetReadDeadline(deadline)
			if _, err := conn.Read(make([]byte, 1)); isTimeout(err) {
				stillOpen++
			}
		}
		if stillOpen > 0 {
			t.Errorf("%d of %d flood connections still open 5 s after the flood", stillOpen, len(open))
		}
		rss2 := rssMiB(t, pid)
		t.Logf("gw2 after the flood: RSS %.1f MiB, %d connections left open", rss2, stillOpen)
	})

	// The cluster keeps syncing: a session opened now is on gw2 and
	// survives the primary's power loss.
	s := startSession(t, c)
	out, err := exec.Command(c.Bin, "sessions", "--config", c.ConfigPath("gw2")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "tcp 1") {
		t.Errorf("hagate sessions on gw2 after the flood: %v\n%s", err, out)
	}
	if err := c.PowerOff("gw1"); err != nil {
		t.Fatal(err)
	}
	mustHolder(t, c, 10*time.Second, "gw2")
	survived, rep := finish(t, s)
	t.Logf("session opened after the flood: %s", rep)
	if !survived {
		t.Fatalf("session opened after the flood did not survive the failover: %s", rep)
	}
}
