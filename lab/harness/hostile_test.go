package harness

// Hostile input on the heartbeat links, against real daemons in the lab.
// Every test here plays an attacker who sits on the HA link and can send
// from a configured peer's address (gw3's, whose daemon never runs, or a
// dead gw1's), but does not know the cluster key.

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hagate/hagate/internal/cluster"
	"github.com/hagate/hagate/internal/heartbeat"
	"github.com/hagate/hagate/internal/seal"
	"github.com/hagate/hagate/internal/sessions"
	"github.com/hagate/hagate/lab/netlab"
)

const (
	hbPort     = 703
	dropMetric = "hagate_heartbeats_dropped_total"
	groupID    = 7 // what harness.New writes
)

func haAddr(k int) netip.Addr {
	p, err := netlab.GatewayAddr(k, netlab.HA)
	if err != nil {
		panic(err)
	}
	return p.Addr()
}

func mustScrape(t *testing.T, c *Cluster, gw string) Samples {
	t.Helper()
	s, err := c.Scrape(context.Background(), gw)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// dropsDelta returns the drops per reason counted by gw since before.
func dropsDelta(t *testing.T, c *Cluster, gw string, before Samples) map[string]float64 {
	t.Helper()
	now := mustScrape(t, c, gw).ByLabel(dropMetric, "reason")
	prev := before.ByLabel(dropMetric, "reason")
	out := map[string]float64{}
	for r, v := range now {
		if d := v - prev[r]; d != 0 {
			out[r] = d
		}
	}
	return out
}

// waitDrops waits until gw has counted at least want drops, summed over
// reasons, since before; it returns the drops per reason.
func waitDrops(t *testing.T, c *Cluster, gw string, before Samples, reasons []string, want float64) map[string]float64 {
	t.Helper()
	var got map[string]float64
	err := netlab.WaitFor(5*time.Second, 100*time.Millisecond, func() (bool, error) {
		got = dropsDelta(t, c, gw, before)
		var n float64
		for _, r := range reasons {
			n += got[r]
		}
		return n >= want, nil
	})
	if err != nil {
		t.Fatalf("%s counted drops %v, want at least %v for reasons %v: %v", gw, got, want, reasons, err)
	}
	return got
}

// sendFrames sends frames from node's namespace, from address src, to dst,
// one every pace (0: as fast as it can).
func sendFrames(t *testing.T, c *Cluster, node string, src netip.Addr, dst netip.AddrPort, frames [][]byte, pace time.Duration) {
	t.Helper()
	if err := trySend(c, node, src, dst, frames, pace); err != nil {
		t.Fatal(err)
	}
}

// trySend is sendFrames for a goroutine other than the test's.
func trySend(c *Cluster, node string, src netip.Addr, dst netip.AddrPort, frames [][]byte, pace time.Duration) error {
	conn, err := c.ListenUDP(node, netip.AddrPortFrom(src, 0))
	if err != nil {
		return err
	}
	defer conn.Close()
	for _, f := range frames {
		if _, err := conn.WriteToUDPAddrPort(f, dst); err != nil {
			return fmt.Errorf("send to %s: %w", dst, err)
		}
		if pace > 0 {
			time.Sleep(pace)
		}
	}
	return nil
}

// capture reads the heartbeats from src arriving at node (whose daemon must
// not run) on the heartbeat port, for d or until max frames.
func capture(t *testing.T, c *Cluster, node string, src netip.Addr, d time.Duration, max int) [][]byte {
	t.Helper()
	conn, err := c.ListenUDP(node, netip.AddrPortFrom(netip.IPv4Unspecified(), hbPort))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var frames [][]byte
	deadline := time.Now().Add(d)
	buf := make([]byte, 2048)
	for len(frames) < max && time.Now().Before(deadline) {
		conn.SetReadDeadline(deadline)
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || isTimeout(err) {
				break
			}
			t.Fatal(err)
		}
		if from.Addr().Unmap() == src {
			frames = append(frames, slices.Clone(buf[:n]))
		}
	}
	return frames
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// memberAlive reports whether gw's daemon sees member as alive.
func memberAlive(t *testing.T, c *Cluster, gw, member string) bool {
	t.Helper()
	st, err := c.Status(gw)
	if err != nil {
		t.Fatalf("status of %s: %v", gw, err)
	}
	for _, m := range st.Members {
		if m.NodeID == member && m.Alive {
			return true
		}
	}
	return false
}

func mustRole(t *testing.T, c *Cluster, gw, role, primary string) {
	t.Helper()
	st, err := c.Status(gw)
	if err != nil {
		t.Fatalf("status of %s: %v", gw, err)
	}
	if st.Role != role || st.PrimaryID != primary {
		t.Fatalf("%s: role %q primary %q, want %q and %q", gw, st.Role, st.PrimaryID, role, primary)
	}
}

// realKeyID is the key id of the harness's cluster key: it travels in clear
// in every frame, so an attacker has it.
func realKeyID(t *testing.T) [4]byte {
	t.Helper()
	kr, err := seal.ParseKeys([]byte(Key))
	if err != nil {
		t.Fatal(err)
	}
	b, err := hex.DecodeString(kr.IDs()[0])
	if err != nil || len(b) != 4 {
		t.Fatalf("key id %q: %v", kr.IDs()[0], err)
	}
	return [4]byte(b)
}

// forge seals n heartbeats from sender with mode and key (nil: plaintext);
// withID, if set, replaces the key id in the frame with the cluster's.
func forge(t *testing.T, sender string, mode seal.Mode, key string, withID *[4]byte, hb cluster.Heartbeat, n int) [][]byte {
	t.Helper()
	return forgeBoot(t, sender, uint64(time.Now().UnixNano()), mode, key, withID, hb, n)
}

// forgeBoot is forge in the name of a given boot of sender (the frames'
// epoch).
func forgeBoot(t *testing.T, sender string, boot uint64, mode seal.Mode, key string, withID *[4]byte, hb cluster.Heartbeat, n int) [][]byte {
	t.Helper()
	var kr *seal.Keyring
	if key != "" {
		var err error
		if kr, err = seal.ParseKeys([]byte(key)); err != nil {
			t.Fatal(err)
		}
	}
	s, err := seal.NewSealer(kr, mode, seal.Heartbeat, groupID, sender, boot)
	if err != nil {
		t.Fatal(err)
	}
	var frames [][]byte
	for i := range n {
		hb.Count = uint64(i + 1)
		f := s.Seal(nil, 0, time.Now(), heartbeat.Encode(nil, heartbeat.Message{HB: hb}))
		if withID != nil {
			copy(f[8:12], withID[:]) // the key id's place in the header
		}
		frames = append(frames, f)
	}
	return frames
}

// TestWrongKeyNeverJoinsCounted is TestWrongKeyNeverJoins with the drops
// checked: a member with another cluster's key is refused by key id, every
// refusal is counted, and `hagate status` says so beside its address.
func TestWrongKeyNeverJoinsCounted(t *testing.T) {
	c := setup(t, 3, Options{Extra: MetricsExtra(), Keys: map[string]string{"gw3": KeyFor("a key from another cluster")}}, netlab.Options{})
	c.Start("gw1")
	c.Start("gw2")
	mustHolder(t, c, 15*time.Second, "gw1")
	before := map[string]Samples{"gw1": mustScrape(t, c, "gw1"), "gw2": mustScrape(t, c, "gw2")}
	c.Start("gw3")
	time.Sleep(2 * time.Second)
	for _, gw := range []string{"gw1", "gw2"} {
		if memberAlive(t, c, gw, "gw3") {
			t.Fatalf("%s lists gw3 as a member", gw)
		}
		// 2 s of heartbeats every 100 ms: at least a dozen, all refused
		// because the key id is unknown.
		got := waitDrops(t, c, gw, before[gw], []string{"key"}, 10)
		t.Logf("%s drops since gw3 started: %v", gw, got)
	}
	mustRole(t, c, "gw2", "subordinate", "gw1")
	// `hagate status` names the reason, beside gw3's address.
	for _, gw := range []string{"gw1", "gw2"} {
		out, err := exec.Command(c.Bin, "status", "--config", c.ConfigPath(gw)).CombinedOutput()
		if err != nil && !strings.Contains(string(out), "frames dropped") {
			t.Fatalf("hagate status on %s: %v\n%s", gw, err, out)
		}
		line := lineWith(string(out), haAddr(3).String()+": ")
		if !strings.Contains(line, "frames dropped: unknown key id (wrong key?)") {
			t.Errorf("hagate status on %s does not say why gw3 (%s) is not heard:\n%s", gw, haAddr(3), out)
		}
		t.Logf("hagate status on %s: %s", gw, strings.TrimSpace(line))
	}
	if st, err := c.Status("gw3"); err != nil || len(st.Members) != 1 {
		t.Fatalf("gw3 status: %v, members %v", err, st.Members)
	}
	if got := mustScrape(t, c, "gw3").ByLabel(dropMetric, "reason"); got["key"] < 10 {
		t.Fatalf("gw3 drops %v: want the others' heartbeats refused by key", got)
	}
}

// lineWith returns the first line of text that contains s, "" if none.
func lineWith(text, s string) string {
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, s) {
			return line
		}
	}
	return ""
}

// TestForgedHeartbeat sends, from gw3's address, heartbeats claiming the
// strongest possible member (priority 255, a year of uptime, all links up,
// primary) without the cluster key: in plaintext, sealed with another key,
// and sealed with another key under the cluster's key id. It also forges a
// "leaving" heartbeat from the primary gw1 to gw2. None may change a role;
// each is counted by its reason.
func TestForgedHeartbeat(t *testing.T) {
	c := setup(t, 3, Options{Extra: MetricsExtra()}, netlab.Options{})
	c.Start("gw1")
	c.Start("gw2")
	mustHolder(t, c, 15*time.Second, "gw1")
	id := realKeyID(t)
	strong := cluster.Heartbeat{Role: cluster.Primary, Priority: 255, MonitoredUp: 2, MonitoredTotal: 2,
		Uptime: 365 * 24 * time.Hour, Elected: "gw3"}
	const n = 20
	variants := []struct {
		name   string
		frames [][]byte
		reason string
	}{
		{"plaintext", forge(t, "gw3", seal.Plain, "", nil, strong, n), "mode"},
		{"other key", forge(t, "gw3", seal.Encrypt, "an attacker's own key", nil, strong, n), "key"},
		{"other key, cluster key id", forge(t, "gw3", seal.Encrypt, "an attacker's own key", &id, strong, n), "auth"},
		{"authenticate-only, cluster key id", forge(t, "gw3", seal.Authenticate, "an attacker's own key", &id, strong, n), "mode"},
	}
	leaving := cluster.Heartbeat{Role: cluster.Primary, Priority: 200, MonitoredUp: 0, MonitoredTotal: 2, Leaving: true}
	forgedExit := forge(t, "gw1", seal.Encrypt, "an attacker's own key", &id, leaving, n)

	before := map[string]Samples{"gw1": mustScrape(t, c, "gw1"), "gw2": mustScrape(t, c, "gw2")}
	watch := watchHolders(t, c, []string{"gw1"})
	for _, v := range variants {
		for _, k := range []int{1, 2} {
			sendFrames(t, c, "gw3", haAddr(3), netip.AddrPortFrom(haAddr(k), hbPort), v.frames, 0)
		}
	}
	// The primary "leaves", to gw2 only: gw1 would refuse its own id anyway.
	sendFrames(t, c, "gw3", haAddr(3), netip.AddrPortFrom(haAddr(2), hbPort), forgedExit, 0)
	for _, gw := range []string{"gw1", "gw2"} {
		want := map[string]float64{"mode": 2 * n, "key": n, "auth": n}
		if gw == "gw2" {
			want["auth"] += n
		}
		var got map[string]float64
		err := netlab.WaitFor(5*time.Second, 100*time.Millisecond, func() (bool, error) {
			got = dropsDelta(t, c, gw, before[gw])
			for r, w := range want {
				if got[r] < w {
					return false, nil
				}
			}
			return true, nil
		})
		if err != nil {
			t.Fatalf("%s drops %v, want at least %v: %v", gw, got, want, err)
		}
		t.Logf("%s drops: %v", gw, got)
		if memberAlive(t, c, gw, "gw3") {
			t.Fatalf("%s accepted the forged gw3", gw)
		}
	}
	// Give a forged leave time to act (it would act at once).
	time.Sleep(500 * time.Millisecond)
	watch.check(t)
	mustRole(t, c, "gw1", "primary", "gw1")
	mustRole(t, c, "gw2", "subordinate", "gw1")
	for _, gw := range []string{"gw1", "gw2"} {
		if d := mustScrape(t, c, gw).Sum("hagate_failovers_total") - before[gw].Sum("hagate_failovers_total"); d != 0 {
			t.Fatalf("%s counted %v failovers during the forgeries", gw, d)
		}
	}
}

// TestGarbageFlood floods both members' heartbeat port from gw3's address
// (a configured peer, so the cheap source check passes) for a bounded time:
// random bytes, frames with an unknown key id, and frames with the
// cluster's key id and a new sender boot in each (each costs the receiver a
// key derivation and an AES-GCM open). The primary must keep its role the
// whole time, and the drops must be counted; the daemons' CPU time is
// reported.
func TestGarbageFlood(t *testing.T) {
	const (
		floodFor  = 8 * time.Second
		maxFrames = 3_000_000
	)
	c := setup(t, 3, Options{Extra: MetricsExtra()}, netlab.Options{})
	c.Start("gw1")
	c.Start("gw2")
	mustHolder(t, c, 15*time.Second, "gw1")
	time.Sleep(time.Second) // past the initial announcements
	frames := garbage(t, 3*1024)
	targets := []netip.AddrPort{netip.AddrPortFrom(haAddr(1), hbPort), netip.AddrPortFrom(haAddr(2), hbPort)}
	pids := map[string]int{"gw1": c.DaemonPID("gw1"), "gw2": c.DaemonPID("gw2")}
	cpu0 := map[string]time.Duration{}
	before := map[string]Samples{}
	for gw, pid := range pids {
		var err error
		if cpu0[gw], err = CPUTime(pid); err != nil {
			t.Fatal(err)
		}
		before[gw] = mustScrape(t, c, gw)
	}
	udp0 := udpStats(t, c)

	watch := watchHolders(t, c, []string{"gw1"})
	conn, err := c.ListenUDP("gw3", netip.AddrPortFrom(haAddr(3), 0))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	sent, sendErrs := 0, 0
	for sent < maxFrames && time.Since(start) < floodFor {
		for range 256 {
			f := frames[sent%len(frames)]
			if _, err := conn.WriteToUDPAddrPort(f, targets[sent%2]); err != nil {
				sendErrs++ // ENOBUFS and the like: the sender outran its own queue
			}
			sent++
		}
	}
	elapsed := time.Since(start)
	conn.Close()
	time.Sleep(time.Second) // let the last heartbeats after the flood arrive
	watch.check(t)

	t.Logf("flood: %d datagrams in %s (%.0f/s), %d send errors", sent, elapsed.Round(time.Millisecond), float64(sent)/elapsed.Seconds(), sendErrs)
	udp1 := udpStats(t, c)
	for _, gw := range []string{"gw1", "gw2"} {
		cpu1, err := CPUTime(pids[gw])
		if err != nil {
			t.Fatalf("%s daemon gone after the flood: %v", gw, err)
		}
		used := cpu1 - cpu0[gw]
		drops := dropsDelta(t, c, gw, before[gw])
		var total float64
		for _, v := range drops {
			total += v
		}
		after := mustScrape(t, c, gw)
		lost := after.Sum("hagate_heartbeats_lost_total") - before[gw].Sum("hagate_heartbeats_lost_total")
		t.Logf("%s: CPU %s in %s (%.0f%% of one CPU), drops %v (total %.0f), kernel receive-buffer drops %d, peer heartbeats lost %.0f",
			gw, used, elapsed.Round(time.Millisecond), 100*used.Seconds()/elapsed.Seconds(), drops, total,
			udp1[gw]-udp0[gw], lost)
		if total < float64(sent)/2/10 {
			t.Errorf("%s counted %.0f drops for about %d garbage datagrams sent to it", gw, total, sent/2)
		}
		if d := after.Sum("hagate_failovers_total") - before[gw].Sum("hagate_failovers_total"); d != 0 {
			t.Errorf("%s counted %v failovers during the flood", gw, d)
		}
	}
	mustRole(t, c, "gw1", "primary", "gw1")
	mustRole(t, c, "gw2", "subordinate", "gw1")
}

// garbage builds n flood datagrams, a third of each kind.
func garbage(t *testing.T, n int) [][]byte {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	id := realKeyID(t)
	tmpl := forge(t, "gw3", seal.Encrypt, "an attacker's own key", &id,
		cluster.Heartbeat{Role: cluster.Primary, Priority: 255, MonitoredUp: 2, MonitoredTotal: 2}, 1)[0]
	var out [][]byte
	for i := range n {
		var f []byte
		switch i % 3 {
		case 0: // noise
			f = make([]byte, 1+rng.IntN(200))
			for j := range f {
				f[j] = byte(rng.Uint32())
			}
		case 1: // a frame under a key id nobody has
			f = slices.Clone(tmpl)
			binary.BigEndian.PutUint32(f[8:12], rng.Uint32())
		default: // the cluster's key id, a fresh boot each: a key derivation each
			f = slices.Clone(tmpl)
			binary.BigEndian.PutUint64(f[12:20], rng.Uint64())
			binary.BigEndian.PutUint64(f[32:40], rng.Uint64())
		}
		out = append(out, f)
	}
	return out
}

// udpStats returns the UDP RcvbufErrors counter (datagrams the kernel
// dropped because the socket's buffer was full) of gw1 and gw2.
func udpStats(t *testing.T, c *Cluster) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, gw := range []string{"gw1", "gw2"} {
		text, err := c.Lab.Exec(gw, "cat", "/proc/net/snmp")
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, line := range strings.Split(text, "\n") {
			f := strings.Fields(line)
			if len(f) < 2 || f[0] != "Udp:" {
				continue
			}
			if names == nil {
				names = f
				continue
			}
			for i, name := range names {
				if name == "RcvbufErrors" && i < len(f) {
					var v int64
					for _, ch := range f[i] {
						v = v*10 + int64(ch-'0')
					}
					out[gw] = v
				}
			}
		}
	}
	return out
}

// holderWatch records every moment the virtual IP holders were not the
// expected set.
type holderWatch struct {
	stop func()
	bad  []string
	n    int
}

// watchHolders polls the holders every 10 ms until check.
func watchHolders(t *testing.T, c *Cluster, want []string) *holderWatch {
	t.Helper()
	w := &holderWatch{}
	start := time.Now()
	w.stop = sampleHolders(t, c, 10*time.Millisecond, func(h []string, err error) {
		w.n++
		if err != nil {
			w.bad = append(w.bad, err.Error())
		} else if !slices.Equal(h, want) && len(w.bad) < 20 {
			w.bad = append(w.bad, time.Since(start).Round(time.Millisecond).String()+": "+strings.Join(h, ",")+"")
		}
	})
	return w
}

func (w *holderWatch) check(t *testing.T) {
	t.Helper()
	w.stop()
	if len(w.bad) > 0 {
		t.Fatalf("virtual IP holders changed (%d of %d polls shown as time: holders): %v", len(w.bad), w.n, w.bad)
	}
	if w.n < 10 {
		t.Fatalf("holders polled only %d times", w.n)
	}
}

// sampleHolders calls fn with the virtual IP holders (err: they could not
// be read) every period, from one goroutine, until the returned stop is
// called; stop waits for the last call, and the test's cleanup calls it.
func sampleHolders(t *testing.T, c *Cluster, period time.Duration, fn func(held []string, err error)) (stop func()) {
	t.Helper()
	aw, err := c.NewAddrWatch()
	if err != nil {
		t.Fatal(err)
	}
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		defer aw.Close()
		tick := time.NewTicker(period)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
			}
			fn(aw.Holders())
		}
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() { close(quit) })
		<-done
	}
	t.Cleanup(stop)
	return stop
}

// TestStalledSyncPeer connects to the session-sync listener of a
// subordinate's pickup engine as a stranger would (no key): each
// connection sends the length prefix of the largest frame and the start of
// a well-formed frame header, then stalls. The engine must bound what
// strangers cost it before they authenticate, and close each stalled
// connection within its I/O timeout. The engine is not wired into the
// daemon yet, so this runs it in-process on loopback (no namespace needed).
func TestStalledSyncPeer(t *testing.T) {
	const (
		peers     = 100
		ioTimeout = time.Second
		maxGrowth = 64 << 20
	)
	if testing.Short() {
		t.Skip("hostile input tests are not short")
	}
	kr, err := seal.ParseKeys([]byte(Key))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e, err := sessions.NewEngine(sessions.EngineConfig{NodeID: "gw2", Group: groupID, Keyring: kr, Mode: seal.Encrypt,
		IOTimeout: ioTimeout,
		Listen:    func(string) (net.Listener, error) { return ln, nil }}, sessions.NewMemory(16))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); e.Wait() }()
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	hdr := forge(t, "gw1", seal.Encrypt, "an attacker's own key", nil, cluster.Heartbeat{}, 1)[0][:40]
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range peers {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		msg := binary.BigEndian.AppendUint32(nil, sessions.MaxFrame)
		if _, err := c.Write(append(msg, hdr...)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(300 * time.Millisecond)
	runtime.ReadMemStats(&m1)
	growth := int64(m1.HeapInuse) - int64(m0.HeapInuse)
	t.Logf("heap in use grew by %d MiB with %d stalled unauthenticated peers", growth>>20, peers)
	if growth > maxGrowth {
		t.Errorf("%d stalled peers that sent a %d-byte length prefix cost %d MiB of heap before authenticating (want under %d MiB): the sync reader allocates the announced frame size up front",
			peers, sessions.MaxFrame, growth>>20, maxGrowth>>20)
	}
	// Every stalled connection is closed once the handshake times out.
	deadline := time.Now().Add(ioTimeout + 3*time.Second)
	open := 0
	for _, c := range conns {
		c.SetReadDeadline(deadline)
		if _, err := c.Read(make([]byte, 1)); isTimeout(err) {
			open++
		}
	}
	if open > 0 {
		t.Errorf("%d of %d stalled connections still open %s after the handshake timeout", open, peers, 3*time.Second)
	}
}
