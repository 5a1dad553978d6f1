package sessions

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The sync listener faces whoever can reach the sync links. Before a
// connection has authenticated it costs a goroutine and a few KiB, so
// strangers are refused at accept (not a configured peer address), and the
// connections still in their handshake are capped, per source and in
// total, and given HandshakeTimeout to finish.
const (
	// handshakesPerSource: a primary has one connection per subordinate;
	// a few more cover a redial while the last attempt times out.
	handshakesPerSource = 4
	// maxHandshakes caps them in total: beyond it, a flood from several
	// peer addresses is refused too.
	maxHandshakes = 16
)

// listen opens a sync listener on addr, bound to device when one is
// named, unless the configuration replaces the listener (tests).
func (e *Engine) listen(addr, device string) (net.Listener, error) {
	if e.cfg.Listen != nil {
		return e.cfg.Listen(addr)
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		if device == "" {
			return nil
		}
		var err error
		if cerr := rc.Control(func(fd uintptr) { err = unix.BindToDevice(int(fd), device) }); cerr != nil {
			return cerr
		}
		if err != nil {
			return fmt.Errorf("bind to device %s: %w", device, err)
		}
		return nil
	}}
	return lc.Listen(context.Background(), "tcp", addr)
}

// addrSet returns addrs as a set of unmapped addresses without zone, as
// connections' remote addresses are compared (nil when addrs is empty).
func addrSet(addrs []netip.Addr) map[netip.Addr]bool {
	if len(addrs) == 0 {
		return nil
	}
	m := make(map[netip.Addr]bool, len(addrs))
	for _, a := range addrs {
		m[a.Unmap().WithZone("")] = true
	}
	return m
}

// remoteAddr returns c's remote address, unmapped and without zone.
func remoteAddr(c net.Conn) netip.Addr {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap().WithZone("")
	}
	return netip.Addr{}
}

// handshakes counts the inbound connections that have not finished their
// handshake, per source address and in total. Safe for concurrent use.
type handshakes struct {
	mu       sync.Mutex
	total    int
	bySource map[netip.Addr]int
	loggedAt time.Time // a refusal was last logged (once a minute)
}

// begin takes a handshake slot for src, or reports that none is free.
func (h *handshakes) begin(src netip.Addr) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.total >= maxHandshakes || h.bySource[src] >= handshakesPerSource {
		return false
	}
	if h.bySource == nil {
		h.bySource = map[netip.Addr]int{}
	}
	h.total++
	h.bySource[src]++
	return true
}

// end gives back src's slot.
func (h *handshakes) end(src netip.Addr) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.total--
	if h.bySource[src]--; h.bySource[src] <= 0 {
		delete(h.bySource, src)
	}
}

// logDue reports whether a refusal may be logged now: at most once a
// minute, so that a flood does not flood the log as well.
func (h *handshakes) logDue(now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if now.Sub(h.loggedAt) < time.Minute {
		return false
	}
	h.loggedAt = now
	return true
}

// admit decides at accept whether c may start a handshake: it must come
// from a configured peer address and find a free slot. The caller must
// call the returned end once the handshake is over.
func (e *Engine) admit(c net.Conn) (end func(), err error) {
	src := remoteAddr(c)
	if e.peers != nil && !e.peers[src] {
		return nil, fmt.Errorf("%s is not a peer address of the sync links", src)
	}
	if !e.hs.begin(src) {
		return nil, fmt.Errorf("too many connections in their handshake (%d per source, %d in all)", handshakesPerSource, maxHandshakes)
	}
	return sync.OnceFunc(func() { e.hs.end(src) }), nil
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
		handshaken, err := e.admit(c)
		if err != nil {
			c.Close()
			e.count(&e.st.refused)
			e.obs.FrameDropped("refused")
			if e.hs.logDue(time.Now()) {
				e.log.Warn("session pickup: sync connection refused (logged once a minute)", "remote", c.RemoteAddr(), "err", err)
			}
			continue
		}
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			defer handshaken() // if the handshake failed
			err := e.serveInbound(ctx, c, handshaken)
			switch {
			case err == nil || ctx.Err() != nil:
			case errors.Is(err, errHandshake):
				// Not a sync that was lost: said once a minute.
				if e.hs.logDue(time.Now()) {
					e.log.Warn("session pickup: sync connection refused (logged once a minute)", "remote", c.RemoteAddr(), "err", err)
				}
			default:
				e.log.Warn("session pickup: sync connection from primary ended", "remote", c.RemoteAddr(), "err", err)
				e.emit(SyncLost{Peer: c.RemoteAddr().String(), Err: err})
			}
		}()
	}
}
