package netif

import (
	"net"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// TestRelearn: a switch (a bridge in namespace b) faces a member's two
// ports. Relearn sends each address out of the port away from where it was
// learnt, and the switch's forwarding database (read with LearnedFDB)
// places each behind the port facing it; no address is sent out of its own
// port, which would move the host away from itself.
func TestRelearn(t *testing.T) {
	requireRoot(t)
	member, sw := newTestNS(t), newTestNS(t)
	veth(t, member, "port0", sw, "peer0")
	veth(t, member, "port1", sw, "peer1")
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "sw0"}}
	if err := sw.nl.LinkAdd(br); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"peer0", "peer1"} {
		l, err := sw.nl.LinkByName(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := sw.nl.LinkSetMaster(l, br); err != nil {
			t.Fatal(err)
		}
	}
	sw.setLink(t, "sw0", true)
	client, _ := net.ParseMAC("02:00:5e:00:53:01") // learnt behind port0
	server, _ := net.ParseMAC("02:00:5e:00:53:02") // learnt behind port1
	n, err := member.h.Relearn([]string{"port0", "port1"}, []FDBEntry{{MAC: client, Port: "port0"}, {MAC: server, Port: "port1"}, {MAC: server, Port: "elsewhere"}})
	if err != nil || n != 2 {
		t.Fatalf("Relearn sent %d frames, err %v; want 2", n, err)
	}
	want := map[string]string{server.String(): "peer0", client.String(): "peer1"}
	var got map[string]string
	if !eventually(2*time.Second, func() bool {
		fdb, err := sw.h.LearnedFDB("sw0")
		if err != nil {
			t.Fatal(err)
		}
		got = map[string]string{}
		for _, e := range fdb {
			got[e.MAC.String()] = e.Port
		}
		return got[server.String()] == "peer0" && got[client.String()] == "peer1"
	}) {
		t.Fatalf("the switch learnt %v, want %v", got, want)
	}
	if _, err := sw.h.LearnedFDB("nosuch0"); err == nil {
		t.Error("no error for a missing bridge")
	}
}
