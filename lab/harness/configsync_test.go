package harness

import (
	"context"
	"fmt"
	"log/slog"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hagate/hagate/internal/checksum"
	"github.com/hagate/hagate/internal/config"
	"github.com/hagate/hagate/internal/configsync"
	"github.com/hagate/hagate/internal/daemon"
	"github.com/hagate/hagate/internal/seal"
	"github.com/hagate/hagate/lab/netlab"
)

// The bound: a change on the primary is in force on the
// subordinates, and a drift is shown, within 2 s.
const configBound = 2 * time.Second

// waitAgree waits until gw's `hagate checksum --json` shows every member
// with the four parts and no part differing from the primary's.
func waitAgree(t *testing.T, c *Cluster, gw string, within time.Duration) daemon.ChecksumReport {
	t.Helper()
	var rep daemon.ChecksumReport
	err := netlab.WaitFor(within, 100*time.Millisecond, func() (bool, error) {
		var err error
		if rep, err = c.Checksums(gw); err != nil {
			return false, nil
		}
		if len(rep.Members) != len(c.Gateways()) || len(Differing(rep)) > 0 {
			return false, nil
		}
		for _, m := range rep.Members {
			if !m.Alive || len(m.Sums) != 4 || m.Sums["ruleset"] != rep.Members[0].Sums["ruleset"] {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("checksums on %s never agreed: %v\n%+v", gw, err, rep)
	}
	return rep
}

// waitRule waits until gw's live ruleset contains text and returns how
// long it took from since.
func waitRule(t *testing.T, c *Cluster, gw, text string, since time.Time, within time.Duration) time.Duration {
	t.Helper()
	err := netlab.WaitFor(within, 20*time.Millisecond, func() (bool, error) { return c.HasRule(gw, text) })
	took := time.Since(since)
	if err != nil {
		rs, _ := c.Ruleset(gw)
		t.Fatalf("%q not in %s's ruleset after %s: %v\n%s", text, gw, took.Round(time.Millisecond), err, rs)
	}
	return took
}

func mustNft(t *testing.T, c *Cluster, gw string, args ...string) {
	t.Helper()
	if out, err := c.Nft(gw, args...); err != nil {
		t.Fatalf("nft on %s: %v\n%s", gw, err, out)
	}
}

// With config_sync on, a rule added on the primary by hand is in the
// subordinate's kernel within 2 s, and the two members' checksums agree
// again. (The same change with the sync off stays on the primary:
// TestConfigDriftShown.)
func TestConfigSyncRuleReachesSubordinate(t *testing.T) {
	t.Parallel() // a lab of its own; nothing timed tightly
	c := setup(t, 2, Options{ConfigSync: true}, netlab.Options{})
	c.StartAll()
	mustHolder(t, c, 15*time.Second, "gw1")
	before := waitAgree(t, c, "gw2", 15*time.Second)

	mustNft(t, c, "gw1", "add rule inet lab forward tcp dport 4242 counter drop")
	changed := time.Now()
	took := waitRule(t, c, "gw2", "tcp dport 4242", changed, 5*time.Second)
	t.Logf("the rule added on the primary was in the subordinate's kernel after %s", took.Round(time.Millisecond))
	if took > configBound {
		t.Errorf("the rule reached the subordinate after %s, want within %s", took.Round(time.Millisecond), configBound)
	}
	after := waitAgree(t, c, "gw2", 5*time.Second)
	t.Logf("checksums agreed on gw2 after %s", time.Since(changed).Round(time.Millisecond))
	waitAgree(t, c, "gw1", 5*time.Second)
	if before.Members[0].Sums["ruleset"] == after.Members[0].Sums["ruleset"] {
		t.Fatalf("the ruleset checksum did not change with the rule: %s", after.Members[0].Sums["ruleset"])
	}
	st, err := c.Status("gw2")
	if err != nil || !st.ConfigSync.Applied || st.ConfigSync.From != "gw1" {
		t.Fatalf("gw2's last sync: %+v, %v", st.ConfigSync, err)
	}
}

// With the sync off, a rule added by hand on the subordinate shows within
// 2 s as a ruleset mismatch of gw2 in `hagate checksum --json` (on both
// members) and as a warning in `hagate status`, and --diff shows the rule;
// a rule added on the primary stays there.
func TestConfigDriftShown(t *testing.T) {
	t.Parallel() // a lab of its own; nothing timed tightly
	c := setup(t, 2, Options{}, netlab.Options{})
	c.StartAll()
	mustHolder(t, c, 15*time.Second, "gw1")
	waitAgree(t, c, "gw2", 15*time.Second)

	mustNft(t, c, "gw2", "add rule inet lab forward tcp dport 4243 counter drop")
	changed := time.Now()
	shown := func(gw string) (bool, error) {
		rep, err := c.Checksums(gw)
		if err != nil || !slices.Equal(Differing(rep), []string{"gw2 ruleset"}) {
			return false, nil
		}
		st, err := c.Status(gw)
		if err != nil {
			return false, nil
		}
		return slices.ContainsFunc(st.Warnings, func(w string) bool {
			return strings.Contains(w, "ruleset on member gw2 differs from the primary's")
		}), nil
	}
	for _, gw := range []string{"gw2", "gw1"} {
		err := netlab.WaitFor(5*time.Second, 20*time.Millisecond, func() (bool, error) { return shown(gw) })
		took := time.Since(changed)
		if err != nil {
			rep, _ := c.Checksums(gw)
			st, _ := c.Status(gw)
			t.Fatalf("the drift never shown on %s: %v\n%+v\n%q", gw, err, rep, st.Warnings)
		}
		t.Logf("the drift of gw2's ruleset shown on %s after %s", gw, took.Round(time.Millisecond))
		if took > configBound {
			t.Errorf("the drift was shown on %s after %s, want within %s", gw, took.Round(time.Millisecond), configBound)
		}
	}
	out, err := exec.Command(c.Bin, "checksum", "--diff", "ruleset", "--config", c.ConfigPath("gw2")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "4243") {
		t.Fatalf("hagate checksum --diff ruleset on gw2: %v\n%s", err, out)
	}
	t.Logf("hagate checksum --diff ruleset on gw2:\n%s", out)

	// Without the sync, the primary's own change stays on the primary.
	mustNft(t, c, "gw1", "add rule inet lab forward tcp dport 4244 counter drop")
	time.Sleep(3 * time.Second)
	if has, err := c.HasRule("gw2", "tcp dport 4244"); err != nil || has {
		t.Fatalf("with config_sync off the primary's rule reached gw2 (%v)", err)
	}
}

// A ruleset the subordinate's kernel refuses (a rule on an interface only
// the primary has) is reported, in hagate status and as a mismatch, and
// the subordinate's ruleset stays as it was.
func TestConfigSyncRefusedKeepsRuleset(t *testing.T) {
	t.Parallel() // a lab of its own; nothing timed tightly
	c := setup(t, 2, Options{ConfigSync: true}, netlab.Options{})
	c.StartAll()
	mustHolder(t, c, 15*time.Second, "gw1")
	before := waitAgree(t, c, "gw2", 15*time.Second)
	kept, err := c.Nft("gw2", "-s", "list", "table", "inet", "lab")
	if err != nil {
		t.Fatal(err)
	}

	if out, err := c.Lab.Exec("gw1", "ip", "link", "add", "only1", "type", "veth", "peer", "name", "only1p"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	mustNft(t, c, "gw1", `add rule inet lab forward iif "only1" counter drop`)
	var st daemon.Status
	err = netlab.WaitFor(5*time.Second, 50*time.Millisecond, func() (bool, error) {
		var err error
		st, err = c.Status("gw2")
		return err == nil && st.ConfigSync.Error != "" && slices.ContainsFunc(st.Warnings, func(w string) bool {
			return strings.Contains(w, "configuration sync from gw1 failed")
		}), nil
	})
	if err != nil {
		t.Fatalf("the refused sync was never reported: %v\n%+v\n%q", err, st.ConfigSync, st.Warnings)
	}
	t.Logf("gw2 reports: %s", st.ConfigSync.Error)
	rep, err := c.Checksums("gw2")
	if err != nil || !slices.Contains(Differing(rep), "gw2 ruleset") {
		t.Fatalf("gw2's ruleset not shown as differing: %v %+v", err, rep)
	}
	var gw2Sum string
	for _, m := range rep.Members {
		if m.NodeID == "gw2" {
			gw2Sum = m.Sums["ruleset"]
		}
	}
	if gw2Sum != before.Members[0].Sums["ruleset"] {
		t.Errorf("gw2's ruleset checksum changed from %s to %s", before.Members[0].Sums["ruleset"], gw2Sum)
	}
	now, err := c.Nft("gw2", "-s", "list", "table", "inet", "lab")
	if err != nil || now != kept {
		t.Fatalf("gw2's ruleset changed (%v):\nbefore:\n%s\nafter:\n%s", err, kept, now)
	}
}

// The sessions-and-rulesets test: the LAN's source NAT is on the
// primary only (the lab's gateways have none). With the sync off, a TCP
// session through it is picked up by gw2 at the primary's power loss, but
// gw2 has no NAT to translate its replies and it dies; with the sync on,
// gw2 got the NAT from the primary and the session carries on.
func TestConfigSyncNATSessionAtFailover(t *testing.T) {
	t.Parallel() // a lab of its own; nothing timed tightly
	for _, sync := range []bool{true, false} {
		t.Run(fmt.Sprintf("sync=%v", sync), func(t *testing.T) {
			t.Parallel()
			c := setup(t, 2, Options{ConfigSync: sync, Extra: pickupOn}, netlab.Options{NoNAT: true})
			c.StartAll()
			mustHolder(t, c, 15*time.Second, "gw1")
			waitAgree(t, c, "gw2", 15*time.Second)
			mustNft(t, c, "gw1", PrimaryNAT)
			changed := time.Now()
			snat := "snat to " + netlab.WANVIP.Addr().String()
			if sync {
				took := waitRule(t, c, "gw2", snat, changed, 5*time.Second)
				t.Logf("the primary's NAT rule reached gw2 after %s", took.Round(time.Millisecond))
			} else {
				err := netlab.WaitFor(5*time.Second, 50*time.Millisecond, func() (bool, error) {
					rep, err := c.Checksums("gw2")
					return err == nil && slices.Contains(Differing(rep), "gw2 ruleset"), nil
				})
				if err != nil {
					t.Fatalf("the NAT only on the primary never shown as a drift: %v", err)
				}
				if has, err := c.HasRule("gw2", snat); err != nil || has {
					t.Fatalf("with config_sync off the NAT reached gw2 (%v)", err)
				}
			}
			s := startSession(t, c)
			// Both ways gw2 has the session: only its ruleset differs.
			out, err := exec.Command(c.Bin, "sessions", "--config", c.ConfigPath("gw2")).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "tcp 1") {
				t.Fatalf("hagate sessions on gw2: %v\n%s", err, out)
			}
			if err := c.PowerOff("gw1"); err != nil {
				t.Fatal(err)
			}
			mustHolder(t, c, 10*time.Second, "gw2")
			survived, rep := finish(t, s)
			t.Logf("session: %s", rep)
			if survived != sync {
				t.Fatalf("survived %v with config_sync %v: %s", survived, sync, rep)
			}
		})
	}
}

// fetchWith asks gw1's configuration exchange for its ruleset text from
// gw2's namespace, sealing with key alone, as a key holder would.
func fetchWith(c *Cluster, key string) error {
	kr, err := seal.ParseKeys([]byte(key + "\n"))
	if err != nil {
		return err
	}
	sealer, err := seal.NewSealer(kr, seal.Encrypt, seal.ConfigSync, 7, "probe", uint64(time.Now().UnixNano()))
	if err != nil {
		return err
	}
	p := &configsync.Peer{Sealer: sealer, Opener: seal.NewOpener(kr, seal.Encrypt, seal.ConfigSync, 7, "probe", time.Minute),
		Port: config.DefaultSyncPort, MaxSize: config.DefaultSyncMaxSize, Log: slog.New(slog.DiscardHandler)}
	gw1, _ := netlab.GatewayAddr(1, netlab.HA)
	return c.InNamespace("gw2", func() error {
		_, err := p.Fetch(context.Background(), gw1.Addr(), configsync.OpText, checksum.Ruleset)
		return err
	})
}

// A key rollover (the new key added, made first, the old one removed, each
// step reloaded with SIGHUP on every member) carries the configuration
// exchange too: the retired key no longer opens it, the new one does, and
// a rule added on the primary still reaches the subordinate. Without the
// exchange rekeyed, it would go on with the retired key alone.
func TestConfigSyncAfterKeyRollover(t *testing.T) {
	t.Parallel() // a lab of its own; nothing timed tightly
	c := setup(t, 2, Options{ConfigSync: true}, netlab.Options{})
	c.StartAll()
	mustHolder(t, c, 15*time.Second, "gw1")
	waitAgree(t, c, "gw2", 15*time.Second)
	newKey := KeyFor("the configuration exchange's next key")
	for _, keys := range [][]string{{Key, newKey}, {newKey, Key}, {newKey}} {
		for _, gw := range c.Gateways() {
			if err := c.WriteKey(gw, keys...); err != nil {
				t.Fatal(err)
			}
			if err := c.Reload(gw); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err := fetchWith(c, Key); err == nil {
		t.Fatal("the configuration exchange still answers the retired key")
	}
	if err := fetchWith(c, newKey); err != nil {
		t.Fatalf("the configuration exchange refuses the new key: %v", err)
	}
	mustNft(t, c, "gw1", "add rule inet lab forward tcp dport 4245 counter drop")
	took := waitRule(t, c, "gw2", "tcp dport 4245", time.Now(), 5*time.Second)
	t.Logf("after the key rollover the rule reached gw2 in %s", took.Round(time.Millisecond))
	waitAgree(t, c, "gw2", 5*time.Second)
}
