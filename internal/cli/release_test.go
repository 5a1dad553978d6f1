package cli

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/hagate/hagate/internal/config"
)

// fakeAddrs holds addresses per interface; missing interfaces fail.
type fakeAddrs map[string]map[netip.Prefix]bool

func (f fakeAddrs) HasAddress(ifname string, p netip.Prefix) (bool, error) {
	a, ok := f[ifname]
	if !ok {
		return false, errors.New("look for " + p.String() + " on " + ifname + ": link not found")
	}
	return a[p], nil
}

func (f fakeAddrs) DelAddress(ifname string, p netip.Prefix) error {
	delete(f[ifname], p)
	return nil
}

// release says, for each address, whether it removed it or it was not there.
func TestReleaseSaysWhatItRemoved(t *testing.T) {
	lan := netip.MustParsePrefix("192.0.2.1/24")
	wan := netip.MustParsePrefix("203.0.113.1/24")
	vips := []config.VirtualIP{{Interface: "lan", Address: lan}, {Interface: "wan", Address: wan}}

	h := fakeAddrs{"lan": {lan: true}, "wan": {}}
	var out bytes.Buffer
	if err := releaseFrom(h, vips, &out); err != nil {
		t.Fatal(err)
	}
	want := "released 192.0.2.1/24 on lan\nnot held: 203.0.113.1/24 on wan\n1 of 2 virtual IPs released\n"
	if out.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", out.String(), want)
	}
	if h["lan"][lan] {
		t.Fatal("the address is still there")
	}

	// Run again: nothing left to remove, and it says so.
	out.Reset()
	if err := releaseFrom(h, vips, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "not held: 192.0.2.1/24 on lan") || !strings.HasSuffix(out.String(), "0 of 2 virtual IPs released\n") {
		t.Fatalf("second release:\n%s", out.String())
	}

	// A missing interface is an error, after the others were handled.
	h = fakeAddrs{"wan": {wan: true}}
	out.Reset()
	err := releaseFrom(h, vips, &out)
	if err == nil || !strings.Contains(err.Error(), "link not found") || !strings.Contains(out.String(), "released 203.0.113.1/24 on wan") {
		t.Fatalf("missing interface: %v\n%s", err, out.String())
	}
}
