package harness

import (
	"encoding/json"
	"math"
	"net/netip"
	"os/exec"
	"testing"
	"time"

	"github.com/hagate/hagate/internal/cluster"
	"github.com/hagate/hagate/internal/heartbeat"
	"github.com/hagate/hagate/internal/seal"
	"github.com/hagate/hagate/lab/netlab"
)

// TestForgedFutureEpochLab is issue 15's finding 4 against real daemons: a
// key holder (the attacker here has the cluster key) seals heartbeats in
// gw2's name with boot id 2^64-1 and sends them to the primary gw1 from
// gw2's own address. Were one accepted, gw1 would take gw2's real boot for
// an earlier one and drop its heartbeats: a one-way partition while the
// links work. gw1 must refuse them as "epoch" (counted, and named in
// `hagate status --json` under gw2's address), keep hearing gw2's real
// boot, and change no role. With the check off (max_clock_skew: 0) the same
// frames get in and gw2's real heartbeats are dropped as an earlier boot:
// the attack is real, and the check is what stops it.
func TestForgedFutureEpochLab(t *testing.T) {
	const n = 20
	for _, tc := range []struct {
		name  string
		extra string
		check bool
	}{{"checked", "", true}, {"check-off", "security:\n  max_clock_skew: 0s\n", false}} {
		t.Run(tc.name, func(t *testing.T) {
			c := setup(t, 3, Options{Extra: MetricsExtra() + tc.extra}, netlab.Options{})
			c.Start("gw1")
			c.Start("gw2")
			mustHolder(t, c, 15*time.Second, "gw1")
			time.Sleep(time.Second) // gw2's real boot heard for a while
			if !memberAlive(t, c, "gw1", "gw2") {
				t.Fatal("gw1 does not hear gw2")
			}
			// What gw2 itself says: a subordinate that follows gw1.
			hb := cluster.Heartbeat{Role: cluster.Subordinate, Priority: 150, MonitoredUp: 2, MonitoredTotal: 2, Elected: "gw1"}
			frames := forgeBoot(t, "gw2", math.MaxUint64, seal.Encrypt, Key, nil, hb, n)
			before := mustScrape(t, c, "gw1")
			watch := watchHolders(t, c, []string{"gw1"})
			sendFrames(t, c, "gw2", haAddr(2), netip.AddrPortFrom(haAddr(1), hbPort), frames, 10*time.Millisecond)

			// Four dead intervals: gw2's real heartbeats must keep
			// arriving, and be heard, all along.
			deaf := 0
			for range 20 {
				time.Sleep(100 * time.Millisecond)
				if !memberAlive(t, c, "gw1", "gw2") {
					deaf++
				}
			}
			watch.check(t)
			after := mustScrape(t, c, "gw1")
			drops := dropsDelta(t, c, "gw1", before)
			rx := after.Sum("hagate_heartbeats_received_total", `peer="gw2"`) - before.Sum("hagate_heartbeats_received_total", `peer="gw2"`)
			t.Logf("gw1 after %d forged heartbeats of gw2 with boot 2^64-1: drops %v, %.0f heartbeats of gw2 received, gw2 not heard at %d of 20 polls", n, drops, rx, deaf)
			mustRole(t, c, "gw1", "primary", "gw1")
			mustRole(t, c, "gw2", "subordinate", "gw1")
			if !tc.check {
				if drops["epoch"] != 0 || drops["stale"] == 0 {
					t.Fatalf("with the check off, gw1 dropped %v: want the forged boot let in and gw2's real heartbeats dropped as stale", drops)
				}
				return
			}
			if drops["epoch"] != n || drops["stale"] != 0 || deaf != 0 {
				t.Errorf("gw1 dropped %v and missed gw2 at %d polls: want all %d forged frames dropped as epoch, none of gw2's real ones", drops, deaf, n)
			}
			if rx < 10 {
				t.Errorf("gw1 received %.0f heartbeats of gw2 in 2 s after the forgery", rx)
			}
			// `hagate status --json` names the drops under gw2's address.
			out, err := exec.Command(c.Bin, "status", "--json", "--config", c.ConfigPath("gw1")).Output()
			var st struct {
				FramesDropped []heartbeat.DropSummary `json:"frames_dropped"`
			}
			if jerr := json.Unmarshal(out, &st); jerr != nil {
				t.Fatalf("hagate status --json on gw1: %v, %v\n%s", err, jerr, out)
			}
			var found bool
			for _, d := range st.FramesDropped {
				if d.Source == haAddr(2).String() && d.Reason == "epoch" {
					found = d.Count == n
					t.Logf("hagate status --json on gw1: %s (%s)", d, d.Detail)
				}
			}
			if !found {
				t.Errorf("hagate status --json on gw1 does not show %d frames of %s dropped as epoch: %+v", n, haAddr(2), st.FramesDropped)
			}
		})
	}
}
