package netif

import (
	"errors"
	"net"
	"testing"
)

func TestVirtualMAC(t *testing.T) {
	tests := []struct {
		group, index int
		want         string
	}{
		{0, 0, "00:09:0f:09:00:00"},
		{1, 0, "00:09:0f:09:01:00"},
		{7, 2, "00:09:0f:09:07:02"},
		{255, 255, "00:09:0f:09:ff:ff"},
		{256, 1, "00:09:0f:19:00:01"},
		{0x1a5, 3, "00:09:0f:19:a5:03"},
		{1023, 0, "00:09:0f:39:ff:00"},
		{1024, 0, "00:09:0f:09:00:00"}, // masked to 10 bits
		{-1, 256, "00:09:0f:39:ff:00"}, // masked, no panic
	}
	for _, tt := range tests {
		if got := VirtualMAC(tt.group, tt.index).String(); got != tt.want {
			t.Errorf("VirtualMAC(%d, %d) = %s, want %s", tt.group, tt.index, got, tt.want)
		}
	}
	// Every group in range has its own MAC.
	seen := make(map[string]int)
	for g := range 1024 {
		m := VirtualMAC(g, 0).String()
		if prev, dup := seen[m]; dup {
			t.Fatalf("groups %d and %d share %s", prev, g, m)
		}
		seen[m] = g
	}
}

func TestSetMAC(t *testing.T) {
	n := newTestNS(t)
	veth(t, n, "a0", n, "b0")
	orig := n.mac(t, "a0")
	vmac := VirtualMAC(7, 1)

	prev, err := n.h.SetMAC("a0", vmac)
	if err != nil {
		t.Fatalf("SetMAC: %v", err)
	}
	if prev.String() != orig.String() {
		t.Errorf("previous = %s, want %s", prev, orig)
	}
	if got := n.mac(t, "a0"); got.String() != vmac.String() {
		t.Errorf("MAC after SetMAC = %s, want %s", got, vmac)
	}
	// Setting it again is a no-op that reports the current one.
	if prev, err := n.h.SetMAC("a0", vmac); err != nil || prev.String() != vmac.String() {
		t.Errorf("SetMAC again = %s, %v; want %s, nil", prev, err, vmac)
	}
	// And back.
	if prev, err := n.h.SetMAC("a0", orig); err != nil || prev.String() != vmac.String() {
		t.Errorf("SetMAC back = %s, %v; want %s, nil", prev, err, vmac)
	}
	if got := n.mac(t, "a0"); got.String() != orig.String() {
		t.Errorf("MAC after restoring = %s, want %s", got, orig)
	}

	if _, err := n.h.SetMAC("a0", net.HardwareAddr{1, 2, 3}); err == nil {
		t.Error("SetMAC with a 3-byte address succeeded")
	}
	if _, err := n.h.SetMAC("nosuch0", vmac); !errors.Is(err, ErrNoInterface) {
		t.Errorf("SetMAC on a missing interface: %v, want ErrNoInterface", err)
	}
}
