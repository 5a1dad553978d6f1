package heartbeat

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/hagate/hagate/internal/cluster"
	"github.com/hagate/hagate/internal/seal"
)

type counts struct {
	mu      sync.Mutex
	dropped map[string]int
}

func (c *counts) Sent(string)             {}
func (c *counts) Received(string, string) {}
func (c *counts) Dropped(link, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropped[reason]++
}
func (c *counts) get(reason string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dropped[reason]
}

// twoHosts makes two namespaces joined by a veth pair named ha on both sides,
// 198.51.100.1 and .2, and removes them when the test ends.
func twoHosts(t *testing.T) (a, b string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	id := fmt.Sprintf("hbt%d%d", os.Getpid()%10000, rand.IntN(1000))
	a, b = id+"a", id+"b"
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	t.Cleanup(func() {
		exec.Command("ip", "netns", "del", a).Run()
		exec.Command("ip", "netns", "del", b).Run()
	})
	run("netns", "add", a)
	run("netns", "add", b)
	run("-n", a, "link", "add", "ha", "type", "veth", "peer", "name", "ha", "netns", b)
	run("-n", a, "addr", "add", "198.51.100.1/24", "dev", "ha")
	run("-n", b, "addr", "add", "198.51.100.2/24", "dev", "ha")
	run("-n", a, "link", "set", "ha", "up")
	run("-n", b, "link", "set", "ha", "up")
	return a, b
}

// inNS runs f with the calling thread in namespace name; sockets opened by
// f stay in that namespace.
func inNS(t *testing.T, name string, f func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := netns.Set(h); err != nil {
		t.Fatal(err)
	}
	defer netns.Set(orig)
	f()
}

func endpoint(t *testing.T, ns, id, key string, peer netip.Addr, c *counts) *Transport {
	kr, err := seal.ParseKeys([]byte(key))
	if err != nil {
		t.Fatal(err)
	}
	s, _ := seal.NewSealer(kr, seal.Encrypt, seal.Heartbeat, 7, id, uint64(time.Now().UnixNano()))
	o := seal.NewOpener(kr, seal.Encrypt, seal.Heartbeat, 7, id, time.Minute)
	var tr *Transport
	inNS(t, ns, func() {
		tr, err = Open([]Link{{Interface: "ha", Peers: []netip.Addr{peer}}}, 7703, s, o, c, time.Now)
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tr.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return tr
}

func TestTransportOverVeth(t *testing.T) {
	a, b := twoHosts(t)
	ca, cb := &counts{dropped: map[string]int{}}, &counts{dropped: map[string]int{}}
	key := "correct horse battery staple"
	ta := endpoint(t, a, "gw1", key, netip.MustParseAddr("198.51.100.2"), ca)
	tb := endpoint(t, b, "gw2", key, netip.MustParseAddr("198.51.100.1"), cb)

	hb := cluster.Heartbeat{Role: cluster.Primary, Priority: 200, MonitoredUp: 1, MonitoredTotal: 2, Elected: "gw1", Count: 1}
	deadline := time.After(5 * time.Second)
	for {
		if err := ta.Send(hb); err != nil {
			t.Logf("send: %v", err)
		}
		select {
		case rx := <-tb.Packets():
			if rx.From != "gw1" || rx.Link != "ha" || rx.HB != hb {
				t.Fatalf("got %+v", rx)
			}
			return
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatalf("nothing received; drops %v", cb.dropped)
		}
	}
}

func TestTransportDropsWrongKey(t *testing.T) {
	a, b := twoHosts(t)
	ca, cb := &counts{dropped: map[string]int{}}, &counts{dropped: map[string]int{}}
	ta := endpoint(t, a, "gw1", "an intruder's own key", netip.MustParseAddr("198.51.100.2"), ca)
	tb := endpoint(t, b, "gw2", "correct horse battery staple", netip.MustParseAddr("198.51.100.1"), cb)
	for i := 0; i < 50 && cb.get("key") < 3; i++ {
		ta.Send(cluster.Heartbeat{Role: cluster.Primary, Priority: 255, Uptime: 365 * 24 * time.Hour})
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case rx := <-tb.Packets():
		t.Fatalf("heartbeat with a wrong key delivered: %+v", rx)
	default:
	}
	if cb.get("key") == 0 {
		t.Fatalf("no drop counted: %v", cb.dropped)
	}
}

func TestAcceptChecksSourceFirst(t *testing.T) {
	kr, _ := seal.ParseKeys([]byte("correct horse battery staple"))
	s, _ := seal.NewSealer(kr, seal.Encrypt, seal.Heartbeat, 7, "gw1", 1)
	tr := &Transport{opener: seal.NewOpener(kr, seal.Encrypt, seal.Heartbeat, 7, "gw2", 0), now: time.Now}
	l := &linkConn{Link: Link{Interface: "ha"}, peers: map[netip.Addr]bool{netip.MustParseAddr("198.51.100.1"): true}}
	frame := s.Seal(nil, 0, time.Now(), Encode(nil, cluster.Heartbeat{Priority: 1}))
	if _, r := tr.accept(l, netip.MustParseAddr("203.0.113.9"), frame); r != "unknown-source" {
		t.Fatalf("reason %q", r)
	}
	if _, r := tr.accept(l, netip.MustParseAddr("198.51.100.1"), frame); r != "" {
		t.Fatalf("reason %q", r)
	}
	if _, r := tr.accept(l, netip.MustParseAddr("198.51.100.1"), frame); r != "replay" {
		t.Fatalf("replay: reason %q", r)
	}
	bad := s.Seal(nil, 0, time.Now(), []byte("not a heartbeat, but sealed with the key"))
	if _, r := tr.accept(l, netip.MustParseAddr("198.51.100.1"), bad); r != "malformed" {
		t.Fatalf("reason %q", r)
	}
}
