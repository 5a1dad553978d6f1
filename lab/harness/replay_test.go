package harness

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hagate/hagate/internal/seal"
	"github.com/hagate/hagate/lab/netlab"
)

// TestReplayedHeartbeat captures the primary's real heartbeats (at gw3,
// whose daemon does not run), then replays them from the primary's own
// address: while it is alive (replay), right after it lost power, and
// after max_clock_skew (stale). The replays must never bring the dead
// primary back or make the new primary step down, and every one is
// counted.
func TestReplayedHeartbeat(t *testing.T) {
	const skew = 5 * time.Second
	c := setup(t, 3, Options{Extra: MetricsExtra() + "security:\n  max_clock_skew: 5s\n"}, netlab.Options{})
	c.Start("gw1")
	c.Start("gw2")
	mustHolder(t, c, 15*time.Second, "gw1")
	capStart := time.Now()
	frames := capture(t, c, "gw3", haAddr(1), time.Second, 50)
	if len(frames) < 5 {
		t.Fatalf("captured %d heartbeats of gw1 in 1 s, want at least 5", len(frames))
	}
	t.Logf("captured %d heartbeats of gw1", len(frames))
	to2 := netip.AddrPortFrom(haAddr(2), hbPort)

	// A: replayed while gw1 lives, within max_clock_skew: gw2 has seen
	// every one of these sequence numbers.
	before := mustScrape(t, c, "gw2")
	sendFrames(t, c, "gw1", haAddr(1), to2, frames, 0)
	got := waitDrops(t, c, "gw2", before, []string{"replay"}, float64(len(frames)))
	t.Logf("replay while gw1 lives: gw2 drops %v", got)
	mustRole(t, c, "gw2", "subordinate", "gw1")

	// B: gw1 loses power; gw2 takes over. Its HA link comes back so the
	// attacker can send from its address, but its daemon stays dead.
	if err := c.PowerOff("gw1"); err != nil {
		t.Fatal(err)
	}
	mustHolder(t, c, 10*time.Second, "gw2")
	if err := c.Lab.Heal("gw1", netlab.HA); err != nil {
		t.Fatal(err)
	}
	failovers := mustScrape(t, c, "gw2").Sum("hagate_failovers_total")
	watch := watchHolders(t, c, []string{"gw2"})
	before = mustScrape(t, c, "gw2")
	sendFrames(t, c, "gw1", haAddr(1), to2, frames, 0)
	got = waitDrops(t, c, "gw2", before, []string{"replay", "stale"}, float64(len(frames)))
	t.Logf("replay %s after capture, gw1 dead: gw2 drops %v", time.Since(capStart).Round(100*time.Millisecond), got)
	if memberAlive(t, c, "gw2", "gw1") {
		t.Fatal("gw2 sees the dead gw1 alive after the replay")
	}

	// C: after max_clock_skew, replayed at the pace gw1 sent them.
	time.Sleep(time.Until(capStart.Add(skew + time.Second)))
	before = mustScrape(t, c, "gw2")
	sendFrames(t, c, "gw1", haAddr(1), to2, frames, 100*time.Millisecond)
	got = waitDrops(t, c, "gw2", before, []string{"stale"}, float64(len(frames)))
	t.Logf("replay %s after capture: gw2 drops %v", time.Since(capStart).Round(100*time.Millisecond), got)
	if memberAlive(t, c, "gw2", "gw1") {
		t.Fatal("gw2 sees the dead gw1 alive after the late replay")
	}
	watch.check(t)
	mustRole(t, c, "gw2", "primary", "gw2")
	if d := mustScrape(t, c, "gw2").Sum("hagate_failovers_total") - failovers; d != 0 {
		t.Fatalf("gw2 counted %v failovers during the replays", d)
	}
}

// TestReplayAfterReceiverRestart replays to a member that has just
// restarted the heartbeats a primary sent in the last half second before
// that restart, within max_clock_skew (the default, 60 s). The restarted
// member has no replay window for them; a clock allowance would let them
// in. Each must be dropped as "early": sent before the receiver started and
// not echoing its boot. While gw2 restarts the switch drops gw1's frames to
// it (and only those), so gw2 never hears gw1 live in its new boot and the
// replayed frames would be the first it hears; gw3's namespace (its daemon
// does not run) captures everything, gw2's new boot included.
func TestReplayAfterReceiverRestart(t *testing.T) {
	c := setup(t, 3, Options{Extra: MetricsExtra()}, netlab.Options{})
	c.Start("gw1")
	c.Start("gw2")
	mustHolder(t, c, 15*time.Second, "gw1")
	tap := startTap(t, c, "gw3")
	time.Sleep(500 * time.Millisecond)
	oldBoot := tap.boot(haAddr(2), 0)
	if oldBoot == 0 {
		t.Fatal("no heartbeat of gw2 captured at gw3")
	}
	if err := c.Stop("gw2"); err != nil {
		t.Fatal(err)
	}
	block := dropBetween(t, c, "gw1-"+netlab.HA, "gw2-"+netlab.HA)
	if err := c.Start("gw2"); err != nil {
		t.Fatal(err)
	}
	var boot uint64
	if err := netlab.WaitFor(5*time.Second, 20*time.Millisecond, func() (bool, error) {
		boot = tap.boot(haAddr(2), oldBoot)
		return boot != 0, nil
	}); err != nil {
		t.Fatal("no heartbeat of gw2's new boot captured")
	}
	started := time.Unix(0, int64(boot))
	time.Sleep(300 * time.Millisecond)
	if err := c.PowerOff("gw1"); err != nil {
		t.Fatal(err)
	}
	frames := tap.stop()
	block()
	if err := c.Lab.Heal("gw1", netlab.HA); err != nil {
		t.Fatal(err)
	}
	mustHolder(t, c, 10*time.Second, "gw2")

	// gw1's heartbeats sent in the last 500 ms before gw2 started.
	var replay [][]byte
	for _, f := range frames {
		h, _, err := seal.ParseHeader(f.b)
		if err == nil && f.from == haAddr(1) && !h.Sent.Before(started.Add(-500*time.Millisecond)) && h.Sent.Before(started) {
			replay = append(replay, f.b)
		}
	}
	if len(replay) < 2 {
		t.Fatalf("captured %d heartbeats of gw1 in the 500 ms before gw2 started, want at least 2", len(replay))
	}
	before := mustScrape(t, c, "gw2")
	watch := watchHolders(t, c, []string{"gw2"})
	sendFrames(t, c, "gw1", haAddr(1), netip.AddrPortFrom(haAddr(2), hbPort), replay, 100*time.Millisecond)
	got := waitDrops(t, c, "gw2", before, []string{"early"}, float64(len(replay)))
	time.Sleep(300 * time.Millisecond) // a heartbeat let in would show by now
	watch.check(t)
	after := mustScrape(t, c, "gw2")
	rx := after.Sum("hagate_heartbeats_received_total", `peer="gw1"`) - before.Sum("hagate_heartbeats_received_total", `peer="gw1"`)
	t.Logf("replayed %d heartbeats of gw1 sent 0-500 ms before gw2 started: gw2 drops %v, received %v", len(replay), got, rx)
	if rx != 0 || got["early"] != float64(len(replay)) {
		t.Errorf("gw2 received %v and dropped %v as early of the %d replayed heartbeats, want 0 and all", rx, got["early"], len(replay))
	}
	if memberAlive(t, c, "gw2", "gw1") {
		t.Error("the restarted gw2 sees the dead gw1 alive after the replay")
	}
	mustRole(t, c, "gw2", "primary", "gw2")
}

// tapFrame is one datagram a tap read.
type tapFrame struct {
	from netip.Addr
	b    []byte
}

// tap reads every datagram to the heartbeat port in a namespace whose
// daemon does not run, until stopped.
type tap struct {
	conn *net.UDPConn
	done chan struct{}
	mu   sync.Mutex
	got  []tapFrame
}

func startTap(t *testing.T, c *Cluster, node string) *tap {
	t.Helper()
	conn, err := c.ListenUDP(node, netip.AddrPortFrom(netip.IPv4Unspecified(), hbPort))
	if err != nil {
		t.Fatal(err)
	}
	tp := &tap{conn: conn, done: make(chan struct{})}
	go func() {
		defer close(tp.done)
		buf := make([]byte, 2048)
		for range 100_000 {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return // closed by stop
			}
			tp.mu.Lock()
			tp.got = append(tp.got, tapFrame{from.Addr().Unmap(), slices.Clone(buf[:n])})
			tp.mu.Unlock()
		}
	}()
	t.Cleanup(func() { tp.stop() })
	return tp
}

// boot returns the boot (sealed frame epoch) of the last frame from src
// whose boot is not skip, 0 if none.
func (tp *tap) boot(src netip.Addr, skip uint64) uint64 {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	for i := len(tp.got) - 1; i >= 0; i-- {
		if tp.got[i].from != src {
			continue
		}
		if h, _, err := seal.ParseHeader(tp.got[i].b); err == nil && h.Epoch != skip {
			return h.Epoch
		}
	}
	return 0
}

// stop ends the capture and returns what it read.
func (tp *tap) stop() []tapFrame {
	tp.conn.Close()
	<-tp.done
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return tp.got
}

// dropBetween makes the lab's switch drop every frame from one port to
// another (one way only), in a table of its own beside the lab's fault
// table; the returned function removes it, as does the lab's teardown.
func dropBetween(t *testing.T, c *Cluster, from, to string) func() {
	t.Helper()
	table := fmt.Sprintf("table bridge hostile {\n\tchain forward {\n\t\ttype filter hook forward priority -1; policy accept;\n\t\tiifname %q oifname %q counter drop\n\t}\n}\n", from, to)
	cmd := c.Lab.Command(netlab.Switch, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(table)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft in the switch: %v: %s", err, out)
	}
	var once sync.Once
	undo := func() {
		once.Do(func() {
			if out, err := c.Lab.Exec(netlab.Switch, "nft", "delete", "table", "bridge", "hostile"); err != nil {
				t.Errorf("nft delete table: %v: %s", err, out)
			}
		})
	}
	t.Cleanup(undo)
	return undo
}
