package config

import (
	"fmt"
	"time"
)

// Limits of the remote-link settings. FortiOS allows 1..50 for a link
// monitor's ha-priority and 0..50 for pingserver-failover-threshold.
const (
	maxPingPriority   = 50
	maxPingThreshold  = 50
	maxChecks         = 32
	minCheckInterval  = 100 * time.Millisecond
	maxCheckInterval  = time.Hour
	maxCheckFallRise  = 100
	maxCheckWeight    = 253
	maxCheckArgs      = 64
	maxCheckNameBytes = 32
)

// checkRemoteLink validates the ping servers' priorities against the
// failover threshold: a threshold above their sum could never be reached,
// so remote link monitoring would silently never fail over.
func checkRemoteLink(ck *checker, c *Config) {
	sum := 0
	for i, s := range c.PingServers {
		ck.intRange(fmt.Sprintf("ping_servers[%d].priority", i), s.Priority, 1, maxPingPriority)
		sum += s.Priority
	}
	ck.intRange("ping_failover_threshold", c.PingFailoverThreshold, 0, maxPingThreshold)
	if c.PingFailoverThreshold > sum {
		ck.add("ping_failover_threshold", "%d is above the sum of the ping servers' priorities (%d): the remote link could never fail", c.PingFailoverThreshold, sum)
	}
}

// checkChecks validates the check commands. Whether the command exists and
// is executable is a host check (CheckHost).
func checkChecks(ck *checker, checks []Check) {
	if len(checks) > maxChecks {
		ck.add("checks", "%d checks; at most %d", len(checks), maxChecks)
	}
	seen := make(map[string]int)
	for i, c := range checks {
		key := fmt.Sprintf("checks[%d]", i)
		switch {
		case c.Name == "":
			ck.add(key+".name", "required: it names the check in status and logs")
		case len(c.Name) > maxCheckNameBytes:
			ck.add(key+".name", "must be at most %d bytes", maxCheckNameBytes)
		default:
			if j, dup := seen[c.Name]; dup {
				ck.add(key+".name", "%q is also the name of checks[%d]", c.Name, j)
			}
			seen[c.Name] = i
		}
		switch {
		case len(c.Command) == 0 || c.Command[0] == "":
			ck.add(key+".command", "required: the program and its arguments, as a list (no shell)")
		case len(c.Command) > maxCheckArgs:
			ck.add(key+".command", "%d arguments; at most %d", len(c.Command), maxCheckArgs)
		default:
			ck.absolute(key+".command", c.Command[0])
		}
		ck.durRange(key+".interval", c.Interval, minCheckInterval, maxCheckInterval)
		ck.durRange(key+".timeout", c.Timeout, minCheckInterval/2, max(c.Interval, minCheckInterval))
		ck.intRange(key+".fall", c.Fall, 1, maxCheckFallRise)
		ck.intRange(key+".rise", c.Rise, 1, maxCheckFallRise)
		ck.intRange(key+".weight", c.Weight, -maxCheckWeight, maxCheckWeight)
	}
}

// checkCheckCommands checks on this host that every check's program exists
// and is executable.
func checkCheckCommands(ck *checker, checks []Check) {
	for i, c := range checks {
		if len(c.Command) > 0 && c.Command[0] != "" {
			checkExecutable(ck, fmt.Sprintf("checks[%d].command", i), c.Command[0])
		}
	}
}
