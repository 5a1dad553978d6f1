package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckBridgePorts runs the host check against a fake /sys/class/net:
// br0 a bridge with ports lan and wan, dmz a plain interface, other in
// bridge br1.
func TestCheckBridgePorts(t *testing.T) {
	root := t.TempDir()
	mk := func(name, master string) {
		if err := os.MkdirAll(filepath.Join(root, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if master != "" {
			if err := os.Symlink("../"+master, filepath.Join(root, name, "master")); err != nil {
				t.Fatal(err)
			}
		}
	}
	mk("br0", "")
	mk("br0/bridge", "")
	mk("br1", "")
	mk("br1/bridge", "")
	mk("lan", "br0")
	mk("wan", "br0")
	mk("dmz", "")
	mk("other", "br1")
	defer func(old string) { sysClassNet = old }(sysClassNet)
	sysClassNet = root
	for _, tc := range []struct {
		name string
		tr   Transparent
		want map[string]string
	}{
		{"ports in the bridge", Transparent{Bridge: "br0", Ports: []string{"lan", "wan"}}, nil},
		{"port not in a bridge", Transparent{Bridge: "br0", Ports: []string{"lan", "dmz"}}, map[string]string{"transparent.ports[1]": `"dmz" is not in bridge br0`}},
		{"port in another bridge", Transparent{Bridge: "br0", Ports: []string{"other"}}, map[string]string{"transparent.ports[0]": `is in bridge br1, not br0`}},
		{"port missing", Transparent{Bridge: "br0", Ports: []string{"nosuch"}}, map[string]string{"transparent.ports[0]": "does not exist"}},
		{"not a bridge", Transparent{Bridge: "dmz", Ports: []string{"lan"}}, map[string]string{"transparent.bridge": "is not a bridge"}},
		{"routed mode", Transparent{}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ck checker
			checkBridgePorts(&ck, tc.tr)
			got := map[string]string{}
			for _, e := range ck.errs {
				got[e.Key] = e.Msg
			}
			if len(got) != len(tc.want) {
				t.Fatalf("errors %v, want keys %v", got, tc.want)
			}
			for k, frag := range tc.want {
				if !strings.Contains(got[k], frag) {
					t.Errorf("%s: %q, want it to contain %q", k, got[k], frag)
				}
			}
		})
	}
	// Through CheckHost, as check-config runs it: an *Error naming the key.
	c := &Config{Transparent: Transparent{Bridge: "br0", Ports: []string{"dmz"}}, Security: Security{Authentication: ptr(false)}}
	var e *Error
	if err := c.CheckHost(); !errors.As(err, &e) || e.Key != "transparent.ports[0]" {
		t.Errorf("CheckHost: %v, want an error on transparent.ports[0]", err)
	}
}

// fence.enabled: false unblocks a transparent bridge's ports too, not only
// the routed fence's interfaces.
func TestFencedTransparent(t *testing.T) {
	tr := Transparent{Bridge: "br0", Ports: []string{"lan", "wan"}}
	for _, tc := range []struct {
		name string
		c    Config
		want bool
	}{
		{"bridge, fence on", Config{Transparent: tr, Fence: Fence{Enabled: true}}, true},
		{"bridge, fence off", Config{Transparent: tr, Fence: Fence{Enabled: false}}, false},
		{"routed, fence on, no interface", Config{Fence: Fence{Enabled: true}}, false},
		{"routed, fence on", Config{Fence: Fence{Enabled: true, Interfaces: []string{"lan"}}}, true},
	} {
		if got := tc.c.Fenced(); got != tc.want {
			t.Errorf("%s: Fenced() = %v, want %v", tc.name, got, tc.want)
		}
	}
}
