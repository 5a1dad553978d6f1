package echo

import (
	"fmt"
	"time"
)

// Report is what a client saw: its summary while it runs (Client.Snapshot)
// and its verdict at the end (Client.Run).
type Report struct {
	Network string `json:"network,omitempty"` // "tcp" or "udp"
	StartNS int64  `json:"start_ns"`          // Unix ns, to line up with faults recorded by another process
	Sent    uint64 `json:"sent"`
	// Received counts the records echoed, each once.
	Received uint64 `json:"received"`
	// Lost counts the records never echoed: at the end, every one of
	// them; while the client runs, those below the highest one echoed.
	Lost      uint64 `json:"lost,omitempty"`
	Dups      uint64 `json:"dups,omitempty"`      // echoes of a record already echoed (UDP)
	Reordered uint64 `json:"reordered,omitempty"` // echoes after that of a later record (UDP)
	// MaxGap is the longest time without a new echo, from the first
	// echo on. A stall still going on counts, up to now while the client
	// runs and up to the last send at the end; GapOpen then says so, and
	// MaxGap is a lower bound.
	MaxGap  time.Duration `json:"max_gap_ns"`
	GapAt   time.Time     `json:"gap_at"` // when the longest gap began (the echo before it)
	GapOpen bool          `json:"gap_open,omitempty"`
	Conns   int           `json:"conns"`           // TCP connections opened (1 for UDP: one socket)
	Local   string        `json:"local,omitempty"` // the client's address of its (last) connection or socket
	Err     string        `json:"error,omitempty"`
	Errors  []string      `json:"errors,omitempty"` // every error, oldest (Err) first
	// Samples has a sample per record sent, if the client was asked to
	// keep them (Config.Samples); only in the final report.
	Samples []Sample `json:"samples,omitempty"`
	// Survived: TCP, one connection carried every record, once and in
	// order, with no error. UDP: no error, no duplicate, echoes came back
	// to the end, and the lost datagrams, if any, are one run of
	// consecutive records: a failover may lose what was sent while no
	// gateway forwarded, and a flow that survived it loses nothing else.
	// (Not "inside the longest gap": on a busy machine the client itself
	// may stall longer than the failover, losing nothing.)
	Survived bool `json:"survived"`
}

func (r Report) String() string {
	s := fmt.Sprintf("sent %d, echoed %d, longest gap %s", r.Sent, r.Received, r.MaxGap.Round(time.Millisecond))
	if r.GapOpen {
		s += " (still open)"
	}
	if r.Network == "udp" || r.Lost > 0 {
		s += fmt.Sprintf(", lost %d", r.Lost)
	}
	if r.Network == "udp" {
		s += fmt.Sprintf(", duplicated %d, reordered %d", r.Dups, r.Reordered)
	}
	if r.Conns > 1 {
		s += fmt.Sprintf(", %d connections", r.Conns)
	}
	if r.Err != "" {
		s += ", error: " + r.Err
	}
	return s
}

// Sample is one record the client sent. Times are Unix nanoseconds.
type Sample struct {
	Seq    uint64 `json:"seq"`
	Conn   int    `json:"conn"` // 0 for the first connection, 1 after the first reconnect, ...
	SentNS int64  `json:"sent_ns"`
	EchoNS int64  `json:"echo_ns,omitempty"` // 0: never echoed (lost)
}

// tracker is the client's account of one run: which records went out
// when, which came back, and the longest wait between echoes. Times come
// in as arguments, so tests replay runs without a clock. The zero value
// is not ready: use newTracker. Not safe for concurrent use.
type tracker struct {
	network string
	keep    bool // keep a Sample per record
	start   time.Time

	sent     uint64
	lastSent time.Time
	echoed   []uint64 // bit set: the records echoed
	received uint64
	dups     uint64
	reord    uint64
	highest  uint64 // 1 + the highest record echoed; 0: none yet
	lastEcho time.Time
	maxGap   time.Duration // the longest time between two new echoes
	gapAt    time.Time     // when it began
	conns    int
	local    string
	errs     []string
	samples  []Sample
	done     bool // finish ran
}

func newTracker(network string, keep bool, start time.Time) tracker {
	return tracker{network: network, keep: keep, start: start}
}

// send records that the next record goes out at at over connection conn,
// and returns its sequence number.
func (t *tracker) send(at time.Time, conn int) uint64 {
	seq := t.sent
	t.sent++
	t.lastSent = at
	if int(seq/64) >= len(t.echoed) {
		t.echoed = append(t.echoed, 0)
	}
	if t.keep {
		t.samples = append(t.samples, Sample{Seq: seq, Conn: conn, SentNS: at.UnixNano()})
	}
	return seq
}

// echo records the echo of record seq at at. It returns an error for a
// record that was never sent, and fresh false for a duplicate.
func (t *tracker) echo(seq uint64, at time.Time) (fresh bool, err error) {
	if seq >= t.sent {
		return false, fmt.Errorf("echo of record %d, which was never sent (%d sent)", seq, t.sent)
	}
	w, bit := seq/64, uint64(1)<<(seq%64)
	if t.echoed[w]&bit != 0 {
		t.dups++
		return false, nil
	}
	t.echoed[w] |= bit
	t.received++
	if seq+1 < t.highest {
		t.reord++
	}
	t.highest = max(t.highest, seq+1)
	if !t.lastEcho.IsZero() {
		if d := at.Sub(t.lastEcho); d > t.maxGap {
			t.maxGap, t.gapAt = d, t.lastEcho
		}
	}
	if at.After(t.lastEcho) {
		t.lastEcho = at
	}
	if t.keep {
		t.samples[seq].EchoNS = at.UnixNano()
	}
	return true, nil
}

// fail records an error at at on connection conn (TCP).
func (t *tracker) fail(at time.Time, conn int, msg string) {
	if t.network == "tcp" {
		msg = fmt.Sprintf("conn %d after %s: %s", conn, at.Sub(t.start).Round(time.Millisecond), msg)
	} else {
		msg = fmt.Sprintf("after %s: %s", at.Sub(t.start).Round(time.Millisecond), msg)
	}
	t.errs = append(t.errs, msg)
}

// tail is the open gap at now: the time since the last echo, if a record
// went out after it.
func (t *tracker) tail(now time.Time) (time.Duration, bool) {
	if t.lastEcho.IsZero() || !t.lastSent.After(t.lastEcho) {
		return 0, false
	}
	return now.Sub(t.lastEcho), true
}

// finish closes the account at the end of the run, when nothing more will
// be echoed: the errors that only the whole run shows.
func (t *tracker) finish() {
	if t.done {
		return
	}
	t.done = true
	lost := t.sent - t.received
	if lost == 0 {
		return
	}
	if t.network == "tcp" {
		t.errs = append(t.errs, fmt.Sprintf("%d records never echoed", lost))
		return
	}
	if t.received == 0 {
		t.errs = append(t.errs, "no datagram came back")
		return
	}
	runs, toEnd := t.lostRuns()
	switch {
	case toEnd:
		tl, _ := t.tail(t.lastSent)
		t.errs = append(t.errs, fmt.Sprintf("the flow stopped: no echo for the last %s", tl.Round(time.Millisecond)))
	case runs > 1:
		t.errs = append(t.errs, fmt.Sprintf("%d datagrams lost in %d separate runs (a failover loses one)", lost, runs))
	}
}

// lostRuns counts the runs of consecutive records never echoed, and says
// whether the last run reaches the last record sent.
func (t *tracker) lostRuns() (runs int, toEnd bool) {
	in := false
	for seq := uint64(0); seq < t.sent; seq++ {
		lost := t.echoed[seq/64]&(1<<(seq%64)) == 0
		if lost && !in {
			runs++
		}
		in = lost
	}
	return runs, in
}

// report is the account at now: final after finish, a snapshot before.
// Samples are left out of snapshots.
func (t *tracker) report(now time.Time) Report {
	r := Report{Network: t.network, StartNS: t.start.UnixNano(), Sent: t.sent, Received: t.received,
		Dups: t.dups, Reordered: t.reord, Conns: t.conns, Local: t.local, MaxGap: t.maxGap, GapAt: t.gapAt}
	end := now
	if t.done {
		end = t.lastSent
		r.Lost = t.sent - t.received
		r.Samples = append([]Sample(nil), t.samples...)
	} else {
		r.Lost = t.highest - t.received
	}
	if tl, open := t.tail(end); open && tl > r.MaxGap {
		r.MaxGap, r.GapAt, r.GapOpen = tl, t.lastEcho, true
	}
	if t.sent > 0 && t.received == 0 {
		r.GapOpen = true
	}
	if len(t.errs) > 0 {
		r.Err = t.errs[0]
		r.Errors = append([]string(nil), t.errs...)
	}
	if t.done {
		ok := len(t.errs) == 0 && t.sent > 0 && t.dups == 0 && !r.GapOpen
		if t.network == "tcp" {
			ok = ok && t.conns == 1 && t.received == t.sent
		}
		r.Survived = ok
	}
	return r
}
