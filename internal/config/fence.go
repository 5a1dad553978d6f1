package config

import (
	"fmt"
	"slices"
	"time"
)

// Fence keeps members that are not primary from forwarding the cluster's
// data traffic (FGCP gets this from its virtual MAC alone; hagate also
// drops what still reaches a subordinate: a client's stale ARP entry, a
// static route, a switch's stale forwarding entry).
type Fence struct {
	Enabled bool `yaml:"enabled"` // default true
	// Interfaces whose forwarded traffic a subordinate drops, in or out.
	// Default: the virtual IPs' interfaces and the monitored interfaces.
	// Never a heartbeat link.
	Interfaces []string `yaml:"interfaces"`
}

const maxLinkFailedSignal = 10 * time.Second

// DataInterfaces are the interfaces the cluster's data traffic crosses:
// the virtual IPs' and the monitored ones, in that order, each once, less
// the heartbeat links (a monitored HA link stays an HA link).
func (c *Config) DataInterfaces() []string {
	var out []string
	for _, v := range c.VirtualIPs {
		out = append(out, v.Interface)
	}
	out = append(out, c.Monitor...)
	return slices.DeleteFunc(uniq(out), c.isHeartbeatLink)
}

func (c *Config) isHeartbeatLink(name string) bool {
	return slices.ContainsFunc(c.Heartbeat.Links, func(l HeartbeatLink) bool { return l.Interface == name })
}

// FenceInterfaces are the interfaces a subordinate's fence covers: those
// listed under fence.interfaces, or else the data interfaces. Empty when
// fencing is off.
func (c *Config) FenceInterfaces() []string {
	if !c.Fence.Enabled {
		return nil
	}
	if len(c.Fence.Interfaces) > 0 {
		return uniq(slices.Clone(c.Fence.Interfaces))
	}
	return c.DataInterfaces()
}

func uniq(names []string) []string {
	var out []string
	for _, n := range names {
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// checkFence refuses a fence over a heartbeat link (the HA links stay
// open whatever the role) and a link-failed signal long enough to look like
// an outage.
func checkFence(ck *checker, c *Config) {
	checkNames(ck, "fence.interfaces", c.Fence.Interfaces)
	for i, name := range c.Fence.Interfaces {
		if c.isHeartbeatLink(name) {
			ck.add(fmt.Sprintf("fence.interfaces[%d]", i), "%q is a heartbeat link: the fence covers data interfaces only, the HA links stay open", name)
		}
	}
	ck.durRange("link_failed_signal_duration", c.LinkFailedSignalDuration, 10*time.Millisecond, maxLinkFailedSignal)
}
