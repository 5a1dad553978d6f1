package echo

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func ms(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }

// ev is one step of a replayed run: a record sent at ms, or (echo) the
// echo of seq at ms.
type ev struct {
	ms   int
	echo bool
	seq  uint64
}

func send(ms int) ev               { return ev{ms: ms} }
func echoOf(seq uint64, ms int) ev { return ev{ms: ms, echo: true, seq: seq} }

// steady sends n records every 50 ms from start and echoes each 1 ms
// later, except those in skip; the first has sequence number first.
func steady(first uint64, start, n int, skip ...uint64) []ev {
	var out []ev
	for i := range n {
		at := start + 50*i
		out = append(out, send(at))
		seq := first + uint64(i)
		if !containsSeq(skip, seq) {
			out = append(out, echoOf(seq, at+1))
		}
	}
	return out
}

func containsSeq(list []uint64, s uint64) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func cat(parts ...[]ev) []ev {
	var out []ev
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// replay feeds evs to a fresh tracker and returns its final report.
func replay(t *testing.T, network string, evs []ev) Report {
	t.Helper()
	tr := newTracker(network, true, t0)
	tr.conns = 1
	for _, e := range evs {
		if e.echo {
			if _, err := tr.echo(e.seq, ms(e.ms)); err != nil {
				tr.fail(ms(e.ms), 0, err.Error())
			}
		} else {
			tr.send(ms(e.ms), 0)
		}
	}
	tr.finish()
	return tr.report(ms(1e6))
}

func TestTrackerVerdicts(t *testing.T) {
	// The fields the verdict rests on.
	type verdict struct {
		Received, Lost, Dups, Reordered uint64
		MaxGap                          time.Duration
		GapAt                           time.Time
		GapOpen, Survived               bool
		Err                             string
	}
	tests := []struct {
		name    string
		network string
		evs     []ev
		want    verdict
	}{
		{"tcp steady", "tcp", steady(0, 0, 5),
			verdict{Received: 5, MaxGap: 50 * time.Millisecond, GapAt: ms(1), Survived: true}},
		{"tcp outage, queued records arrive together", "tcp", cat(
			[]ev{send(0), echoOf(0, 1), send(50), send(100), send(450)},
			[]ev{echoOf(1, 451), echoOf(2, 451), echoOf(3, 452), send(500), echoOf(4, 501)}),
			verdict{Received: 5, MaxGap: 450 * time.Millisecond, GapAt: ms(1), Survived: true}},
		{"tcp last records never echoed: open gap to the last send", "tcp", cat(
			[]ev{send(0), echoOf(0, 1)}, []ev{send(50), send(2000)}),
			verdict{Received: 1, Lost: 2, MaxGap: 1999 * time.Millisecond, GapAt: ms(1), GapOpen: true,
				Err: "2 records never echoed"}},
		{"nothing echoed", "udp", []ev{send(0)},
			verdict{Lost: 1, GapOpen: true, Err: "no datagram came back"}},
		{"udp failover: loss only inside the gap", "udp", steady(0, 0, 20, 5, 6, 7),
			verdict{Received: 17, Lost: 3, MaxGap: 200 * time.Millisecond, GapAt: ms(201), Survived: true}},
		{"udp losses in two runs", "udp", steady(0, 0, 20, 5, 6, 7, 15),
			verdict{Received: 16, Lost: 4, MaxGap: 200 * time.Millisecond, GapAt: ms(201),
				Err: "4 datagrams lost in 2 separate runs (a failover loses one)"}},
		// The client itself stalled for 600 ms (a busy machine), longer
		// than the failover, and lost nothing then.
		{"udp stall without loss, then a failover", "udp", cat(
			steady(0, 0, 5), []ev{send(850), echoOf(5, 851)}, steady(6, 900, 10, 8, 9)),
			verdict{Received: 14, Lost: 2, MaxGap: 650 * time.Millisecond, GapAt: ms(201), Survived: true}},
		{"udp flow stopped", "udp", steady(0, 0, 20, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19),
			verdict{Received: 10, Lost: 10, MaxGap: 499 * time.Millisecond, GapAt: ms(451), GapOpen: true,
				Err: "the flow stopped: no echo for the last 499ms"}},
		{"udp duplicate", "udp", cat(steady(0, 0, 3), []ev{echoOf(1, 120)}),
			verdict{Received: 3, Dups: 1, MaxGap: 50 * time.Millisecond, GapAt: ms(1)}},
		{"udp reordered", "udp", []ev{send(0), send(50), echoOf(1, 51), echoOf(0, 52), send(100), echoOf(2, 101)},
			verdict{Received: 3, Reordered: 1, MaxGap: 49 * time.Millisecond, GapAt: ms(52), Survived: true}},
		{"echo of a record never sent", "udp", []ev{send(0), echoOf(0, 1), echoOf(9, 2)},
			verdict{Received: 1, Err: "after 2ms: echo of record 9, which was never sent (1 sent)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := replay(t, tt.network, tt.evs)
			got := verdict{r.Received, r.Lost, r.Dups, r.Reordered, r.MaxGap, r.GapAt, r.GapOpen, r.Survived, r.Err}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("report %s (-want +got):\n%s", r, d)
			}
			if r.Sent != uint64(len(r.Samples)) {
				t.Errorf("%d sent, %d samples", r.Sent, len(r.Samples))
			}
		})
	}
}

// While the client runs, a stall still going on counts in the gap, and
// only the records below the highest echoed count as lost.
func TestTrackerSnapshot(t *testing.T) {
	tr := newTracker("udp", false, t0)
	for _, e := range cat(steady(0, 0, 4, 1), []ev{send(200), send(250)}) {
		if e.echo {
			tr.echo(e.seq, ms(e.ms))
		} else {
			tr.send(ms(e.ms), 0)
		}
	}
	got := tr.report(ms(900))
	want := Report{Network: "udp", StartNS: t0.UnixNano(), Sent: 6, Received: 3, Lost: 1,
		MaxGap: 749 * time.Millisecond, GapAt: ms(151), GapOpen: true}
	if d := cmp.Diff(want, got, cmpopts.EquateEmpty()); d != "" {
		t.Errorf("snapshot (-want +got):\n%s", d)
	}
}

// Samples line up with the sends and echoes; a lost record has none.
func TestTrackerSamples(t *testing.T) {
	r := replay(t, "udp", steady(0, 0, 3, 1))
	want := []Sample{
		{Seq: 0, SentNS: ms(0).UnixNano(), EchoNS: ms(1).UnixNano()},
		{Seq: 1, SentNS: ms(50).UnixNano()},
		{Seq: 2, SentNS: ms(100).UnixNano(), EchoNS: ms(101).UnixNano()},
	}
	if d := cmp.Diff(want, r.Samples); d != "" {
		t.Errorf("samples (-want +got):\n%s", d)
	}
}
