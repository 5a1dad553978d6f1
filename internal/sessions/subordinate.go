package sessions

import (
	"context"
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

func (e *Engine) acceptLoop(ctx context.Context, l net.Listener) {
	defer e.wg.Done()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			e.log.Warn("session pickup: accept", "err", err)
			t := time.NewTimer(100 * time.Millisecond)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			if err := e.serveInbound(ctx, c); err != nil && ctx.Err() == nil {
				e.log.Warn("session pickup: sync connection from primary ended", "remote", c.RemoteAddr(), "err", err)
			}
		}()
	}
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

// readHello reads a connection's first frame, which must be an
// authenticated hello from the node it names.
func (e *Engine) readHello(fc *frameConn) (syncproto.Hello, error) {
	h, payload, err := fc.read(e.cfg.IOTimeout)
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

// serveInbound authenticates a connection, checks it comes from the primary,
// and applies what it carries until it fails. A newer connection from the
// primary replaces an older one, which finishes applying first.
func (e *Engine) serveInbound(ctx context.Context, c net.Conn) error {
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	fc := &frameConn{c: c, sealer: e.sealer, opener: e.opener, stream: e.streams.Add(1), now: e.cfg.Now}
	hello, err := e.readHello(fc)
	if err != nil {
		return err
	}
	from := hello.NodeID // authenticated: the sender of the sealed frame
	e.mu.Lock()
	// A subordinate that does not know the primary yet (it has just left
	// its hello holddown) accepts any authenticated member: refusing would
	// leave it without the sessions until the primary redials. SetPrimary
	// drops the connection if another member turns out to be primary.
	if e.role != roleSubordinate || (e.primaryID != "" && from != e.primaryID) {
		r, want := e.role, e.primaryID
		e.st.refused++
		e.mu.Unlock()
		e.obs.FrameDropped("not-primary")
		return fmt.Errorf("refused sync from %q: role %s, primary %q", from, r, want)
	}
	in := &inbound{conn: c, from: from, done: make(chan struct{})}
	old := e.inbound
	e.inbound = in
	e.lastSeq = 0
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		if e.inbound == in {
			e.inbound = nil
		}
		e.mu.Unlock()
		close(in.done)
	}()
	if old != nil {
		old.conn.Close()
		<-old.done
	}
	if err := fc.write(syncproto.AppendHello(nil, syncproto.Hello{Version: syncproto.Version, NodeID: e.cfg.NodeID}), e.cfg.IOTimeout); err != nil {
		return err
	}
	e.log.Info("session pickup: primary connected", "node", from, "remote", c.RemoteAddr())
	return e.receive(ctx, fc)
}

// receive applies the primary's messages as they arrive.
func (e *Engine) receive(ctx context.Context, fc *frameConn) error {
	var scratch []session.Change
	var bulkStart time.Time
	var bulkN int
	var ack []byte
	for {
		_, payload, err := fc.read(e.cfg.IdleTimeout)
		if err != nil {
			e.dropped(err)
			return err
		}
		m, err := syncproto.Decode(payload, scratch)
		if err != nil {
			e.count(&e.st.frameErrors)
			e.obs.FrameDropped("decode")
			return err
		}
		switch m := m.(type) {
		case syncproto.BulkStart:
			e.mu.Lock()
			e.gen++
			e.mu.Unlock()
			bulkStart, bulkN = time.Now(), 0
		case syncproto.Batch:
			scratch = m.Changes
			e.mu.Lock()
			gap := m.Seq != e.lastSeq+1
			e.lastSeq = m.Seq
			e.mu.Unlock()
			if gap {
				e.count(&e.st.frameErrors)
				e.obs.FrameDropped("gap")
				return fmt.Errorf("batch %d out of sequence", m.Seq)
			}
			bulkN += len(m.Changes)
			e.applyBatch(ctx, m.Changes)
			ack = syncproto.AppendAck(ack[:0], syncproto.Ack{Seq: m.Seq})
			if err := fc.write(ack, e.cfg.IOTimeout); err != nil {
				return err
			}
		case syncproto.BulkEnd:
			swept := e.sweep(ctx)
			d := time.Since(bulkStart)
			e.mu.Lock()
			e.lastBulk = BulkStats{Sessions: bulkN, Removed: swept, Duration: d, At: e.cfg.Now()}
			e.mu.Unlock()
			e.obs.BulkDone(bulkN, d)
			e.log.Info("session pickup: bulk received", "sessions", bulkN, "stale_removed", swept, "duration", d)
		case syncproto.Heartbeat:
			e.mu.Lock()
			last := e.lastSeq
			e.mu.Unlock()
			ack = syncproto.AppendAck(ack[:0], syncproto.Ack{Seq: last})
			if err := fc.write(ack, e.cfg.IOTimeout); err != nil {
				return err
			}
		default:
			e.count(&e.st.frameErrors)
			e.obs.FrameDropped("unexpected")
			return fmt.Errorf("unexpected %s", m.Type())
		}
	}
}

// applyBatch installs changes into the backend, then records them.
func (e *Engine) applyBatch(ctx context.Context, cs []session.Change) {
	e.mu.Lock()
	keep := cs[:0]
	for _, c := range cs {
		_, ok := e.tab.m[c.Session.Key]
		if c.Op == session.Upsert && !ok && e.tab.max > 0 && e.tab.len() >= e.tab.max {
			e.fullLocked()
			continue
		}
		c.Exists = ok
		keep = append(keep, c)
	}
	e.mu.Unlock()
	if err := e.be.Apply(ctx, keep); err != nil {
		e.count(&e.st.applyErrors)
		e.obs.ApplyErrors(1)
		e.log.Warn("session pickup: install", "err", err)
	}
	e.obs.SessionsApplied(len(keep))
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := range keep {
		c := &keep[i]
		if c.Op == session.Delete {
			e.tab.del(c.Session.Key)
			continue
		}
		e.tab.put(&c.Session, entry{synced: true, mark2: e.gen})
	}
}

// sweep deletes what the subordinate holds from older generations: sessions
// the primary no longer has.
func (e *Engine) sweep(ctx context.Context) int {
	e.mu.Lock()
	var dels []session.Change
	for k, m := range e.tab.m {
		if m.mark2 != e.gen {
			dels = append(dels, session.Change{Op: session.Delete, Session: session.Session{Key: k}})
		}
	}
	e.mu.Unlock()
	for i := 0; i < len(dels); i += 4096 {
		e.applyBatch(ctx, dels[i:min(i+4096, len(dels))])
	}
	return len(dels)
}
