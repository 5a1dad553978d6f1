package election

import (
	"math/rand/v2"
	"testing"
	"time"

	"pgregory.net/rapid"
)

const m = 300 * time.Second

func TestElect(t *testing.T) {
	h := time.Hour
	cases := []struct {
		name  string
		rules Rules
		cands []Candidate
		want  string
		by    Criterion
	}{
		{"alone", Rules{UptimeMargin: m}, []Candidate{{ID: "gw1"}}, "gw1", OnlyMember},
		{"monitored beats all", Rules{UptimeMargin: m},
			[]Candidate{{ID: "gw1", MonitoredUp: 1, Uptime: h, Priority: 255}, {ID: "gw2", MonitoredUp: 2}}, "gw2", Monitored},
		{"uptime beats priority", Rules{UptimeMargin: m},
			[]Candidate{{ID: "gw1", Priority: 255, Uptime: time.Minute}, {ID: "gw2", Priority: 1, Uptime: h}}, "gw2", Uptime},
		{"uptime within margin: priority", Rules{UptimeMargin: m},
			[]Candidate{{ID: "gw1", Priority: 200, Uptime: h - time.Minute}, {ID: "gw2", Priority: 100, Uptime: h}}, "gw1", Priority},
		{"equal: node id", Rules{UptimeMargin: m},
			[]Candidate{{ID: "gw1", Priority: 128}, {ID: "gw3", Priority: 128}, {ID: "gw2", Priority: 128}}, "gw3", NodeID},
		{"override: priority beats uptime", Rules{Override: true, UptimeMargin: m},
			[]Candidate{{ID: "gw1", Priority: 255, Uptime: time.Minute}, {ID: "gw2", Priority: 1, Uptime: h}}, "gw1", Priority},
		{"override: monitored still first", Rules{Override: true, UptimeMargin: m},
			[]Candidate{{ID: "gw1", Priority: 255, MonitoredUp: 1}, {ID: "gw2", Priority: 1, MonitoredUp: 2}}, "gw2", Monitored},
		{"override: equal priority, uptime", Rules{Override: true, UptimeMargin: m},
			[]Candidate{{ID: "gw1", Priority: 9, Uptime: h}, {ID: "gw2", Priority: 9, Uptime: time.Minute}}, "gw1", Uptime},
		{"failover flag first", Rules{Override: true, UptimeMargin: m},
			[]Candidate{{ID: "gw1", Priority: 255, MonitoredUp: 2, FailoverSet: true}, {ID: "gw2", MonitoredUp: 0}}, "gw2", NotFailover},
		{"sessions before priority", Rules{Override: true, UptimeMargin: m},
			[]Candidate{{ID: "gw1", Priority: 255, SyncPending: true}, {ID: "gw2", Priority: 1}}, "gw2", Sessions},
		{"monitored before sessions", Rules{UptimeMargin: m},
			[]Candidate{{ID: "gw1", MonitoredUp: 2, SyncPending: true}, {ID: "gw2", MonitoredUp: 1}}, "gw1", Monitored},
		{"ping servers after monitored", Rules{UptimeMargin: m},
			[]Candidate{{ID: "gw1", MonitoredUp: 2, PingUp: 0, Uptime: h}, {ID: "gw2", MonitoredUp: 2, PingUp: 1}}, "gw2", PingServers},
		{"rejoining primary stays subordinate", Rules{UptimeMargin: m},
			[]Candidate{{ID: "gw1", Priority: 255, MonitoredUp: 2, Uptime: 0}, {ID: "gw2", Priority: 100, MonitoredUp: 2, Uptime: 10 * time.Minute}}, "gw2", Uptime},
		{"rejoin within margin: priority decides", Rules{UptimeMargin: m},
			[]Candidate{{ID: "gw1", Priority: 255, MonitoredUp: 2, Uptime: 0}, {ID: "gw2", Priority: 100, MonitoredUp: 2, Uptime: 2 * time.Minute}}, "gw1", Priority},
		{"rejoin with override and higher priority preempts", Rules{Override: true, UptimeMargin: m},
			[]Candidate{{ID: "gw1", Priority: 255, MonitoredUp: 2, Uptime: 0}, {ID: "gw2", Priority: 100, MonitoredUp: 2, Uptime: 10 * time.Minute}}, "gw1", Priority},
		// The margin is measured from the longest uptime, so a chain of
		// members each within the margin of the next does not chain.
		{"margin does not chain", Rules{UptimeMargin: m},
			[]Candidate{{ID: "a", Priority: 1, Uptime: h}, {ID: "b", Priority: 2, Uptime: h - 4*time.Minute}, {ID: "c", Priority: 3, Uptime: h - 8*time.Minute}}, "b", Priority},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Elect(c.cands, c.rules)
			if got.Primary != c.want || got.By != c.by {
				t.Fatalf("Elect = %s by %q, want %s by %q", got.Primary, got.By, c.want, c.by)
			}
		})
	}
}

func genCandidates(t *rapid.T) []Candidate {
	n := rapid.IntRange(1, 4).Draw(t, "n")
	ids := rapid.SliceOfNDistinct(rapid.StringMatching(`gw[0-9]`), n, n, rapid.ID[string]).Draw(t, "ids")
	var cs []Candidate
	for _, id := range ids {
		cs = append(cs, Candidate{
			ID:          id,
			Priority:    rapid.IntRange(0, 255).Draw(t, "prio"),
			MonitoredUp: rapid.IntRange(0, 2).Draw(t, "mon"),
			PingUp:      rapid.IntRange(0, 1).Draw(t, "ping"),
			Uptime:      time.Duration(rapid.Int64Range(0, int64(2*time.Hour)).Draw(t, "up")),
			FailoverSet: rapid.IntRange(0, 9).Draw(t, "fs") == 0,
			SyncPending: rapid.IntRange(0, 4).Draw(t, "sp") == 0,
		})
	}
	return cs
}

// The result is the same on every member, whatever order each lists them in.
func TestElectOrderIndependent(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cs := genCandidates(t)
		r := Rules{Override: rapid.Bool().Draw(t, "override"), UptimeMargin: m}
		want := Elect(cs, r)
		rand.Shuffle(len(cs), func(i, j int) { cs[i], cs[j] = cs[j], cs[i] })
		if got := Elect(cs, r); got != want {
			t.Fatalf("order changed the result: %v vs %v", got, want)
		}
	})
}

// The winner has no fewer monitored links up than anyone (without the failover flag).
func TestElectMonitoredDominates(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cs := genCandidates(t)
		for i := range cs {
			cs[i].FailoverSet = false
		}
		res := Elect(cs, Rules{Override: rapid.Bool().Draw(t, "override"), UptimeMargin: m})
		var win Candidate
		for _, c := range cs {
			if c.ID == res.Primary {
				win = c
			}
		}
		for _, c := range cs {
			if c.MonitoredUp > win.MonitoredUp {
				t.Fatalf("%s won with %d monitored up, %s has %d", win.ID, win.MonitoredUp, c.ID, c.MonitoredUp)
			}
		}
	})
}

func BenchmarkElect4(b *testing.B) {
	cs := []Candidate{{ID: "gw1", Priority: 1}, {ID: "gw2", Priority: 2}, {ID: "gw3", Priority: 2}, {ID: "gw4", Priority: 2}}
	for b.Loop() {
		Elect(cs, Rules{UptimeMargin: m})
	}
}

// A member out of sync with the primary's configuration ranks below one in
// sync, after the sessions and before uptime or priority, with override on
// or off.
func TestConfigPendingRanksLower(t *testing.T) {
	for _, override := range []bool{false, true} {
		cands := []Candidate{
			{ID: "a", Priority: 250, Uptime: time.Hour, ConfigPending: true},
			{ID: "b", Priority: 100, Uptime: time.Minute},
		}
		if got := Elect(cands, Rules{Override: override}); got.Primary != "b" || got.By != ConfigSync {
			t.Errorf("override %v: got %+v, want b by configuration", override, got)
		}
		cands[0].ConfigPending = false
		if got := Elect(cands, Rules{Override: override}); got.Primary != "a" {
			t.Errorf("override %v, in sync: got %+v, want a", override, got)
		}
		// Sessions come first.
		cands[0].ConfigPending, cands[1].SyncPending = true, true
		if got := Elect(cands, Rules{Override: override}); got.Primary != "a" || got.By != Sessions {
			t.Errorf("override %v: got %+v, want a by sessions", override, got)
		}
	}
}

// Explain names every member that lost and the criterion that put it out,
// with the values compared, in the order of the criteria.
func TestExplain(t *testing.T) {
	gw1 := Candidate{ID: "gw1", Priority: 200, MonitoredUp: 1, Uptime: time.Hour}
	gw2 := Candidate{ID: "gw2", Priority: 150, MonitoredUp: 2, Uptime: time.Hour}
	gw3 := Candidate{ID: "gw3", Priority: 100, MonitoredUp: 2, Uptime: time.Hour}
	margin := Rules{UptimeMargin: 5 * time.Minute}
	for _, tc := range []struct {
		name  string
		cands []Candidate
		r     Rules
		want  string
	}{
		{"monitored then priority", []Candidate{gw1, gw2, gw3}, margin,
			"gw2 over gw1: monitored links up 2 > 1; gw2 over gw3: priority 150 > 100"},
		{"uptime before priority", []Candidate{gw2, {ID: "gw3", Priority: 100, MonitoredUp: 2, Uptime: 2 * time.Hour}}, margin,
			"gw3 over gw2: HA uptime 2h0m0s > 1h0m0s (margin 5m0s)"},
		{"override: priority before uptime", []Candidate{gw2, {ID: "gw3", Priority: 100, MonitoredUp: 2, Uptime: 2 * time.Hour}}, Rules{Override: true, UptimeMargin: 5 * time.Minute},
			"gw2 over gw3: priority 150 > 100"},
		{"failover and sessions", []Candidate{{ID: "a", FailoverSet: true}, {ID: "b", SyncPending: true}, {ID: "c"}}, margin,
			"c over a: failover set on a; c over b: b waits for its session sync"},
		{"the loser's own links named", []Candidate{{ID: "gw1", MonitoredUp: 1, MonitoredDown: "lan"}, {ID: "gw2", MonitoredUp: 2}}, margin,
			"gw2 over gw1: monitored links up 2 > 1 (lan down on gw1)"},
		{"node id", []Candidate{{ID: "a"}, {ID: "b"}}, margin, "b over a: all else equal, node id b > a"},
		{"alone", []Candidate{gw1}, margin, "gw1: the only member"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := Elect(tc.cands, tc.r)
			if got := Explain(res, tc.cands, tc.r); got != tc.want {
				t.Errorf("Explain = %q\nwant      %q", got, tc.want)
			}
		})
	}
	// A result that is not the election of these members explains nothing.
	if got := Explain(Result{Primary: "gw3"}, []Candidate{gw1, gw2, gw3}, margin); got != "" {
		t.Errorf("stale result explained as %q", got)
	}
}
