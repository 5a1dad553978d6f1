package netlab

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/hagate/hagate/internal/nstest"
)

// ErrTimeout is returned by WaitFor when the condition did not hold in time.
var ErrTimeout = errors.New("lab: timed out")

// defaultPoll is WaitFor's poll interval when none is given.
const defaultPoll = 50 * time.Millisecond

// WaitFor calls cond every poll until it reports true (nil), returns an
// error (that error: a condition that can never hold should say so rather
// than wait out the timeout) or timeout has passed (ErrTimeout). cond is
// always called at least once, and once more at the deadline.
func WaitFor(timeout, poll time.Duration, cond func() (bool, error)) error {
	if poll <= 0 {
		poll = defaultPoll
	}
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("%w after %v", ErrTimeout, timeout)
		}
		time.Sleep(min(poll, left))
	}
}

// ipAddrJSON is the part of `ip -j addr show` the lab reads.
type ipAddrJSON struct {
	AddrInfo []struct {
		Local     string `json:"local"`
		PrefixLen int    `json:"prefixlen"`
	} `json:"addr_info"`
}

// Addrs returns the addresses on a link of a lab node.
func (l *Lab) Addrs(node, ifname string) ([]netip.Prefix, error) {
	out, err := run("ip", "-j", "-n", l.NS(node), "addr", "show", "dev", ifname)
	if err != nil {
		return nil, fmt.Errorf("lab: addresses of %s %s: %w", node, ifname, err)
	}
	var links []ipAddrJSON
	if err := json.Unmarshal([]byte(out), &links); err != nil {
		return nil, fmt.Errorf("lab: addresses of %s %s: %w", node, ifname, err)
	}
	var ps []netip.Prefix
	for _, li := range links {
		for _, a := range li.AddrInfo {
			ip, err := netip.ParseAddr(a.Local)
			if err != nil {
				return nil, fmt.Errorf("lab: addresses of %s %s: %w", node, ifname, err)
			}
			ps = append(ps, netip.PrefixFrom(ip, a.PrefixLen))
		}
	}
	return ps, nil
}

// HasAddr reports whether a link of a lab node holds an address. prefix is
// "192.0.2.1/24" (address and length must match) or a bare "192.0.2.1"
// (any length). Any error, including an unparsable prefix, reads as false.
func (l *Lab) HasAddr(node, ifname, prefix string) bool {
	want, err := netip.ParsePrefix(prefix)
	anyLen := false
	if err != nil {
		a, aerr := netip.ParseAddr(prefix)
		if aerr != nil {
			return false
		}
		want, anyLen = netip.PrefixFrom(a, a.BitLen()), true
	}
	have, err := l.Addrs(node, ifname)
	if err != nil {
		return false
	}
	return slices.ContainsFunc(have, func(p netip.Prefix) bool {
		return p.Addr() == want.Addr() && (anyLen || p.Bits() == want.Bits())
	})
}

// LinkState is what `ip link` says about a link.
type LinkState struct {
	Up        bool     // administratively up (IFF_UP)
	Carrier   bool     // lower layer up (IFF_LOWER_UP): false when the switch port is down
	OperState string   // "UP", "DOWN", "LOWERLAYERDOWN", ...
	Flags     []string // as ip prints them: "NO-CARRIER", "BROADCAST", "UP", ...
}

// Link returns the state of a link of a lab node.
func (l *Lab) Link(node, ifname string) (LinkState, error) {
	out, err := run("ip", "-j", "-n", l.NS(node), "link", "show", "dev", ifname)
	if err != nil {
		return LinkState{}, fmt.Errorf("lab: link %s %s: %w", node, ifname, err)
	}
	var links []struct {
		Flags     []string `json:"flags"`
		OperState string   `json:"operstate"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		return LinkState{}, fmt.Errorf("lab: link %s %s: unexpected ip output %q: %v", node, ifname, out, err)
	}
	s := LinkState{Flags: links[0].Flags, OperState: links[0].OperState}
	s.Up = slices.Contains(s.Flags, "UP")
	s.Carrier = slices.Contains(s.Flags, "LOWER_UP")
	return s, nil
}

// ForTest builds a lab for a test: it skips the test unless it runs as
// root with ip and nft installed, fails it if the lab cannot be built, and
// closes the lab when the test ends, whether it passed or not.
func ForTest(t nstest.TB, opts Options) *Lab {
	t.Helper()
	nstest.RequireRoot(t, "nft", "sysctl")
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	l, err := New(opts)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Logf("lab: close: %v", err)
		}
	})
	return l
}
