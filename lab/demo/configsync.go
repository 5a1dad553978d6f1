package demo

import (
	"fmt"
	"io"
	"time"

	"github.com/hagate/hagate/lab/harness"
	"github.com/hagate/hagate/lab/netlab"
)

// demoRule is the rule the demo adds on the primary by hand.
const demoRule = "tcp dport 4242 counter drop"

// configSync shows the checksums in agreement, then a rule added by hand
// on the primary reaching every subordinate's kernel (config_sync on),
// with the time each took.
func configSync(w io.Writer, c *harness.Cluster, bin, primary, other string) error {
	step(w, "hagate checksum (on %s): every member's ruleset, routes, sysctls and configuration agree with the primary's", other)
	show(w, bin, "checksum", c.ConfigPath(other))

	step(w, "A rule added by hand on the primary %s (nft add rule inet lab forward %s) reaches the subordinates (config_sync enabled)", primary, demoRule)
	if out, err := c.Nft(primary, "add rule inet lab forward "+demoRule); err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	changed := time.Now()
	for _, gw := range c.Gateways() {
		if gw == primary {
			continue
		}
		err := netlab.WaitFor(10*time.Second, 20*time.Millisecond, func() (bool, error) { return c.HasRule(gw, "tcp dport 4242") })
		if err != nil {
			return fmt.Errorf("the rule never reached %s: %w", gw, err)
		}
		fmt.Fprintf(w, "    %s  in %s's kernel %s after the change\n", time.Now().Format("15:04:05.000"), gw, time.Since(changed).Round(time.Millisecond))
	}
	time.Sleep(500 * time.Millisecond) // the confirming checksums in the next heartbeats
	show(w, bin, "checksum", c.ConfigPath(other))
	return nil
}
