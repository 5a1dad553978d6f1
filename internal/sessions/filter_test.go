package sessions

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hagate/hagate/internal/sessions/session"
)

func TestFilter(t *testing.T) {
	local := netip.MustParseAddr("198.51.100.1")
	a := func(s string) [16]byte { return session.Addr16(netip.MustParseAddr(s)) }
	base := synthSession(1) // 192.0.2.1 -> 198.51.100.0:443
	toLocal := base
	toLocal.Orig.Dst = a("198.51.100.1")
	toLocal.Reply = toLocal.Orig.Invert(toLocal.Proto)
	fromLocal := base
	fromLocal.Orig.Src = a("198.51.100.1")
	fromLocal.Reply = fromLocal.Orig.Invert(fromLocal.Proto)
	dnatVIP := toLocal // to the VIP, forwarded to a server: synced
	dnatVIP.Reply.Src = a("203.0.113.5")
	snatVIP := base // forwarded, source translated to a local address: synced
	snatVIP.Reply.Dst = local.As16()
	udp := base
	udp.Proto = session.ProtoUDP
	marked := base
	marked.Mark = 0x10
	zoned := base
	zoned.Zone = 4
	for _, tc := range []struct {
		name string
		f    Filter
		s    session.Session
		want string
	}{
		{"forwarded", Filter{}, base, ""},
		{"to local", Filter{NAT: true}, toLocal, SkipLocal},
		{"from local", Filter{NAT: true}, fromLocal, SkipLocal},
		{"dnat via local", Filter{NAT: true}, dnatVIP, ""},
		{"snat to local", Filter{NAT: true}, snatVIP, ""},
		{"nat off", Filter{}, snatVIP, SkipNAT},
		{"udp tcp-only", Filter{}, udp, SkipProtocol},
		{"udp connectionless", Filter{Connectionless: true}, udp, ""},
		{"zone no", Filter{Zones: []uint16{4}}, base, SkipZone},
		{"zone yes", Filter{Zones: []uint16{4}}, zoned, ""},
		{"mark no", Filter{Marks: []MarkMatch{{0x10, 0xf0}}}, base, SkipMark},
		{"mark yes", Filter{Marks: []MarkMatch{{0x10, 0xf0}}}, marked, ""},
		{"prefix no", Filter{Prefixes: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}}, base, SkipAddress},
		{"prefix yes", Filter{Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/28")}}, base, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sel := newSelector(tc.f)
			sel.setLocal([]netip.Addr{local})
			if got := sel.skip(&tc.s); got != tc.want {
				t.Fatalf("skip = %q, want %q", got, tc.want)
			}
		})
	}
}

// A subordinate installs only what it would have synced itself: it refuses
// sessions that use its own addresses (but not the virtual ones) and those
// its filters exclude, and caps timeouts at the kernel's defaults, whatever
// the primary (or a key holder) sends.
func TestSubordinateScreensSyncedSessions(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	own, vip := netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("198.51.100.1")
	p := startNode(t, ctx, "gw1", nil)
	s := startNode(t, ctx, "gw2", func(c *EngineConfig) {
		c.Filter.Connectionless = false // TCP only
		c.Virtual = []netip.Addr{vip}
	})
	s.e.SetLocalAddrs([]netip.Addr{own, vip})
	if err := s.e.BecomeSubordinate(ctx, "gw1"); err != nil {
		t.Fatal(err)
	}
	if err := p.e.becomePrimaryMirrored(ctx); err != nil {
		t.Fatal(err)
	}
	toOwn := synthSession(1) // to the subordinate's management address
	toOwn.Orig.Dst = session.Addr16(own)
	toOwn.Reply = toOwn.Orig.Invert(toOwn.Proto)
	natOwn := synthSession(2) // its own connections redirected
	natOwn.Reply.Src = session.Addr16(own)
	toVIP := synthSession(3) // a port forward on a virtual IP: synced
	toVIP.Orig.Dst = session.Addr16(vip)
	toVIP.Reply.Src = session.Addr16(netip.MustParseAddr("192.0.2.200"))
	udp := synthSession(4) // excluded by the subordinate's filter
	udp.Proto, udp.TCP, udp.Timeout = session.ProtoUDP, session.TCPInfo{}, 60
	udp.Reply = udp.Orig.Invert(udp.Proto)
	pinned := synthSession(5) // SYN_RECV for ten years
	pinned.TCP.State, pinned.Timeout = session.TCPSynRecv, 315_360_000
	for _, x := range []session.Session{toOwn, natOwn, toVIP, udp, pinned} {
		p.mem.Inject(session.Change{Op: session.Upsert, Session: x})
	}
	p.e.SetPeers([]netip.AddrPort{s.addr(t)})
	deadline := time.Now().Add(10 * time.Second)
	for s.e.Stats().LastBulk.At.IsZero() {
		if time.Now().After(deadline) {
			t.Fatal("no bulk received")
		}
		time.Sleep(10 * time.Millisecond)
	}
	got := s.mem.Snapshot()
	pinned.Timeout = 60
	want := map[session.Key]session.Session{toVIP.Key: liberal(toVIP), pinned.Key: liberal(pinned)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("subordinate installed (-want +got):\n%s", diff)
	}
	if st := s.e.Stats(); st.Screened != 3 {
		t.Errorf("%d synced sessions refused, want 3", st.Screened)
	}
}
