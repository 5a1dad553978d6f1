package sessions

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/hagate/hagate/internal/sessions/session"
	"github.com/hagate/hagate/internal/sessions/syncproto"
)

// peer is the primary's side of one subordinate. Fields other than addr are
// guarded by Engine.mu.
type peer struct {
	addr   netip.AddrPort
	cancel context.CancelFunc
	wake   chan struct{}
	heard  chan struct{} // the member stopped being absent: dial now
	acked  chan struct{} // an ack arrived (gather)

	absent bool // its member is not heard: not dialled

	id        string
	connected bool
	active    bool // receives changes (its bulk snapshot has been taken)
	queue     []session.Change
	overflow  bool
	resyncReq bool

	sentSeq  uint64
	ackedSeq uint64
	lag      time.Duration
	sentAt   [64]struct {
		seq uint64
		at  time.Time
	}
	bulks, resyncs uint64
	lastBulk       time.Duration // how long the last bulk sync to it took to send

	version uint8                  // protocol version of the connection
	xq      []session.ExpectChange // expectation changes (expect.go)
	ae      peerEntropy            // anti-entropy (antientropy.go)
	oldest  int64                  // when the oldest queued change was seen (lag.go)
	sending int64                  // oldest of the changes being sent (owned by streamTo)
	inHand  int                    // changes taken from the queue and not yet sent (Stats: Sending)
}

func newPeer(a netip.AddrPort) *peer {
	return &peer{addr: a, cancel: func() {}, wake: make(chan struct{}, 1), heard: make(chan struct{}, 1), acked: make(chan struct{}, 1)}
}

func (p *peer) wakeUp() { signal(p.wake) }

// signal wakes the reader of c, or leaves it a token if none is waiting.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// setAbsentLocked records whether the member at p is heard; one heard again
// is dialled at once.
func (p *peer) setAbsentLocked(absent bool) {
	if p.absent && !absent {
		signal(p.heard)
	}
	p.absent = absent
}

// startPeerLocked runs the connection to p for as long as the engine is
// primary.
func (e *Engine) startPeerLocked(p *peer) {
	if e.pri.wg == nil || !e.pri.serving {
		return // not serving yet: started once the table is mirrored
	}
	ctx, cancel := context.WithCancel(e.pri.ctx)
	p.cancel = cancel
	e.goRole(e.pri.wg, func() { e.runPeer(ctx, p) })
}

// runPeer dials p, syncs it, and redials after failures. A member that is
// heard but refuses (in its hello holddown, say) is redialled with a
// backoff capped low; one not heard is not dialled, and is dialled as soon
// as its first heartbeat arrives, so that a joining member's bulk starts
// within a round trip of its join.
func (e *Engine) runPeer(ctx context.Context, p *peer) {
	const minBackoff, maxBackoff = 100 * time.Millisecond, time.Second
	backoff := minBackoff
	for ctx.Err() == nil && e.isPrimary() {
		if !e.awaitHeard(ctx, p) {
			return
		}
		start := e.now()
		err := e.servePeer(ctx, p)
		e.mu.Lock()
		wasConnected := p.connected
		p.connected, p.active, p.queue, p.overflow = false, false, p.queue[:0], false
		absent := p.absent
		e.mu.Unlock()
		if ctx.Err() != nil || !e.isPrimary() {
			return
		}
		switch {
		case absent && !wasConnected:
			// The quiet try of a member not heard: said once already.
		case absent:
			e.log.Info("session pickup: subordinate connection ended; its member is not heard", "peer", p.addr, "err", err)
		default:
			e.log.Warn("session pickup: subordinate connection lost", "peer", p.addr, "err", err)
		}
		if wasConnected {
			e.emit(SyncLost{Peer: p.addr.String(), Err: err})
		}
		if e.now().Sub(start) > 10*time.Second {
			backoff = minBackoff
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-p.heard: // heard again after an absence: dial now
			t.Stop()
			backoff = minBackoff
			continue
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// awaitHeard waits while p's member is absent, saying so once; false: ctx
// ended.
func (e *Engine) awaitHeard(ctx context.Context, p *peer) bool {
	logged := false
	for {
		e.mu.Lock()
		absent := p.absent
		e.mu.Unlock()
		if !absent {
			return true
		}
		if !logged {
			e.log.Info("session pickup: member not heard; dialled at once when its heartbeats arrive, tried every "+absentRedial.String()+" meanwhile", "peer", p.addr)
			logged = true
		}
		t := time.NewTimer(absentRedial)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-p.heard:
			t.Stop()
		case <-t.C:
			// A member whose heartbeats do not arrive may still take
			// the sync (its heartbeats lost one way, or a member this
			// build cannot read): try it now and then, quietly.
			return true
		}
	}
}

// absentRedial is how often a member not heard is dialled all the same.
const absentRedial = 5 * time.Second

func (e *Engine) isPrimary() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.role == rolePrimary
}

// servePeer runs one connection: handshake, bulk, then changes as they come.
func (e *Engine) servePeer(ctx context.Context, p *peer) error {
	dctx, cancel := context.WithTimeout(ctx, e.cfg.IOTimeout)
	c, err := e.cfg.Dial(dctx, p.addr.String())
	cancel()
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(cctx, func() { c.Close() })
	defer stop()
	fc := e.newFrameConn(c)
	defer fc.release()
	version := e.helloVersion()
	if err := fc.write(syncproto.AppendHello(nil, syncproto.Hello{Version: version, NodeID: e.cfg.NodeID}), e.cfg.IOTimeout); err != nil {
		return fmt.Errorf("hello: %w", err)
	}
	hello, err := e.readHello(fc, e.cfg.IOTimeout)
	if err != nil {
		return fmt.Errorf("%s: %w", p.addr, err)
	}
	version = min(version, hello.Version)
	if version < e.cfg.MinVersion {
		return fmt.Errorf("%s: protocol version %d is below security.min_sync_version %d", p.addr, version, e.cfg.MinVersion)
	}
	if version >= 3 {
		// Answer the subordinate's challenge before anything else.
		if hello.Nonce == ([syncproto.NonceLen]byte{}) {
			return fmt.Errorf("%s: hello without a challenge at version %d", p.addr, version)
		}
		echo := syncproto.Hello{Version: version, NodeID: e.cfg.NodeID, Nonce: hello.Nonce}
		if err := fc.write(syncproto.AppendHello(nil, echo), e.cfg.IOTimeout); err != nil {
			return fmt.Errorf("challenge: %w", err)
		}
	}
	e.mu.Lock()
	p.id, p.connected = hello.NodeID, true
	p.version = version
	p.ae = peerEntropy{last: e.now()} // the first digest one interval after the bulk
	e.mu.Unlock()
	e.log.Info("session pickup: subordinate connected", "peer", p.addr, "node", hello.NodeID)

	// The reader takes acks and resync requests; it ends the connection on
	// any error or silence.
	readErr := make(chan error, 1)
	go func() {
		defer cancel()
		readErr <- e.readAcks(fc, p)
	}()
	err = e.streamTo(cctx, fc, p)
	cancel()
	if rerr := <-readErr; err == nil || errors.Is(err, context.Canceled) {
		err = rerr
	}
	return err
}

func (e *Engine) readAcks(fc *frameConn, p *peer) error {
	for {
		_, payload, err := fc.read(e.cfg.IdleTimeout)
		if err != nil {
			e.dropped(err)
			return err
		}
		m, err := syncproto.Decode(payload, nil)
		if err != nil {
			e.obs.FrameDropped("decode")
			return err
		}
		switch m := m.(type) {
		case syncproto.Ack:
			now := e.now()
			e.mu.Lock()
			p.ackedSeq = m.Seq
			if s := p.sentAt[m.Seq%uint64(len(p.sentAt))]; s.seq == m.Seq && !s.at.IsZero() {
				p.lag = now.Sub(s.at)
				e.obs.SyncLag(p.lag)
			}
			e.mu.Unlock()
			signal(p.acked)
		case syncproto.Resync:
			e.mu.Lock()
			p.resyncReq = true
			e.mu.Unlock()
			p.wakeUp()
		case syncproto.Differ:
			e.differ(p, m)
		}
	}
}

// streamTo sends a bulk, then queued changes; a queue overflow or a resync
// request sends a new bulk on the same connection.
func (e *Engine) streamTo(ctx context.Context, fc *frameConn, p *peer) error {
	var seq uint64
	var spare []session.Change
	hb := time.NewTicker(e.cfg.Heartbeat)
	defer hb.Stop()
	bulk := true
	var buf []byte
	for {
		if bulk {
			if err := e.sendBulk(fc, p, &seq); err != nil {
				return err
			}
			bulk = false
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-hb.C:
			e.mu.Lock()
			due := e.entropyDueLocked(p, e.now()) // also under load
			idle := len(p.queue) == 0 && len(p.xq) == 0 && !p.overflow && !p.resyncReq && !due
			e.mu.Unlock()
			if idle {
				if err := fc.write(syncproto.AppendHeartbeat(buf[:0], syncproto.Heartbeat{Seq: seq}), e.cfg.IOTimeout); err != nil {
					return err
				}
				continue
			}
		case <-p.wake:
			if !e.gather(ctx, p) {
				return ctx.Err()
			}
		}
		e.mu.Lock()
		q := coalesce(p.queue)
		p.queue = spare[:0]
		xq := p.xq
		p.xq = nil
		over, req := p.overflow, p.resyncReq
		if over || req {
			p.resyncs++
			e.st.resyncs++
		} else {
			p.inHand = len(q)
		}
		ae := e.takeEntropyLocked(p, over || req)
		oldest := p.takeOldestLocked()
		e.mu.Unlock()
		if over || req {
			reason := "queue-overflow"
			if req {
				reason = "requested"
			}
			e.obs.Resync(reason)
			e.log.Warn("session pickup: resyncing subordinate", "peer", p.addr, "reason", reason)
			spare, bulk = q, true
			continue
		}
		var err error
		p.sending = oldest
		buf, err = sessionKind.send(e, fc, p, q, &seq, buf)
		p.sending = 0
		e.mu.Lock()
		p.inHand = 0
		e.mu.Unlock()
		if err != nil {
			return err
		}
		// After the sessions of the same wake-up: masters first.
		if buf, err = expectKind.send(e, fc, p, xq, &seq, buf); err != nil {
			return err
		}
		if err := e.sendEntropy(fc, p, ae, &seq); err != nil {
			return err
		}
		spare = q
	}
}

// syncedLocked yields the sessions a bulk carries: the synced ones.
func (e *Engine) syncedLocked(yield func(session.Change) bool) {
	for k, m := range e.tab.all() {
		if m.synced && !yield(session.Change{Op: session.Upsert, Session: e.tab.session(k, &m)}) {
			return
		}
	}
}

func (e *Engine) sendBatch(fc *frameConn, p *peer, msg []byte, seq uint64, n int) error {
	now := e.now()
	e.mu.Lock()
	p.sentSeq = seq
	p.sentAt[seq%uint64(len(p.sentAt))] = struct {
		seq uint64
		at  time.Time
	}{seq, now}
	e.mu.Unlock()
	if err := fc.write(msg, e.cfg.IOTimeout); err != nil {
		return err
	}
	e.obs.SessionsSent(n)
	return nil
}

// sendBulk snapshots the synced sessions (encoded under the lock, about 30
// bytes each, so the snapshot costs little memory and no long lock) and
// sends them framed by BulkStart and BulkEnd. Changes made after the
// snapshot queue up behind it.
func (e *Engine) sendBulk(fc *frameConn, p *peer, seq *uint64) error {
	start := e.now()
	e.mu.Lock()
	chunks, n := sessionKind.bulkLocked(p, e.syncedLocked, e.bulkRankLocked())
	xchunks, _ := expectKind.bulkLocked(p, e.sentExpectsLocked, nil)
	chunks = append(chunks, xchunks...) // after every session: masters first
	p.active, p.overflow, p.resyncReq = true, false, false
	p.bulks++
	gen := p.bulks
	e.mu.Unlock()

	if err := fc.write(syncproto.AppendBulkStart(nil, syncproto.BulkStart{Gen: gen, Count: uint64(n)}), e.cfg.IOTimeout); err != nil {
		return err
	}
	for i, c := range chunks {
		*seq++
		if err := syncproto.SetBatchSeq(c, *seq); err != nil {
			return err
		}
		if err := e.sendBatch(fc, p, c, *seq, 0); err != nil {
			return err
		}
		chunks[i] = nil // let the sent part go
	}
	if err := fc.write(syncproto.AppendBulkEnd(nil, syncproto.BulkEnd{Gen: gen, Count: uint64(n)}), e.cfg.IOTimeout); err != nil {
		return err
	}
	d := e.now().Sub(start)
	e.mu.Lock()
	p.lastBulk = d
	e.mu.Unlock()
	e.obs.SessionsSent(n)
	e.log.Info("session pickup: bulk sent", "peer", p.addr, "sessions", n, "duration", d)
	return nil
}
