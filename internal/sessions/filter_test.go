package sessions

import (
	"net/netip"
	"testing"

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
