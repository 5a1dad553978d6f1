package netif

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// watchRcvBuf asks for a larger receive buffer on the link subscription: a
// burst of link messages (many per change) that overflows it kills the watch.
const watchRcvBuf = 1 << 20

// A LinkEvent reports that a watched interface went operationally up or down.
type LinkEvent struct {
	Interface string
	Up        bool
}

// A LinkWatch follows the operational state of a set of interface names. It
// is made by [Handle.Watch] and runs until its context ends or the kernel
// subscription fails.
type LinkWatch struct {
	// Initial is the state of every watched name when the watch started:
	// up (see Watch) or not; a name with no interface yet is down.
	Initial map[string]bool

	events chan LinkEvent

	mu  sync.Mutex
	err error
}

// Events delivers each change of a watched name's state, in order, once per
// change. It is closed when the watch ends; then Err tells why.
func (w *LinkWatch) Events() <-chan LinkEvent { return w.events }

// Err returns nil while the watch runs and after it ended with its context.
// After Events is closed for any other reason it returns why: the rtnetlink
// subscription failed (for instance the kernel dropped messages because they
// were not read fast enough), and the link state is no longer being followed.
func (w *LinkWatch) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Watch follows the interfaces called names through rtnetlink link events.
// An interface is up when the kernel says it is operationally up, or when its
// operational state is unknown (as for some virtual links) but it is
// administratively up with carrier (IFF_UP and IFF_LOWER_UP). An interface
// that does not exist is down; it comes up when it appears, and goes down
// when it is deleted, moved to another namespace or renamed away.
//
// Watch subscribes before it takes the initial snapshot, so no change is
// missed; a change racing with the start may show as a redundant down/up
// pair, and the last event for a name always matches the kernel. The watch's
// goroutines end when ctx ends.
func (h *Handle) Watch(ctx context.Context, names []string) (*LinkWatch, error) {
	updates := make(chan netlink.LinkUpdate)
	stop := make(chan struct{})
	var (
		errMu   sync.Mutex
		lastErr error
	)
	onErr := func(err error) {
		errMu.Lock()
		lastErr = err
		errMu.Unlock()
	}
	var ns *netns.NsHandle // nil: the process's own, entered without setns
	if !h.home {
		ns = &h.ns
	}
	err := netlink.LinkSubscribeWithOptions(updates, stop, netlink.LinkSubscribeOptions{
		Namespace:         ns,
		ErrorCallback:     onErr,
		ReceiveBufferSize: watchRcvBuf,
	})
	if err != nil {
		close(stop)
		return nil, fmt.Errorf("subscribe to link events: %w", err)
	}
	// From here the subscription's goroutine runs: it ends once stop is
	// closed and everything it sends has been read.
	end := func() {
		close(stop)
		for range updates {
		}
	}

	links, err := h.linkList()
	if err != nil {
		go end()
		return nil, fmt.Errorf("list links: %w", err)
	}
	t := newLinkTracker(names)
	for _, l := range links {
		t.seed(l.Attrs())
	}
	w := &LinkWatch{Initial: t.snapshot(), events: make(chan LinkEvent)}
	go w.run(ctx, updates, end, t, func() error {
		errMu.Lock()
		defer errMu.Unlock()
		return lastErr
	})
	return w, nil
}

// run turns link updates into events until ctx ends or updates is closed by
// a failed subscription. It always calls end before closing Events, so that
// nothing of the watch outlives Events.
func (w *LinkWatch) run(ctx context.Context, updates <-chan netlink.LinkUpdate, end func(), t *linkTracker, lastErr func() error) {
	defer close(w.events)
	defer end()
	// Updates are always read at once, so the kernel's socket buffer never
	// fills because of a slow reader; changes wait here instead. Only real
	// state changes queue, so this stays small.
	var queue []LinkEvent
	for {
		var out chan<- LinkEvent
		var head LinkEvent
		if len(queue) > 0 {
			out, head = w.events, queue[0]
		}
		select {
		case <-ctx.Done():
			return
		case out <- head:
			queue = queue[1:]
		case u, ok := <-updates:
			if !ok {
				w.lost(ctx, queue, lastErr())
				return
			}
			queue = append(queue, t.apply(linkMsgOf(u))...)
		}
	}
}

// lost delivers what was already learnt, then records why the watch ended.
func (w *LinkWatch) lost(ctx context.Context, queue []LinkEvent, cause error) {
	for _, ev := range queue {
		select {
		case <-ctx.Done():
			return
		case w.events <- ev:
		}
	}
	if cause == nil {
		cause = errors.New("subscription closed")
	}
	w.mu.Lock()
	w.err = fmt.Errorf("link watch lost: %w", cause)
	w.mu.Unlock()
}

func (h *Handle) linkList() ([]netlink.Link, error) {
	var err error
	for range dumpAttempts {
		var links []netlink.Link
		links, err = h.nl.LinkList()
		if err == nil {
			return links, nil
		}
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return nil, err
		}
	}
	return nil, err
}

// operUp is the package's definition of an interface being up.
func operUp(a *netlink.LinkAttrs) bool {
	switch a.OperState {
	case netlink.OperUp:
		return true
	case netlink.OperUnknown:
		const want = unix.IFF_UP | unix.IFF_LOWER_UP
		return a.RawFlags&want == want
	default:
		return false
	}
}

// linkMsg is what the tracker needs from one rtnetlink link message.
type linkMsg struct {
	index   int
	name    string
	up      bool
	deleted bool
}

func linkMsgOf(u netlink.LinkUpdate) linkMsg {
	m := linkMsg{index: int(u.Index), deleted: u.Header.Type == unix.RTM_DELLINK}
	if u.Link != nil {
		a := u.Link.Attrs()
		m.name, m.up = a.Name, operUp(a)
	}
	return m
}

// linkTracker holds the state of the watched names and reports changes. It is
// pure: no I/O, not safe for concurrent use.
type linkTracker struct {
	up    map[string]bool // watched name -> up
	index map[string]int  // watched name -> index of the link that has it
}

func newLinkTracker(names []string) *linkTracker {
	t := &linkTracker{up: make(map[string]bool, len(names)), index: make(map[string]int)}
	for _, n := range names {
		t.up[n] = false
	}
	return t
}

// seed records a link from the initial snapshot without reporting it.
func (t *linkTracker) seed(a *netlink.LinkAttrs) {
	if _, watched := t.up[a.Name]; watched {
		t.index[a.Name] = a.Index
		t.up[a.Name] = operUp(a)
	}
}

func (t *linkTracker) snapshot() map[string]bool {
	m := make(map[string]bool, len(t.up))
	for n, up := range t.up {
		m[n] = up
	}
	return m
}

// apply takes one link message and returns the resulting state changes.
func (t *linkTracker) apply(m linkMsg) []LinkEvent {
	var ev []LinkEvent
	// The link may have carried a watched name: gone or renamed away.
	for name, idx := range t.index {
		if idx == m.index && (m.deleted || name != m.name) {
			delete(t.index, name)
			ev = t.set(name, false, ev)
		}
	}
	if _, watched := t.up[m.name]; !watched || m.deleted {
		// A deletion of a watched name on an index not (or no longer)
		// known to carry it is a stale message: a newer link has the name.
		return ev
	}
	t.index[m.name] = m.index
	return t.set(m.name, m.up, ev)
}

func (t *linkTracker) set(name string, up bool, ev []LinkEvent) []LinkEvent {
	if t.up[name] == up {
		return ev
	}
	t.up[name] = up
	return append(ev, LinkEvent{Interface: name, Up: up})
}
