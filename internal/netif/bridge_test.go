package netif

import (
	"testing"

	"github.com/vishvananda/netlink"
)

// TestSetLearning: a bridge port learns by default; SetLearning turns it
// off and on again, and names a missing port.
func TestSetLearning(t *testing.T) {
	requireRoot(t)
	a, b := newTestNS(t), newTestNS(t)
	veth(t, a, "port0", b, "peer0")
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
	if err := a.nl.LinkAdd(br); err != nil {
		t.Fatal(err)
	}
	port, err := a.nl.LinkByName("port0")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.nl.LinkSetMaster(port, br); err != nil {
		t.Fatal(err)
	}
	learning := func() string {
		l, err := a.nl.LinkByName("port0")
		if err != nil {
			t.Fatal(err)
		}
		pi, err := a.nl.LinkGetProtinfo(l)
		if err != nil {
			t.Fatal(err)
		}
		return map[bool]string{true: "1", false: "0"}[pi.Learning]
	}
	if learning() != "1" {
		t.Fatal("a new bridge port does not learn: the scene is wrong")
	}
	if err := a.h.SetLearning("port0", false); err != nil {
		t.Fatal(err)
	}
	if got := learning(); got != "0" {
		t.Errorf("learning %s after SetLearning(false)", got)
	}
	if err := a.h.SetLearning("port0", true); err != nil {
		t.Fatal(err)
	}
	if got := learning(); got != "1" {
		t.Errorf("learning %s after SetLearning(true)", got)
	}
	if err := a.h.SetLearning("nosuch0", true); err == nil {
		t.Error("no error for a missing port")
	}
}
