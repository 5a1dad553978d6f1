package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/hagate/hagate/internal/daemon"
	"github.com/hagate/hagate/lab/netlab"
)

// Checksums runs `hagate checksum --json` against gw's daemon, as an
// operator would.
func (c *Cluster) Checksums(gw string) (daemon.ChecksumReport, error) {
	var rep daemon.ChecksumReport
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, c.Bin, "checksum", "--json", "--config", c.ConfigPath(gw)).Output()
	if err != nil {
		return rep, fmt.Errorf("hagate checksum on %s: %w", gw, err)
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		return rep, fmt.Errorf("hagate checksum --json on %s: %w: %s", gw, err, out)
	}
	return rep, nil
}

// Differing lists "member part" for every part a checksum report says
// differs from the primary's, sorted.
func Differing(rep daemon.ChecksumReport) []string {
	var out []string
	for _, m := range rep.Members {
		for _, p := range m.Differ {
			out = append(out, m.NodeID+" "+p)
		}
	}
	slices.Sort(out)
	return out
}

// Nft runs nft with args (one argument: a whole command line of nft's
// syntax, e.g. "add rule inet lab forward tcp dport 9 drop") in gw.
func (c *Cluster) Nft(gw string, args ...string) (string, error) {
	return c.Lab.Exec(gw, append([]string{"nft"}, args...)...)
}

// Ruleset is gw's live ruleset as nft lists it.
func (c *Cluster) Ruleset(gw string) (string, error) { return c.Nft(gw, "list", "ruleset") }

// PrimaryNAT is a source NAT of the LAN to the WAN virtual IP in a table
// of its own, `ip drift`: what an operator adds on the primary by hand.
var PrimaryNAT = fmt.Sprintf("add table ip drift; add chain ip drift post { type nat hook postrouting priority srcnat; policy accept; }; add rule ip drift post oifname %q ip saddr %s snat ip to %s",
	netlab.WAN, netlab.LANNet, netlab.WANVIP.Addr())

// HasRule reports whether gw's live ruleset contains text.
func (c *Cluster) HasRule(gw, text string) (bool, error) {
	rs, err := c.Ruleset(gw)
	return strings.Contains(rs, text), err
}
