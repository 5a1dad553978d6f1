package harness

import (
	"context"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hagate/hagate/internal/sessions/conntrack"
	"github.com/hagate/hagate/internal/sessions/session"
	"github.com/hagate/hagate/lab/netlab"
)

// Addresses of the sessions made on the primary and of the entries in the
// subordinate's way (TEST-NET, none a lab node's own).
var (
	clashClient = netip.MustParseAddr("192.0.2.50") // the synced sessions' client
	clashOther  = netip.MustParseAddr("192.0.2.60") // the clashing entries' client
	clashServer = netip.MustParseAddr("198.51.100.80")
)

const clashPort = 40000 // the synced sessions' first client port

// clashSessions are n established TCP sessions
// 192.0.2.50:40000+i -> 198.51.100.80:80, as the primary holds them.
func clashSessions(n int) []session.Change {
	out := make([]session.Change, n)
	for i := range n {
		o := session.Tuple{Src: session.Addr16(clashClient), Dst: session.Addr16(clashServer), SrcPort: uint16(clashPort + i), DstPort: 80}
		out[i] = session.Change{Op: session.Upsert, Session: session.Session{
			Key: session.Key{Family: session.FamilyIPv4, Proto: session.ProtoTCP, Orig: o}, Reply: o.Invert(session.ProtoTCP), Timeout: 3600,
			Status: session.StatusConfirmed | session.StatusSeenReply | session.StatusAssured,
			TCP: session.TCPInfo{State: session.TCPEstablished, WScaleOrig: 7, WScaleReply: 7,
				FlagsOrig: session.TCPFlagWindowScale, FlagsReply: session.TCPFlagWindowScale},
		}}
	}
	return out
}

// openKernel opens gw's conntrack table from the test.
func openKernel(t *testing.T, c *Cluster, gw string) *conntrack.Kernel {
	t.Helper()
	k, err := conntrack.Open(conntrack.Options{NetNSPath: "/run/netns/" + c.Lab.NS(gw)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

// holding counts the keys of cs that k's table holds.
func holding(t *testing.T, k *conntrack.Kernel, cs []session.Change) int {
	t.Helper()
	keys := make([]session.Key, len(cs))
	for i := range cs {
		keys[i] = cs[i].Session.Key
	}
	n := 0
	if err := k.Lookup(context.Background(), keys, func(session.Session) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// A subordinate's kernel refuses some synced sessions for a while, and
// anti-entropy installs them within seconds once it takes them: the
// subordinate forgets what its kernel refused, its digest differs from the
// primary's, and the primary resends those ranges. The refusal is a
// natural one: gw2's table already holds, for each session, an entry with
// another original tuple but the same reply tuple (as a session of its own
// NATed to that address and port would), so ctnetlink's create fails
// with EEXIST and the update by the original tuple with ENOENT, and hagate
// gives the change up after its retries. The periodic dump is off
// (dump_interval: 0), and it would not resend them anyway (a dump resends
// a session only if it changed or nears expiry). With anti-entropy off,
// the same sessions stay missing after the refusal has ended.
//
// Repaired counts the sessions a repair brings as they arrive, before the
// kernel takes or refuses them, so it grows during the refusal too (as
// does the log line "anti-entropy repaired the table"): the kernel's
// table is the proof here, the counters only its companions.
func TestAntiEntropyInstallsRefusedLab(t *testing.T) {
	t.Parallel() // labs of their own; nothing timed tightly
	const n = 20
	for _, tc := range []struct {
		name        string
		antiEntropy string
		repaired    bool
	}{
		{"anti-entropy", "1s", true},
		{"anti-entropy-off", "0", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := setup(t, 2, Options{Extra: pickupOn + "  dump_interval: 0\n  anti_entropy: " + tc.antiEntropy + "\n"}, netlab.Options{})
			if err := c.StartAll(); err != nil {
				t.Fatal(err)
			}
			mustHolder(t, c, 15*time.Second, "gw1")
			cs := clashSessions(n)
			// In gw2's way first: each entry's reply tuple is a synced
			// session's reply tuple.
			for i := range n {
				if out, err := c.Lab.Exec("gw2", "conntrack", "-I", "-p", "tcp",
					"-s", clashOther.String(), "-d", clashServer.String(), "--sport", strconv.Itoa(50000+i), "--dport", "80",
					"--reply-src", clashServer.String(), "--reply-dst", clashClient.String(),
					"--reply-port-src", "80", "--reply-port-dst", strconv.Itoa(clashPort+i),
					"--state", "ESTABLISHED", "-u", "ASSURED,SEEN_REPLY", "-t", "3600"); err != nil {
					t.Fatalf("clashing entry on gw2: %v\n%s", err, out)
				}
			}
			gw1, gw2 := openKernel(t, c, "gw1"), openKernel(t, c, "gw2")
			if err := gw1.Apply(context.Background(), cs); err != nil {
				t.Fatal(err)
			}
			// gw2 receives them and says its kernel refused them.
			if err := netlab.WaitFor(15*time.Second, 200*time.Millisecond, func() (bool, error) {
				st, err := c.Sessions("gw2")
				return err == nil && st.NotInstalled >= n, nil
			}); err != nil {
				st, _ := c.Sessions("gw2")
				t.Fatalf("gw2 never reported the %d sessions not installed (not_installed %d): %v", n, st.NotInstalled, err)
			}
			if got := holding(t, gw2, cs); got != 0 {
				t.Fatalf("gw2's kernel holds %d of the sessions it reported refused", got)
			}
			out, err := exec.Command(c.Bin, "sessions", "--config", c.ConfigPath("gw2")).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "Not installed:") {
				t.Fatalf("hagate sessions on gw2 does not show the refused sessions: %v\n%s", err, out)
			}
			// The refusal lasts a few anti-entropy intervals: the
			// resends it brings are refused as well.
			time.Sleep(3 * time.Second)
			if got := holding(t, gw2, cs); got != 0 {
				t.Fatalf("gw2's kernel took %d of the sessions while the clashing entries were there", got)
			}
			st0, err := c.Sessions("gw2")
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("gw2 refused: not_installed %d, apply_errors %d, repaired %d", st0.NotInstalled, st0.ApplyErrors, st0.Repaired)

			// The refusal ends: the clashing entries go.
			if out, err := c.Lab.Exec("gw2", "conntrack", "-D", "-p", "tcp", "-s", clashOther.String(), "-d", clashServer.String()); err != nil {
				t.Fatalf("deleting the clashing entries on gw2: %v\n%s", err, out)
			}
			start := time.Now()
			if !tc.repaired {
				// Several of the intervals that repair them when on.
				time.Sleep(5 * time.Second)
				st, err := c.Sessions("gw2")
				if err != nil {
					t.Fatal(err)
				}
				if got := holding(t, gw2, cs); got != 0 || st.Repaired != st0.Repaired {
					t.Fatalf("without anti-entropy gw2's kernel holds %d of the %d sessions %s after the refusal ended (repaired %d -> %d): the test does not show what repairs them",
						got, n, time.Since(start).Round(time.Millisecond), st0.Repaired, st.Repaired)
				}
				t.Logf("without anti-entropy gw2's kernel still lacks all %d sessions %s after the refusal ended", n, time.Since(start).Round(time.Millisecond))
				return
			}
			if err := netlab.WaitFor(15*time.Second, 100*time.Millisecond, func() (bool, error) {
				return holding(t, gw2, cs) == n, nil
			}); err != nil {
				t.Fatalf("gw2's kernel holds %d of the %d sessions %s after the refusal ended: %v",
					holding(t, gw2, cs), n, time.Since(start).Round(time.Millisecond), err)
			}
			took := time.Since(start).Round(time.Millisecond)
			// The counters: repairs are counted (a repair counts the
			// sessions it brings when they arrive, refused or not, so
			// this grew during the refusal too), and once the kernel
			// took them the refusals stop: two more intervals add none.
			st1, err := c.Sessions("gw2")
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(2500 * time.Millisecond)
			st2, err := c.Sessions("gw2")
			if err != nil {
				t.Fatal(err)
			}
			if st2.Repaired-st0.Repaired < n || st2.NotInstalled != st1.NotInstalled {
				t.Fatalf("gw2's counters after the repair: repaired %d -> %d (want %d more), not_installed %d -> %d (want no more refusals)",
					st0.Repaired, st2.Repaired, n, st1.NotInstalled, st2.NotInstalled)
			}
			if !strings.Contains(c.Log("gw2"), "anti-entropy repaired the table") {
				t.Fatalf("gw2 did not log the repair:\n%s", c.Log("gw2"))
			}
			if got := holding(t, gw2, cs); got != n {
				t.Fatalf("gw2's kernel holds %d of the %d sessions after the repair", got, n)
			}
			t.Logf("anti-entropy installed all %d sessions on gw2 %s after the refusal ended (repaired %d -> %d, not_installed %d -> %d)",
				n, took, st0.Repaired, st2.Repaired, st0.NotInstalled, st2.NotInstalled)
		})
	}
}
