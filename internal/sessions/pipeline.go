package sessions

import (
	"iter"

	"github.com/hagate/hagate/internal/sessions/session"
	"github.com/hagate/hagate/internal/sessions/syncproto"
)

// Sessions and expectations ride one pipeline from the primary to its
// subordinates: queued per subordinate, cut into batches, framed, numbered
// in one sequence. A kind says what differs between the two on that path.
type kind[C any] struct {
	// minVersion is the lowest protocol version that carries the kind.
	minVersion uint8
	// queue is a subordinate's queue of the kind's changes.
	queue func(p *peer) *[]C
	// writer encodes a batch of the kind for p's connection.
	writer func(p *peer) syncproto.Writer[C]
	// full says when a batch is cut.
	full func(w syncproto.Writer[C]) bool
	// counted: the changes sent count as SessionsSent.
	counted bool
}

// sessionKind: batches cut at maxPayload bytes.
var sessionKind = kind[session.Change]{
	queue:   func(p *peer) *[]session.Change { return &p.queue },
	writer:  sessionWriter,
	full:    func(w syncproto.Writer[session.Change]) bool { return w.Len() >= maxPayload },
	counted: true,
}

// expectKind: from version 2, batches of at most expectsPerBatch (about
// 150 bytes each, well under maxPayload).
var expectKind = kind[session.ExpectChange]{
	minVersion: 2,
	queue:      func(p *peer) *[]session.ExpectChange { return &p.xq },
	writer:     func(*peer) syncproto.Writer[session.ExpectChange] { return &syncproto.ExpectWriter{} },
	full:       func(w syncproto.Writer[session.ExpectChange]) bool { return w.Count() >= expectsPerBatch },
}

const expectsPerBatch = 1024

// enqueueLocked hands change c to every subordinate that receives changes
// and speaks the kind, and returns how many took it. A full queue is
// dropped, with the other kind's, and its subordinate resynced: a slow
// subordinate never holds up the primary.
func (k *kind[C]) enqueueLocked(e *Engine, c C) int {
	n := 0
	for _, p := range e.pri.peers {
		if !p.active || p.version < k.minVersion || p.overflow {
			continue
		}
		q := k.queue(p)
		if len(*q) >= e.cfg.QueueLen {
			p.overflow = true
			p.queue, p.xq = p.queue[:0], p.xq[:0]
			e.st.queueOverflows++
			continue
		}
		p.noteQueuedLocked(e)
		*q = append(*q, c)
		n++
		p.wakeUp()
	}
	return n
}

// send sends cs to p in batches numbered on from *seq, encoded into buf
// (returned for reuse).
func (k *kind[C]) send(e *Engine, fc *frameConn, p *peer, cs []C, seq *uint64, buf []byte) ([]byte, error) {
	w := k.writer(p)
	for i := 0; i < len(cs); {
		w.Reset(buf[:0])
		for ; i < len(cs) && !k.full(w); i++ {
			w.Add(&cs[i])
		}
		*seq++
		buf = w.Finish(*seq)
		n := 0
		if k.counted {
			n = w.Count()
		}
		if err := e.sendBatch(fc, p, buf, *seq, n); err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// bulkLocked encodes the changes of a bulk to p, all of them, into
// batches whose sequence numbers are set when sent, and empties p's queue
// of the kind: the bulk carries what it held. rank (nil: all alike) orders
// the batches: each batch holds changes of one rank, lowest rank first. It
// returns the batches and the count of changes.
func (k *kind[C]) bulkLocked(p *peer, all iter.Seq[C], rank func(*C) int) ([][]byte, int) {
	q := k.queue(p)
	*q = (*q)[:0]
	p.oldest = 0 // the bulk carries the queue: its lag is the bulk's
	return k.encodeLocked(p, all, rank)
}

// encodeLocked encodes all into batches for p whose sequence numbers are
// set when sent, ordered by rank as bulkLocked says, and returns them and
// the count of changes.
func (k *kind[C]) encodeLocked(p *peer, all iter.Seq[C], rank func(*C) int) ([][]byte, int) {
	if p.version < k.minVersion {
		return nil, 0
	}
	var (
		ws     []syncproto.Writer[C] // the batch being filled, by rank
		chunks [][][]byte            // the batches cut, by rank
		n      int
	)
	for c := range all {
		r := 0
		if rank != nil {
			r = rank(&c)
		}
		for len(ws) <= r {
			w := k.writer(p)
			w.Reset(nil)
			ws, chunks = append(ws, w), append(chunks, nil)
		}
		w := ws[r]
		w.Add(&c)
		n++
		if k.full(w) {
			chunks[r] = append(chunks[r], w.Finish(0))
			w.Reset(make([]byte, 0, maxPayload+256))
		}
	}
	var out [][]byte
	for r, w := range ws {
		if w.Count() > 0 {
			chunks[r] = append(chunks[r], w.Finish(0))
		}
		out = append(out, chunks[r]...)
	}
	return out, n
}
