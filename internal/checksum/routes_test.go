package checksum

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestRoutesNormalised(t *testing.T) {
	base := []Route{
		{Table: 254, Dst: "default", Gateways: []string{"198.51.100.1"}, Dev: "wan0", Protocol: unix.RTPROT_BOOT},
		{Table: 254, Dst: "203.0.113.0/24", Gateways: []string{"192.0.2.254"}, Dev: "lan0", Protocol: unix.RTPROT_STATIC},
	}
	// Another order, a connected route and a route through an excluded
	// interface: the same text.
	other := []Route{base[1], {Table: 254, Dst: "192.0.2.0/24", Dev: "lan0", Protocol: unix.RTPROT_KERNEL}, base[0],
		{Table: 254, Dst: "10.0.0.0/8", Dev: "ha0", Protocol: unix.RTPROT_STATIC}}
	ex := Exclude{Interfaces: []string{"ha0"}}
	if a, b := NormaliseRoutes(base, ex), NormaliseRoutes(other, ex); string(a) != string(b) {
		t.Fatalf("different texts:\n%s---\n%s", a, b)
	}
	if a, b := NormaliseRoutes(base, Exclude{}), NormaliseRoutes(other, Exclude{}); string(a) == string(b) {
		t.Fatal("a route through a non-excluded interface made no difference")
	}
	changed := []Route{base[0], base[1]}
	changed[1].Gateways = []string{"192.0.2.253"}
	if Of(NormaliseRoutes(base, ex)) == Of(NormaliseRoutes(changed, ex)) {
		t.Fatal("another gateway kept the checksum")
	}
}

func TestSysctlsAbsent(t *testing.T) {
	text, err := readSysctls(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if want := "net.ipv4.ip_forward = absent\n"; string(text[:len(want)]) != want {
		t.Fatalf("got %q", text)
	}
}
