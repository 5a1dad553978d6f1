package config

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Limits enforced by validation.
const (
	maxNodeIDLen = 32
	maxGroupID   = 1023

	minHeartbeatInterval = 10 * time.Millisecond
	maxHeartbeatInterval = 10 * time.Second
	maxLostThreshold     = 60

	maxARPCount      = 100
	minARPInterval   = 10 * time.Millisecond
	maxARPInterval   = 60 * time.Second
	maxSessionsLimit = 100_000_000
	// maxInstallDelay bounds session_pickup.install_delay: what is held
	// back is installed during a takeover, so its size is takeover time.
	maxInstallDelay   = time.Minute
	minPingInterval   = 100 * time.Millisecond
	maxPingInterval   = 60 * time.Second
	maxPingFailures   = 100
	maxIfNameLen      = 15  // IFNAMSIZ - 1
	maxUnixSocketPath = 107 // sizeof(sun_path) - 1
	maxVirtualMACs    = 256 // one byte of the MAC
)

func validInterval(d time.Duration) bool {
	return d >= minHeartbeatInterval && d <= maxHeartbeatInterval
}

func validLostThreshold(n int) bool { return n >= 1 && n <= maxLostThreshold }

// checker collects problems; each names its key.
type checker struct{ errs []*Error }

func (ck *checker) add(key, format string, args ...any) {
	ck.errs = append(ck.errs, &Error{Key: key, Msg: fmt.Sprintf(format, args...)})
}

func (ck *checker) intRange(key string, v, lo, hi int) {
	if v < lo || v > hi {
		ck.add(key, "must be between %d and %d, got %d", lo, hi, v)
	}
}

func (ck *checker) durRange(key string, v, lo, hi time.Duration) {
	if v < lo || v > hi {
		ck.add(key, "must be between %v and %v, got %v", lo, hi, v)
	}
}

func (ck *checker) nonNegative(key string, v time.Duration) {
	if v < 0 {
		ck.add(key, "must not be negative, got %v", v)
	}
}

// absolute refuses a relative path; an empty one is left to the key's own rule.
func (ck *checker) absolute(key, path string) {
	if path != "" && !filepath.IsAbs(path) {
		ck.add(key, "%q is a relative path: write it from / (the daemon does not run where you edit the file)", path)
	}
}

func (ck *checker) ifName(key, name string) {
	if msg := ifNameProblem(name); msg != "" {
		ck.add(key, "%s", msg)
	}
}

func (ck *checker) unicast(key string, a netip.Addr) {
	if msg := unicastProblem(a); msg != "" {
		ck.add(key, "%s", msg)
	}
}

// validate returns every problem in c, without line numbers.
func validate(c *Config) []*Error {
	var ck checker
	checkNodeID(&ck, c.NodeID)
	ck.intRange("group_id", c.GroupID, 0, maxGroupID)
	ck.intRange("priority", c.Priority, 0, 255)
	ck.nonNegative("uptime_margin", c.UptimeMargin)
	ck.nonNegative("failover_hold_time", c.FailoverHoldTime)
	ck.nonNegative("ping_flip_timeout", c.PingFlipTimeout)
	checkHeartbeat(&ck, c)
	if c.AuthEnabled() && c.KeyFile == "" {
		ck.add("key_file", "required while security.authentication is true (or set authentication: false to run unauthenticated)")
	}
	// The daemon runs from / under systemd, not from where the admin
	// tested the file: a relative path would name another file there.
	ck.absolute("key_file", c.KeyFile)
	ck.absolute("control_socket", c.ControlSocket)
	ck.absolute("state_dir", c.StateDir)
	ck.absolute("notify", c.Notify)
	if !c.AuthEnabled() && c.Security.Encryption != nil && *c.Security.Encryption {
		ck.add("security.encryption", "cannot be true while security.authentication is false: encryption uses the authentication key")
	}
	ck.nonNegative("security.max_clock_skew", c.Security.MaxClockSkew)
	if v := c.Security.MinSyncVersion; v < 1 || v > 3 {
		ck.add("security.min_sync_version", "%d: want 1 to 3 (3, the default, refuses the replayable versions 1 and 2)", v)
	}
	if c.Security.Passphrase && !c.AuthEnabled() {
		ck.add("security.passphrase", "cannot be true while security.authentication is false: there is no key to stretch")
	}
	switch {
	case c.ControlSocket == "":
		ck.add("control_socket", "must not be empty")
	case len(c.ControlSocket) > maxUnixSocketPath:
		ck.add("control_socket", "path is %d bytes, longer than a unix socket allows (%d)", len(c.ControlSocket), maxUnixSocketPath)
	}
	if c.StateDir == "" {
		ck.add("state_dir", "must not be empty")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		ck.add("log_level", "must be one of debug, info, warn, error; got %q", c.LogLevel)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		ck.add("log_format", "must be text or json; got %q", c.LogFormat)
	}
	if c.MetricsListen != "" {
		if msg := listenProblem(c.MetricsListen); msg != "" {
			ck.add("metrics_listen", "%s", msg)
		}
	}
	monitored := checkNames(&ck, "monitor", c.Monitor)
	checkVirtualIPs(&ck, c.VirtualIPs)
	if c.VirtualMAC {
		// The interface's index is the last byte of its virtual MAC.
		ifaces := make(map[string]bool)
		for _, v := range c.VirtualIPs {
			ifaces[v.Interface] = true
		}
		if len(ifaces) > maxVirtualMACs {
			ck.add("virtual_mac", "virtual IPs are on %d interfaces; virtual MACs number at most %d", len(ifaces), maxVirtualMACs)
		}
	}
	ck.intRange("gratuitous_arp.count", c.GratuitousARP.Count, 0, maxARPCount)
	ck.durRange("gratuitous_arp.interval", c.GratuitousARP.Interval, minARPInterval, maxARPInterval)
	checkSessionPickup(&ck, c)
	checkFence(&ck, c)
	checkTransparent(&ck, c)
	checkSplitBrain(&ck, c)
	checkPingServers(&ck, c.PingServers, monitored)
	checkRemoteLink(&ck, c)
	checkChecks(&ck, c.Checks)
	checkConfigSync(&ck, &c.ConfigSync)
	return ck.errs
}

func checkNodeID(ck *checker, id string) {
	if id == "" {
		ck.add("node_id", "required: a name unique in the cluster, e.g. gw1")
		return
	}
	if len(id) > maxNodeIDLen {
		ck.add("node_id", "must be at most %d characters, got %d", maxNodeIDLen, len(id))
		return
	}
	for _, r := range id {
		if !(r == '.' || r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			ck.add("node_id", "%q has %q: use only letters, digits, '.', '_' and '-'", id, r)
			return
		}
	}
}

func checkHeartbeat(ck *checker, c *Config) {
	hb := &c.Heartbeat
	ck.durRange("heartbeat.interval", hb.Interval, minHeartbeatInterval, maxHeartbeatInterval)
	ck.intRange("heartbeat.lost_threshold", hb.LostThreshold, 1, maxLostThreshold)
	ck.intRange("heartbeat.port", hb.Port, 1, 65535)
	ck.intRange("heartbeat.realtime_priority", hb.RealtimePriority, 0, 99)
	if validInterval(hb.Interval) && validLostThreshold(hb.LostThreshold) && c.HelloHolddown < c.DeadInterval() {
		ck.add("hello_holddown", "must be at least the dead interval (heartbeat.interval x heartbeat.lost_threshold = %v), got %v",
			c.DeadInterval(), c.HelloHolddown)
	}
	if len(hb.Links) == 0 {
		ck.add("heartbeat.links", "at least one link is required")
		return
	}
	ifaces := make(map[string]int)
	for i, l := range hb.Links {
		// Every link joins every member (FGCP's heartbeat interfaces do): a
		// link that lists fewer peers leaves a member reachable on one link
		// only, and the cluster splits when that link fails.
		if i > 0 && len(l.Peers) != len(hb.Links[0].Peers) && len(l.Peers) > 0 {
			ck.add(fmt.Sprintf("heartbeat.links[%d].peers", i), "lists %d peers, heartbeat.links[0] lists %d: every link must reach every other member",
				len(l.Peers), len(hb.Links[0].Peers))
		}
		key := fmt.Sprintf("heartbeat.links[%d]", i)
		ck.ifName(key+".interface", l.Interface)
		if j, dup := ifaces[l.Interface]; dup && l.Interface != "" {
			ck.add(key+".interface", "%q is already heartbeat.links[%d]: list each interface once, with all its peers", l.Interface, j)
		} else {
			ifaces[l.Interface] = i
		}
		ck.intRange(key+".priority", l.Priority, 0, 255)
		if len(l.Peers) == 0 {
			ck.add(key+".peers", "at least one peer address is required")
		}
		peers := make(map[netip.Addr]int)
		for j, p := range l.Peers {
			pkey := fmt.Sprintf("%s.peers[%d]", key, j)
			ck.unicast(pkey, p)
			if k, dup := peers[p]; dup {
				ck.add(pkey, "%v is already %s.peers[%d]", p, key, k)
			} else {
				peers[p] = j
			}
		}
	}
}

// checkSplitBrain refuses quorum settings that can only hurt: with two
// members and no witness a survivor never holds a majority, so a failed
// primary is never replaced; a witness only votes under quorum.
func checkSplitBrain(ck *checker, c *Config) {
	sb := &c.SplitBrain
	if sb.Witness.IsValid() {
		ck.unicast("split_brain.witness", sb.Witness)
		if !sb.Quorum {
			ck.add("split_brain.witness", "has no effect without split_brain.quorum: true (the witness is a quorum vote)")
		}
	}
	if sb.Quorum && !sb.Witness.IsValid() && c.ClusterSize() == 2 {
		ck.add("split_brain.quorum", "with two members and no split_brain.witness the survivor of a failure never has a majority and never becomes primary: add a witness or set quorum: false")
	}
}

// checkNames checks a list of interface names and returns them as a set.
func checkNames(ck *checker, key string, names []string) map[string]bool {
	set := make(map[string]bool, len(names))
	for i, n := range names {
		k := fmt.Sprintf("%s[%d]", key, i)
		ck.ifName(k, n)
		if set[n] {
			ck.add(k, "%q is listed twice", n)
		}
		set[n] = true
	}
	return set
}

func checkVirtualIPs(ck *checker, vips []VirtualIP) {
	seen := make(map[netip.Addr]int)
	for i, v := range vips {
		key := fmt.Sprintf("virtual_ips[%d]", i)
		ck.ifName(key+".interface", v.Interface)
		p := v.Address
		akey := key + ".address"
		if !p.IsValid() {
			ck.add(akey, "required, e.g. 192.0.2.1/24")
			continue
		}
		a := p.Addr()
		if msg := unicastProblem(a); msg != "" {
			ck.add(akey, "%s", msg)
			continue
		}
		// The all-zeros and (IPv4) all-ones host parts of a subnet are not
		// host addresses, except in /31, /32, /127 and /128 where every
		// address is.
		if p.Bits() < a.BitLen()-1 {
			if a == p.Masked().Addr() {
				ck.add(akey, "%v is the network address of %v, not a host address", a, p.Masked())
			} else if a.Is4() && a == lastAddr(p) {
				ck.add(akey, "%v is the broadcast address of %v, not a host address", a, p.Masked())
			}
		}
		if j, dup := seen[a]; dup {
			ck.add(akey, "%v is already virtual_ips[%d]", a, j)
		} else {
			seen[a] = i
		}
	}
}

// lastAddr returns the highest address in p (IPv4 only).
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func checkSessionPickup(ck *checker, c *Config) {
	sp := &c.SessionPickup
	ck.nonNegative("session_pickup.delay", sp.Delay)
	ck.nonNegative("session_pickup.anti_entropy", sp.AntiEntropy)
	if sp.DumpInterval != nil {
		ck.nonNegative("session_pickup.dump_interval", *sp.DumpInterval)
	}
	ck.durRange("session_pickup.install_delay", sp.InstallDelay, 0, maxInstallDelay)
	ck.intRange("session_pickup.port", sp.Port, 1, 65535)
	ck.intRange("session_pickup.max_sessions", sp.MaxSessions, 1, maxSessionsLimit)
	ck.intRange("session_pickup.max_held_back", sp.MaxHeldBack, 0, maxSessionsLimit)
	switch sp.Backend {
	case "kernel", "memory":
	default:
		ck.add("session_pickup.backend", "must be kernel or memory, got %q", sp.Backend)
	}
	hbIfaces := make(map[string]bool, len(c.Heartbeat.Links))
	for _, l := range c.Heartbeat.Links {
		hbIfaces[l.Interface] = true
	}
	seen := make(map[string]bool, len(sp.Links))
	for i, l := range sp.Links {
		key := fmt.Sprintf("session_pickup.links[%d]", i)
		switch {
		case !hbIfaces[l]:
			ck.add(key, "%q is not a heartbeat link interface", l)
		case seen[l]:
			ck.add(key, "%q is listed twice", l)
		}
		seen[l] = true
	}
	for i, m := range sp.Filter.Marks {
		key := fmt.Sprintf("session_pickup.filter.marks[%d]", i)
		if m.Mask == 0 {
			ck.add(key+".mask", "must not be 0 (it would match every session); omit the entry instead")
		} else if m.Value&^m.Mask != 0 {
			ck.add(key+".value", "%#x has bits outside mask %#x, so it can never match", m.Value, m.Mask)
		}
	}
	for i, p := range sp.Filter.Addresses {
		if !p.IsValid() {
			ck.add(fmt.Sprintf("session_pickup.filter.addresses[%d]", i), "not a valid prefix")
		}
	}
}

func checkPingServers(ck *checker, servers []PingServer, monitored map[string]bool) {
	type ifTarget struct {
		iface  string
		target netip.Addr
	}
	seen := make(map[ifTarget]int)
	for i, s := range servers {
		key := fmt.Sprintf("ping_servers[%d]", i)
		if msg := ifNameProblem(s.Interface); msg != "" {
			ck.add(key+".interface", "%s", msg)
		} else if !monitored[s.Interface] {
			ck.add(key+".interface", "%q is not in monitor: ping servers are checked through a monitored interface", s.Interface)
		}
		ck.unicast(key+".target", s.Target)
		ck.durRange(key+".interval", s.Interval, minPingInterval, maxPingInterval)
		ck.intRange(key+".failures", s.Failures, 1, maxPingFailures)
		it := ifTarget{s.Interface, s.Target}
		if j, dup := seen[it]; dup {
			ck.add(key, "same interface and target as ping_servers[%d]", j)
		} else {
			seen[it] = i
		}
	}
}

// ifNameProblem applies the kernel's rules for interface names
// (dev_valid_name): 1..15 bytes, not "." or "..", no '/', ':' or whitespace.
func ifNameProblem(name string) string {
	switch {
	case name == "":
		return "interface name required"
	case len(name) > maxIfNameLen:
		return fmt.Sprintf("interface name %q is longer than %d characters", name, maxIfNameLen)
	case name == "." || name == "..":
		return fmt.Sprintf("%q is not a valid interface name", name)
	}
	for i := 0; i < len(name); i++ {
		if b := name[i]; b <= ' ' || b == 0x7f || b == '/' || b == ':' {
			return fmt.Sprintf("interface name %q contains %q (no '/', ':', whitespace or control characters)", name, b)
		}
	}
	return ""
}

// unicastProblem says why a is not usable as a unicast peer, target or
// address, or returns "".
func unicastProblem(a netip.Addr) string {
	switch {
	case !a.IsValid():
		return "address required"
	case a.Zone() != "":
		return fmt.Sprintf("%v has a zone: drop the %%%s, the interface is configured separately", a, a.Zone())
	case a.Is4In6():
		return fmt.Sprintf("%v is an IPv4-mapped IPv6 address: write it as %v", a, a.Unmap())
	case a.IsUnspecified():
		return fmt.Sprintf("%v is the unspecified address, want a unicast address", a)
	case a.IsMulticast():
		return fmt.Sprintf("%v is a multicast address, want a unicast address", a)
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return fmt.Sprintf("%v is the broadcast address, want a unicast address", a)
	}
	return ""
}

// listenProblem checks a host:port listen address. The host may be empty
// (all addresses), an IP address or a name.
func listenProblem(s string) string {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Sprintf("%q is not host:port (e.g. 127.0.0.1:9703 or [::1]:9703)", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Sprintf("port %q must be a number between 1 and 65535", port)
	}
	if strings.ContainsFunc(host, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return fmt.Sprintf("host %q contains whitespace or control characters", host)
	}
	return ""
}
