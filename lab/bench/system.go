package bench

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/hagate/hagate/lab/netlab"
)

// Tuning is the failure detection a run uses.
type Tuning int

// The two tunings of the issue: each system's defaults, and both tuned to
// about the same detection time (hagate 50 ms x 3 against VRRPv3 adverts
// every 0.05 s, whose master-down interval is 3 adverts plus a skew).
// Fast is FGCP's 10 ms heartbeats for datagrams (hagate 10 ms x 3 with
// connectionless session pickup, VRRPv3 adverts every 0.01 s with
// conntrackd syncing UDP too).
const (
	Defaults Tuning = iota
	Tuned
	Fast
)

func (t Tuning) String() string {
	switch t {
	case Tuned:
		return "tuned"
	case Fast:
		return "fast"
	}
	return "defaults"
}

// System is one HA stack running in a lab: hagate, or keepalived with
// conntrackd.
type System interface {
	// Name is the column heading: "hagate" or "keepalived+conntrackd".
	Name() string
	// Start starts the daemons of a gateway.
	Start(gw string) error
	// Kill kills every daemon of a gateway with SIGKILL (power loss).
	Kill(gw string) error
	// Synced is how many sessions a standby gateway holds ready for a
	// takeover, not counting base (the count before the benchmark's
	// sessions existed).
	Synced(gw string) (int, error)
	// Daemons lists the processes whose memory and CPU time count for
	// session sync on a gateway, and all of the stack's processes.
	Daemons(gw string) (sync, all []procInfo, err error)
	// Note says what limits the run's comparability, if anything (e.g.
	// "session pickup not built yet").
	Note() string
	// Close stops every daemon.
	Close()
}

// holdsVIPs reports whether gw holds both virtual IPs.
func holdsVIPs(l *netlab.Lab, gw string) bool {
	return l.HasAddr(gw, netlab.LAN, netlab.LANVIP.String()) && l.HasAddr(gw, netlab.WAN, netlab.WANVIP.String())
}

// waitPrimary waits until gw holds both virtual IPs and no other gateway
// does.
func waitPrimary(l *netlab.Lab, gw string, timeout time.Duration) error {
	err := netlab.WaitFor(timeout, 20*time.Millisecond, func() (bool, error) {
		if !holdsVIPs(l, gw) {
			return false, nil
		}
		for _, o := range l.Gateways() {
			if o != gw && l.HasAddr(o, netlab.LAN, netlab.LANVIP.String()) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for %s to hold the virtual IPs: %w", gw, err)
	}
	return nil
}

// kernelCount is the number of entries in a gateway's conntrack table.
func kernelCount(ctx context.Context, l *netlab.Lab, gw string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", l.NS(gw), "conntrack", "-C")
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("conntrack -C in %s: %w", gw, err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		return 0, fmt.Errorf("conntrack -C in %s: %q: %w", gw, out, err)
	}
	return n, nil
}
