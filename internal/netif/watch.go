package netif

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// watchRcvBuf asks for a larger receive buffer on the link subscription: a
// burst of link messages (many per change) that overflows it costs a
// re-subscription.
const watchRcvBuf = 1 << 20

// Re-subscription backoff: the first attempt is immediate, then the wait
// doubles from resubscribeMin up to resubscribeMax while attempts fail.
const (
	resubscribeMin = 50 * time.Millisecond
	resubscribeMax = 2 * time.Second
)

// A LinkEvent reports that a watched interface went operationally up or down.
type LinkEvent struct {
	Interface string
	Up        bool
}

// A LinkWatch follows the operational state of a set of interface names. It
// is made by [Handle.Watch] and runs until its context ends. When the kernel
// subscription fails (the kernel dropped link messages that were not read
// fast enough, ENOBUFS, or the socket closed), the watch opens a new one,
// lists the links again and reports every watched name whose state differs
// from what it last reported: no change is lost and none is reported twice.
type LinkWatch struct {
	// Initial is the state of every watched name when the watch started:
	// up (see Watch) or not; a name with no interface yet is down.
	Initial map[string]bool

	events chan LinkEvent
	log    *slog.Logger
	open   func() (*subscription, []*netlink.LinkAttrs, error)
	hooks  watchHooks
	resubs atomic.Uint64

	mu  sync.Mutex
	err error
}

// watchHooks let tests reach into a watch's recovery; the zero value is
// what the daemon runs.
type watchHooks struct {
	// noResubscribe ends the watch when its subscription fails, as
	// before re-subscription existed.
	noResubscribe bool
	// rcvBuf replaces watchRcvBuf when not zero.
	rcvBuf int
	// subscribed is given, for every subscription the watch opens, a
	// function that closes its socket.
	subscribed func(kill func())
	// beforeResubscribe runs before each attempt to re-subscribe.
	beforeResubscribe func()
}

// Events delivers each change of a watched name's state, in order, once per
// change. It is closed when the watch's context ends, and only then.
func (w *LinkWatch) Events() <-chan LinkEvent { return w.events }

// Resubscriptions returns how many times the watch has replaced a failed
// subscription (each one is also logged).
func (w *LinkWatch) Resubscriptions() uint64 { return w.resubs.Load() }

// Err returns nil: Events closes only when the watch's context ends.
//
// Deprecated: a failed subscription no longer ends the watch (see
// Resubscriptions); Err stays for callers written before.
func (w *LinkWatch) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Watch follows the interfaces called names through rtnetlink link events,
// logging re-subscriptions to slog.Default(); see [Handle.WatchLog].
func (h *Handle) Watch(ctx context.Context, names []string) (*LinkWatch, error) {
	return h.WatchLog(ctx, names, nil)
}

// WatchLog follows the interfaces called names through rtnetlink link events.
// An interface is up when the kernel says it is operationally up, or when its
// operational state is unknown (as for some virtual links) but it is
// administratively up with carrier (IFF_UP and IFF_LOWER_UP). An interface
// that does not exist is down; it comes up when it appears, and goes down
// when it is deleted, moved to another namespace or renamed away.
//
// Watch subscribes before it takes the initial snapshot, so no change is
// missed; a change racing with the start (or with a re-subscription) may
// show as a redundant down/up pair, and the last event for a name always
// matches the kernel. A failed subscription is replaced (see [LinkWatch]),
// retried with a backoff of up to 2 s while that fails, and logged to log
// (slog.Default() when nil). The Handle must stay open while the watch runs:
// re-subscriptions use it. The watch's goroutines end when ctx ends.
func (h *Handle) WatchLog(ctx context.Context, names []string, log *slog.Logger) (*LinkWatch, error) {
	return h.watch(ctx, names, log, watchHooks{})
}

func (h *Handle) watch(ctx context.Context, names []string, log *slog.Logger, hooks watchHooks) (*LinkWatch, error) {
	if log == nil {
		log = slog.Default()
	}
	w := &LinkWatch{events: make(chan LinkEvent), log: log, hooks: hooks}
	w.open = func() (*subscription, []*netlink.LinkAttrs, error) { return h.openWatch(hooks) }
	sub, links, err := w.open()
	if err != nil {
		return nil, err
	}
	t := newLinkTracker(names)
	t.reconcile(links) // the starting point, not changes
	w.Initial = t.snapshot()
	go w.run(ctx, sub, t)
	return w, nil
}

// subscription is one rtnetlink link-event subscription.
type subscription struct {
	updates <-chan netlink.LinkUpdate // closed when the subscription fails or ends
	// end ends the subscription and returns once its goroutine is gone.
	end func()
	// cause tells why updates closed.
	cause func() error
}

// openWatch subscribes to link events, then lists the links: in this order
// no change falls between the two.
func (h *Handle) openWatch(hooks watchHooks) (*subscription, []*netlink.LinkAttrs, error) {
	updates := make(chan netlink.LinkUpdate)
	stop := make(chan struct{})
	var (
		errMu   sync.Mutex
		lastErr error
	)
	rcvBuf := watchRcvBuf
	if hooks.rcvBuf != 0 {
		rcvBuf = hooks.rcvBuf
	}
	var ns *netns.NsHandle // nil: the process's own, entered without setns
	if !h.home {
		ns = &h.ns
	}
	err := netlink.LinkSubscribeWithOptions(updates, stop, netlink.LinkSubscribeOptions{
		Namespace: ns,
		ErrorCallback: func(err error) {
			errMu.Lock()
			lastErr = err
			errMu.Unlock()
		},
		ReceiveBufferSize: rcvBuf,
	})
	if err != nil {
		close(stop)
		return nil, nil, fmt.Errorf("subscribe to link events: %w", err)
	}
	// From here the subscription's goroutine runs: it ends once stop is
	// closed (which closes the socket) and everything it sends is read.
	kill := sync.OnceFunc(func() { close(stop) })
	sub := &subscription{
		updates: updates,
		end: func() {
			kill()
			for range updates {
			}
		},
		cause: func() error {
			errMu.Lock()
			defer errMu.Unlock()
			if lastErr == nil {
				return errors.New("subscription closed")
			}
			return lastErr
		},
	}
	links, err := h.linkList()
	if err != nil {
		go sub.end()
		return nil, nil, fmt.Errorf("list links: %w", err)
	}
	attrs := make([]*netlink.LinkAttrs, len(links))
	for i, l := range links {
		attrs[i] = l.Attrs()
	}
	if hooks.subscribed != nil {
		hooks.subscribed(kill)
	}
	return sub, attrs, nil
}

// run turns link updates into events until ctx ends, replacing the
// subscription when it fails. It ends the subscription before closing
// Events, so that nothing of the watch outlives Events.
func (w *LinkWatch) run(ctx context.Context, sub *subscription, t *linkTracker) {
	defer close(w.events)
	defer func() {
		if sub != nil {
			sub.end()
		}
	}()
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
		case u, ok := <-sub.updates:
			if ok {
				queue = append(queue, t.apply(linkMsgOf(u))...)
				continue
			}
			cause := sub.cause()
			sub.end()
			sub = nil
			if w.hooks.noResubscribe {
				w.lost(ctx, queue, cause)
				return
			}
			var missed []LinkEvent
			if sub, missed = w.resubscribe(ctx, t, cause); sub == nil {
				return // ctx ended
			}
			queue = append(queue, missed...)
		}
	}
}

// resubscribe replaces a failed subscription, retrying with a bounded
// backoff until it succeeds or ctx ends (then it returns nil). It returns
// the new subscription and the changes the failed one missed.
func (w *LinkWatch) resubscribe(ctx context.Context, t *linkTracker, cause error) (*subscription, []LinkEvent) {
	w.log.Warn("link watch: subscription failed, re-subscribing", "err", cause)
	delay := resubscribeMin
	for attempt := 1; ; attempt++ {
		if w.hooks.beforeResubscribe != nil {
			w.hooks.beforeResubscribe()
		}
		sub, links, err := w.open()
		if err == nil {
			missed := t.reconcile(links)
			w.resubs.Add(1)
			w.log.Info("link watch: re-subscribed", "attempts", attempt, "missed_changes", len(missed))
			return sub, missed
		}
		w.log.Warn("link watch: re-subscribe failed", "attempt", attempt, "err", err, "retry_in", delay)
		select {
		case <-ctx.Done():
			return nil, nil
		case <-time.After(delay):
		}
		delay = min(2*delay, resubscribeMax)
	}
}

// lost delivers what was already learnt, then records why the watch ended
// (only with re-subscription off).
func (w *LinkWatch) lost(ctx context.Context, queue []LinkEvent, cause error) {
	for _, ev := range queue {
		select {
		case <-ctx.Done():
			return
		case w.events <- ev:
		}
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

// reconcile takes the full list of links and returns the changes from the
// states last reported: at the start, the initial states; after a failed
// subscription, what it missed.
func (t *linkTracker) reconcile(links []*netlink.LinkAttrs) []LinkEvent {
	var ev []LinkEvent
	present := make(map[string]bool, len(t.up))
	for _, a := range links {
		if _, watched := t.up[a.Name]; watched {
			present[a.Name] = true
			t.index[a.Name] = a.Index
			ev = t.set(a.Name, operUp(a), ev)
		}
	}
	gone := make([]string, 0, len(t.up))
	for name := range t.up {
		if !present[name] {
			gone = append(gone, name)
		}
	}
	slices.Sort(gone) // events in a stable order
	for _, name := range gone {
		delete(t.index, name)
		ev = t.set(name, false, ev)
	}
	return ev
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
