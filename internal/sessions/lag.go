package sessions

import (
	"math"
	"time"

	"github.com/hagate/hagate/internal/sessions/session"
	"github.com/hagate/hagate/internal/sessions/syncproto"
)

// Lag per change (protocol version 4): every batch of changes carries when
// the primary saw the oldest change in it (the time it queued it for the
// subordinate), and the subordinate measures from that to the end of its
// kernel install. It is the time a session is exposed at a failover: the
// window in which the primary holds it and the subordinate does not. It
// includes the difference between the two members' clocks, which NTP keeps
// to a millisecond or so; a negative lag (a clock behind) counts as zero.

// timedBatchVersion is the protocol version whose batches are timed.
const timedBatchVersion = 4

// noteQueuedLocked records when the first change of an empty queue was
// seen, for a subordinate that measures lag.
func (p *peer) noteQueuedLocked(e *Engine) {
	if p.oldest == 0 && p.version >= timedBatchVersion {
		p.oldest = e.now().UnixNano()
	}
}

// sessionWriter encodes a batch of sessions for p's connection, timed
// with the oldest of the changes being sent when p measures lag.
func sessionWriter(p *peer) syncproto.Writer[session.Change] {
	return &syncproto.BatchWriter{Version: p.version, Oldest: p.sending}
}

// takeOldestLocked returns when the oldest queued change was seen (0: not
// known), as the queue is taken.
func (p *peer) takeOldestLocked() int64 {
	o := p.oldest
	p.oldest = 0
	return o
}

// changeLag records the lag of a batch just installed whose oldest change
// the primary saw at oldest (Unix nanoseconds; 0: an untimed batch).
func (e *Engine) changeLag(oldest int64) {
	if oldest == 0 {
		return
	}
	d := max(e.now().Sub(time.Unix(0, oldest)), 0)
	e.mu.Lock()
	e.sub.lag.add(d)
	e.mu.Unlock()
	e.obs.ChangeLag(d)
}

// LagStats is the subordinate's lag per change since it started: the
// quantiles are upper bounds of the histogram's buckets (within 19%).
type LagStats struct {
	Batches uint64        `json:"batches"`
	P50     time.Duration `json:"p50_ns"`
	P99     time.Duration `json:"p99_ns"`
	Max     time.Duration `json:"max_ns"`
}

// lagHistogram counts lags in buckets growing by 2^(1/4) from 100 us: the
// last one (about 100 s up) takes everything longer.
type lagHistogram struct {
	n       [lagBuckets]uint64
	total   uint64
	longest time.Duration
}

const (
	lagBuckets = 80
	lagFirst   = 100 * time.Microsecond
)

func lagBucket(d time.Duration) int {
	if d <= lagFirst {
		return 0
	}
	return min(int(math.Ceil(4*math.Log2(float64(d)/float64(lagFirst)))), lagBuckets-1)
}

func lagBound(i int) time.Duration {
	return time.Duration(float64(lagFirst) * math.Exp2(float64(i)/4))
}

func (h *lagHistogram) add(d time.Duration) {
	h.n[lagBucket(d)]++
	h.total++
	h.longest = max(h.longest, d)
}

// quantile returns the upper bound of the bucket holding quantile q.
func (h *lagHistogram) quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	want := uint64(math.Ceil(q * float64(h.total)))
	var seen uint64
	for i, n := range h.n {
		seen += n
		if seen >= want {
			return min(lagBound(i), h.longest)
		}
	}
	return h.longest
}

func (h *lagHistogram) stats() LagStats {
	return LagStats{Batches: h.total, P50: h.quantile(0.5), P99: h.quantile(0.99), Max: h.longest}
}
