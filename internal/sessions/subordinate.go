package sessions

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/hagate/hagate/internal/seal"
	"github.com/hagate/hagate/internal/sessions/session"
	"github.com/hagate/hagate/internal/sessions/syncproto"
)

// inbound is a subordinate's connection from the primary.
type inbound struct {
	conn net.Conn
	from string
	done chan struct{} // closed when every batch received is applied
}

// dropped counts a refused frame by reason.
func (e *Engine) dropped(err error) {
	var d *seal.DropError
	switch {
	case errors.As(err, &d):
		e.count(&e.st.frameErrors)
		e.obs.FrameDropped(d.Reason)
	case errors.Is(err, errFrameTooBig):
		e.count(&e.st.frameErrors)
		e.obs.FrameDropped("too-big")
	}
}

func (e *Engine) count(c *uint64) {
	e.mu.Lock()
	*c++
	e.mu.Unlock()
}

// checkBuckets warns, once, when the kernel's conntrack hash table has
// fewer buckets than the sessions a bulk brought: the kernel then walks
// long chains for every insert, and a big bulk installs several times
// slower (a million sessions in 262,144 buckets: 4 s of kernel time instead
// of under 2).
func (e *Engine) checkBuckets(sessions int) {
	hb, ok := e.be.(interface{ HashBuckets() (int, error) })
	if !ok || e.bucketsWarned || sessions < 100_000 {
		return
	}
	n, err := hb.HashBuckets()
	if err != nil || sessions <= n {
		return
	}
	e.bucketsWarned = true
	e.log.Warn("session pickup: the conntrack hash table has fewer buckets than synced sessions; installs slow down as it fills: raise nf_conntrack_buckets (hashsize) to at least the number of sessions",
		"buckets", n, "sessions", sessions)
}

// newNonce returns a random, non-zero challenge.
func newNonce() [syncproto.NonceLen]byte {
	var n [syncproto.NonceLen]byte
	for n == ([syncproto.NonceLen]byte{}) {
		rand.Read(n[:]) // never fails (crypto/rand)
	}
	return n
}

// readHello reads a connection's next frame, which must be an
// authenticated hello from the node it names, within timeout.
func (e *Engine) readHello(fc *frameConn, timeout time.Duration) (syncproto.Hello, error) {
	h, payload, err := fc.read(timeout)
	if err != nil {
		e.dropped(err)
		return syncproto.Hello{}, fmt.Errorf("hello: %w", err)
	}
	m, err := syncproto.Decode(payload, nil)
	hello, ok := m.(syncproto.Hello)
	if err != nil || !ok || hello.NodeID != h.Sender {
		e.count(&e.st.frameErrors)
		e.obs.FrameDropped("handshake")
		return syncproto.Hello{}, fmt.Errorf("bad hello: %v", err)
	}
	return hello, nil
}

// errHandshake marks an inbound connection that ended before the primary
// had proven itself: a stranger, a replay, or a member that is not the
// primary. It is no loss of the sync.
var errHandshake = errors.New("handshake")

// serveInbound authenticates a connection, checks it comes from the primary,
// and applies what it carries until it fails. handshaken is called once the
// handshake is over, failed or not. A newer connection from the primary
// replaces an older one, which finishes applying first, but only once it
// has answered the challenge: a replayed hello cannot cut the sync.
func (e *Engine) serveInbound(ctx context.Context, c net.Conn, handshaken func()) error {
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	fc := e.newFrameConn(c)
	defer fc.release()
	from, err := e.handshake(fc)
	handshaken()
	if err != nil {
		return fmt.Errorf("%w: %w", errHandshake, err)
	}
	e.awaitRole(ctx)
	in, err := e.takeInbound(c, from)
	if err != nil {
		return fmt.Errorf("%w: %w", errHandshake, err)
	}
	defer func() {
		e.mu.Lock()
		if e.sub.inbound == in {
			e.sub.inbound = nil
		}
		e.mu.Unlock()
		close(in.done)
	}()
	e.log.Info("session pickup: primary connected", "node", from, "remote", c.RemoteAddr())
	return e.receive(ctx, fc)
}

// handshake reads the primary's hello and, from version 3, challenges it
// with a nonce that only the live sender can echo, all within
// HandshakeTimeout. It returns the authenticated node id.
func (e *Engine) handshake(fc *frameConn) (string, error) {
	deadline := time.Now().Add(e.cfg.HandshakeTimeout)
	hello, err := e.readHello(fc, time.Until(deadline))
	if err != nil {
		return "", err
	}
	from := hello.NodeID // authenticated: the sender of the sealed frame
	if err := e.acceptsFrom(from); err != nil {
		return "", err
	}
	if v := min(e.helloVersion(), hello.Version); v < e.cfg.MinVersion {
		return "", fmt.Errorf("%s offers protocol version %d, below security.min_sync_version %d", from, v, e.cfg.MinVersion)
	}
	// The answer names the version the connection runs at, and from
	// version 3 challenges the primary: a recording of another connection
	// cannot answer with this nonce.
	answer := syncproto.Hello{Version: min(e.helloVersion(), hello.Version), NodeID: e.cfg.NodeID}
	if answer.Version >= 3 {
		answer.Nonce = newNonce()
	}
	if err := fc.write(syncproto.AppendHello(nil, answer), time.Until(deadline)); err != nil {
		return "", err
	}
	if answer.Version >= 3 {
		echo, err := e.readHello(fc, time.Until(deadline))
		if err != nil {
			return "", fmt.Errorf("challenge: %w", err)
		}
		if echo.Nonce != answer.Nonce || echo.NodeID != from {
			e.count(&e.st.frameErrors)
			e.obs.FrameDropped("challenge")
			return "", fmt.Errorf("%q did not answer the challenge: a replayed connection?", from)
		}
	}
	return from, nil
}

// acceptsFrom refuses a member that is not the primary.
//
// A subordinate that does not know the primary yet (it has just left its
// hello holddown) accepts any authenticated member: refusing would leave it
// without the sessions until the primary redials. SetPrimary drops the
// connection if another member turns out to be primary.
//
// An engine between roles (becoming subordinate: at start it purges its
// table first) does not refuse yet: takeInbound judges the member once the
// role is set (awaitRole). Refused, a joining member's primary, which dials
// at its first heartbeat, would redial only after a backoff.
func (e *Engine) acceptsFrom(from string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.role == roleNone {
		return nil
	}
	return e.acceptsFromLocked(from)
}

func (e *Engine) acceptsFromLocked(from string) error {
	if e.role != roleSubordinate || (e.primaryID != "" && from != e.primaryID) {
		e.st.refused++
		e.obs.FrameDropped("not-primary")
		return fmt.Errorf("refused sync from %q: role %s, primary %q", from, e.role, e.primaryID)
	}
	return nil
}

// takeInbound makes c, which has proven to come from the live member
// from, the connection from the primary: the older one is closed and
// finishes applying what it received first, then the sequence starts over.
func (e *Engine) takeInbound(c net.Conn, from string) (*inbound, error) {
	e.mu.Lock()
	// Checked again: the role or the primary may have changed during the
	// handshake.
	if err := e.acceptsFromLocked(from); err != nil {
		e.mu.Unlock()
		return nil, err
	}
	in := &inbound{conn: c, from: from, done: make(chan struct{})}
	old := e.sub.inbound
	e.sub.inbound = in
	e.mu.Unlock()
	if old != nil {
		old.conn.Close()
		<-old.done
	}
	e.mu.Lock()
	e.sub.lastSeq = 0
	e.mu.Unlock()
	return in, nil
}

// receive applies the primary's messages as they arrive, in order; the
// next ones are read and decoded meanwhile (readAhead).
func (e *Engine) receive(ctx context.Context, fc *frameConn) error {
	ra := e.readAhead(fc)
	defer ra.stop()
	var bulkStart time.Time
	var bulkN int
	var ack []byte
	var rep repairing
	var tick <-chan time.Time
	if e.cfg.InstallDelay > 0 {
		t := time.NewTicker(heldBackTick(e.cfg.InstallDelay))
		defer t.Stop()
		tick = t.C
	}
	// Whatever is held back goes to the kernel when the connection ends:
	// before a promotion (BecomePrimary waits for this), or for a new
	// primary's bulk.
	defer e.endStream(ctx)
	acknowledge := func(seq uint64) error {
		ack = syncproto.AppendAck(ack[:0], syncproto.Ack{Seq: seq})
		return fc.write(ack, e.cfg.IOTimeout)
	}
	for {
		var r decoded
		select {
		case r = <-ra.msgs:
		case <-tick:
			e.installHeldBack(ctx, false)
			continue
		}
		if r.err != nil {
			return r.err
		}
		switch m := r.m.(type) {
		case syncproto.BulkStart:
			e.mu.Lock()
			purge := e.sub.purge
			e.sub.purge = false
			e.mu.Unlock()
			if purge {
				if err := e.purgeForwarded(ctx); err != nil {
					e.log.Error("session pickup: removing the sessions this node forwarded", "err", err)
				}
			}
			e.mu.Lock()
			e.gen++
			e.sub.bulk = true
			e.mu.Unlock()
			bulkStart, bulkN = e.now(), 0
		case syncproto.Batch:
			if err := e.inSequence(m.Seq, "batch"); err != nil {
				return err
			}
			m.Changes = e.screen(m.Changes)
			bulkN += len(m.Changes)
			m.Changes = e.loseForTest(&rep, m.Changes)
			e.noteRepair(&rep, m.Changes)
			install(ctx, e, e.sessions(), m.Changes)
			e.changeLag(m.Oldest)
			e.mu.Lock()
			over := e.heldOverLocked()
			e.mu.Unlock()
			if over {
				e.installHeldBack(ctx, false)
			}
			ra.recycle(m.Changes)
			if err := acknowledge(m.Seq); err != nil {
				return err
			}
		case syncproto.BulkEnd:
			swept := sweep(ctx, e, e.sessions())
			sweep(ctx, e, e.expectations())
			d := e.now().Sub(bulkStart)
			e.mu.Lock()
			e.sub.bulk = false
			e.sub.lastBulk = BulkStats{Sessions: bulkN, Removed: swept, Duration: d, At: e.now()}
			e.mu.Unlock()
			e.obs.BulkDone(bulkN, d)
			e.emit(BulkDone{Sessions: bulkN, Took: d})
			e.log.Info("session pickup: bulk received", "sessions", bulkN, "stale_removed", swept, "duration", d)
			e.checkBuckets(bulkN)
		case syncproto.ExpectBatch:
			// Numbered in the sessions' sequence.
			if err := e.inSequence(m.Seq, "expectation batch"); err != nil {
				return err
			}
			install(ctx, e, e.expectations(), m.Changes)
			if err := acknowledge(m.Seq); err != nil {
				return err
			}
		case syncproto.Digest:
			if err := e.compareDigest(fc, m); err != nil {
				return err
			}
		case syncproto.RepairStart:
			e.startRepair(&rep, m)
		case syncproto.RepairEnd:
			e.endRepair(ctx, &rep)
		case syncproto.Heartbeat:
			e.mu.Lock()
			last := e.sub.lastSeq
			e.mu.Unlock()
			if err := acknowledge(last); err != nil {
				return err
			}
		default:
			e.count(&e.st.frameErrors)
			e.obs.FrameDropped("unexpected")
			return fmt.Errorf("unexpected %s", m.Type())
		}
	}
}

// screen drops, in place, the received changes this node refuses
// (selector.refuse) and caps the timeouts of the others (maxTimeout): what
// a key holder can do to a subordinate's table is bounded by what the
// subordinate would have synced itself.
func (e *Engine) screen(cs []session.Change) []session.Change {
	keep := cs[:0]
	var refused int
	var why string
	for i := range cs {
		c := &cs[i]
		if r := e.sel.refuse(c); r != "" {
			refused, why = refused+1, r
			continue
		}
		if c.Op == session.Upsert {
			c.Session.Timeout = min(c.Session.Timeout, maxTimeout(c.Session.Proto, c.Session.TCP.State))
		}
		keep = append(keep, *c)
	}
	if refused == 0 {
		return keep
	}
	now := e.now()
	e.mu.Lock()
	e.st.screened += uint64(refused)
	logIt := now.Sub(e.st.screenedLoggedAt) >= time.Minute
	if logIt {
		e.st.screenedLoggedAt = now
	}
	e.mu.Unlock()
	if logIt {
		e.log.Warn("session pickup: refused synced sessions this node would not sync itself or that use its own addresses (logged once a minute)",
			"refused", refused, "last_reason", why)
	}
	return keep
}

// inSequence checks that a batch (of either kind, one sequence) follows
// the last one received: a gap means frames were lost, and the connection
// is dropped for a resync.
func (e *Engine) inSequence(seq uint64, what string) error {
	e.mu.Lock()
	gap := seq != e.sub.lastSeq+1
	e.sub.lastSeq = seq
	e.mu.Unlock()
	if gap {
		e.count(&e.st.frameErrors)
		e.obs.FrameDropped("gap")
		return fmt.Errorf("%s %d out of sequence", what, seq)
	}
	return nil
}

// readAheadFrames is how many decoded messages may wait for the installer:
// enough to keep the kernel busy while the next batch arrives, few enough
// to bound memory (a batch of 256 KiB decodes to about 1 MiB of changes).
const readAheadFrames = 2

// decoded is a message read ahead, or the error that ended the reading.
type decoded struct {
	m   syncproto.Message
	err error
}

// inboundReader reads, authenticates and decodes a connection's messages in a
// goroutine, ahead of the one applying them: receiving and decoding the next
// batches overlap with the kernel installing this one.
type inboundReader struct {
	msgs chan decoded          // in order; the last one carries the error
	free chan []session.Change // decoded batches given back for reuse
	quit chan struct{}
	done chan struct{}
	conn net.Conn
}

// readAhead starts reading fc. The caller must call stop.
func (e *Engine) readAhead(fc *frameConn) *inboundReader {
	r := &inboundReader{
		msgs: make(chan decoded, readAheadFrames),
		free: make(chan []session.Change, readAheadFrames+2),
		quit: make(chan struct{}),
		done: make(chan struct{}),
		conn: fc.c,
	}
	go func() {
		defer close(r.done)
		for {
			var scratch []session.Change
			select {
			case scratch = <-r.free:
			default:
			}
			var d decoded
			_, payload, err := fc.read(e.cfg.IdleTimeout)
			if err != nil {
				e.dropped(err)
				d.err = err
			} else if d.m, err = syncproto.Decode(payload, scratch); err != nil {
				e.count(&e.st.frameErrors)
				e.obs.FrameDropped("decode")
				d.err = err
			}
			select {
			case r.msgs <- d:
			case <-r.quit:
				return
			}
			if d.err != nil {
				return
			}
		}
	}()
	return r
}

// recycle gives back a decoded batch's changes once they are applied.
func (r *inboundReader) recycle(cs []session.Change) {
	select {
	case r.free <- cs[:0]:
	default:
	}
}

// stop ends the reading (closing the connection, which serveInbound would
// close next anyway) and waits for the goroutine.
func (r *inboundReader) stop() {
	close(r.quit)
	r.conn.Close()
	<-r.done
}

// The sessions a subordinate holds live in the engine's table, marked
// with the bulk that last brought them (entry.mark2).

func (s sessionStore) admitLocked(c *session.Change) bool {
	e := s.e
	ok := e.tab.has(c.Session.Key)
	adds := c.Op == session.Upsert && !ok && e.tab.max > 0
	if adds && e.tab.len()+e.sub.reserved >= e.tab.max {
		e.fullLocked()
		return false
	}
	c.Exists = ok
	if c.Op == session.Upsert && c.Session.Proto == session.ProtoTCP && !e.cfg.TCPWindowTracking {
		c.Session.TCP.FlagsOrig |= session.TCPFlagBeLiberal
		c.Session.TCP.FlagsReply |= session.TCPFlagBeLiberal
	}
	if e.holdBackLocked(c) {
		return false // recorded, not for the kernel yet
	}
	if adds {
		// The batch is recorded after the kernel has it: count the
		// places it takes already, or one batch passes the bound.
		e.sub.reserved++
	}
	return true
}

func (s sessionStore) install(ctx context.Context, cs []session.Change) error {
	return s.e.be.Apply(ctx, cs)
}

func (s sessionStore) recordLocked(cs []session.Change) {
	s.e.sub.reserved = 0 // the places taken are the table's now
	for i := range cs {
		c := &cs[i]
		if c.Op == session.Delete {
			s.e.tab.del(c.Session.Key)
			continue
		}
		s.e.tab.put(&c.Session, entry{synced: true, mark2: s.e.gen})
	}
}

// report counts the outcome of an install and forgets the upserts the
// kernel did not take (recordLocked recorded them while it worked): the
// table then says what the kernel holds, its digest differs from the
// primary's, and anti-entropy resends them. A delete the kernel refused
// is not undone; its entry expires on the subordinate's capped timeout.
func (s sessionStore) report(cs []session.Change, err error) {
	e := s.e
	if err == nil {
		e.obs.SessionsApplied(len(cs))
		return
	}
	var ae *session.ApplyError
	var failed []int
	if errors.As(err, &ae) {
		failed = ae.Failed
	} else {
		failed = make([]int, len(cs)) // another error leaves every change in doubt
		for i := range failed {
			failed[i] = i
		}
	}
	e.mu.Lock()
	for _, i := range failed {
		if cs[i].Op == session.Upsert {
			e.tab.del(cs[i].Session.Key)
			if e.sub.repair && !cs[i].Exists {
				e.sub.repairRefused++ // not repaired after all
			}
		}
	}
	e.st.applyErrors++
	e.st.notInstalled += uint64(len(failed))
	e.mu.Unlock()
	e.obs.ApplyErrors(1)
	e.obs.SessionsApplied(len(cs) - len(failed))
	e.log.Warn("session pickup: install", "changes", len(cs), "not_installed", len(failed), "err", err)
}

func (s sessionStore) staleLocked() []session.Change {
	var dels []session.Change
	for k, m := range s.e.tab.all() {
		if m.mark2 != s.e.gen {
			dels = append(dels, session.Change{Op: session.Delete, Session: session.Session{Key: k}})
		}
	}
	return dels
}
