package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Transparent is transparent (bridge) mode, FortiOS's `set opmode
// transparent`: the members bridge the data networks instead of routing
// them. Only the primary's bridge forwards: every other member's ports are
// fenced (no forwarding, no learning), so the two bridges in parallel make
// no loop and no duplicate frame.
type Transparent struct {
	Bridge string   `yaml:"bridge"` // the bridge device, e.g. br0; empty: routed mode
	Ports  []string `yaml:"ports"`  // its ports toward the data networks
}

// Fenced reports whether a member that is not primary is fenced at all:
// over data interfaces, or over a transparent bridge's ports.
// fence.enabled: false turns both off: every bridge then forwards, which
// loops unless something else (spanning tree) breaks the loop.
func (c *Config) Fenced() bool {
	return c.Fence.Enabled && (len(c.FenceInterfaces()) > 0 || c.Transparent.Bridge != "")
}

// checkTransparent refuses a bridge without ports or ports without a
// bridge, and a heartbeat link among them (the HA links never bridge).
func checkTransparent(ck *checker, c *Config) {
	tr := &c.Transparent
	if tr.Bridge == "" {
		if len(tr.Ports) > 0 {
			ck.add("transparent.bridge", "required when transparent.ports is set: the bridge the ports belong to")
		}
		return
	}
	ck.ifName("transparent.bridge", tr.Bridge)
	if c.isHeartbeatLink(tr.Bridge) {
		ck.add("transparent.bridge", "%q is a heartbeat link: the HA links must not be bridged to the data networks", tr.Bridge)
	}
	if len(tr.Ports) == 0 {
		ck.add("transparent.ports", "at least one port is required: the bridge's ports toward the data networks")
	}
	checkNames(ck, "transparent.ports", tr.Ports)
	for i, p := range tr.Ports {
		if c.isHeartbeatLink(p) {
			ck.add(fmt.Sprintf("transparent.ports[%d]", i), "%q is a heartbeat link: the HA links must not be bridged to the data networks", p)
		}
		if p == tr.Bridge {
			ck.add(fmt.Sprintf("transparent.ports[%d]", i), "%q is the bridge itself: list its ports", p)
		}
	}
}

// sysClassNet is where the kernel lists the interfaces (a test points it
// elsewhere).
var sysClassNet = "/sys/class/net"

// checkBridgePorts checks on this host that transparent.bridge is a bridge
// and every port is one of its ports, as the daemon will need them.
func checkBridgePorts(ck *checker, tr Transparent) {
	if tr.Bridge == "" {
		return
	}
	if _, err := os.Stat(filepath.Join(sysClassNet, tr.Bridge, "bridge")); err != nil {
		ck.add("transparent.bridge", "%q is not a bridge on this host (ip link add %s type bridge)", tr.Bridge, tr.Bridge)
		return
	}
	for i, p := range tr.Ports {
		key := fmt.Sprintf("transparent.ports[%d]", i)
		master, err := os.Readlink(filepath.Join(sysClassNet, p, "master"))
		switch {
		case err != nil && os.IsNotExist(err):
			if _, serr := os.Stat(filepath.Join(sysClassNet, p)); serr != nil {
				ck.add(key, "%q does not exist on this host", p)
			} else {
				ck.add(key, "%q is not in bridge %s (ip link set %s master %s)", p, tr.Bridge, p, tr.Bridge)
			}
		case err != nil:
			ck.add(key, "%v", err)
		case filepath.Base(master) != tr.Bridge:
			ck.add(key, "%q is in bridge %s, not %s", p, strings.TrimSpace(filepath.Base(master)), tr.Bridge)
		}
	}
}
