package sessions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hagate/hagate/internal/seal"
	"github.com/hagate/hagate/internal/sessions/session"
)

// DefaultPort is the session-sync TCP port.
const DefaultPort = 703

// Observer receives the engine's measurements (metrics). Methods must not
// block. NopObserver ignores everything.
type Observer interface {
	SessionsSent(n int)                     // changes sent to one subordinate
	SessionsApplied(n int)                  // changes installed from the primary
	ApplyErrors(n int)                      // changes the backend refused
	Resync(reason string)                   // a bulk sync was started again
	FrameDropped(reason string)             // a sync frame was refused
	BulkDone(sessions int, d time.Duration) // a bulk sync completed
	SyncLag(d time.Duration)                // send-to-apply delay of a batch
	TableFull()                             // max_sessions refused a session
	// Anti-entropy and lag per change (antientropy.go, lag.go).
	DivergentRanges(n int)     // primary: ranges of a subordinate's table found different
	SessionsRepaired(n int)    // subordinate: sessions a repair added or removed
	ChangeLag(d time.Duration) // subordinate: from the primary seeing a change to its install
}

// NopObserver is an Observer that does nothing.
type NopObserver struct{}

func (NopObserver) SessionsSent(int)            {}
func (NopObserver) SessionsApplied(int)         {}
func (NopObserver) ApplyErrors(int)             {}
func (NopObserver) Resync(string)               {}
func (NopObserver) FrameDropped(string)         {}
func (NopObserver) BulkDone(int, time.Duration) {}
func (NopObserver) SyncLag(time.Duration)       {}
func (NopObserver) TableFull()                  {}
func (NopObserver) DivergentRanges(int)         {}
func (NopObserver) SessionsRepaired(int)        {}
func (NopObserver) ChangeLag(time.Duration)     {}

// EngineConfig configures an Engine. Zero values take the defaults noted.
type EngineConfig struct {
	NodeID  string
	Group   uint16
	Keyring *seal.Keyring
	Mode    seal.Mode
	// Epoch identifies this boot in sealed frames (default: start time in
	// unix nanoseconds).
	Epoch uint64
	// ListenAddrs are the sync-link addresses to listen on (default: all
	// addresses, port 703).
	ListenAddrs []netip.AddrPort
	// Devices names the sync link each listen address is on: its listener
	// is bound to that interface (SO_BINDTODEVICE), so that the port is
	// not reachable through the data interfaces, whatever the firewall.
	Devices map[netip.Addr]string
	// Peers are the addresses the other members may connect from (every
	// peer address of the sync links): a connection from any other address
	// is closed at accept, before any cryptography. Empty: any address.
	Peers []netip.Addr
	// Virtual are the virtual addresses, which the node's own addresses
	// (SetLocalAddrs) include but synced sessions may use (a NAT to or
	// from a virtual IP): a synced session that uses any other of the
	// node's own addresses is refused.
	Virtual []netip.Addr
	// Listen and Dial replace the listener (bound to Devices) and
	// net.Dialer (tests use them to work inside network namespaces).
	Listen func(addr string) (net.Listener, error)
	Dial   func(ctx context.Context, addr string) (net.Conn, error)

	Filter      Filter
	MaxSessions int           // 0: unbounded
	Delay       time.Duration // sync a session once it is this old
	// InstallDelay holds a new session received as subordinate out of
	// the kernel for this long (heldback.go); 0 installs at once.
	InstallDelay time.Duration
	// MaxHeldBack bounds the sessions held back (0: no bound): beyond it
	// the oldest are installed at once.
	MaxHeldBack int
	// Refresh is how often the primary re-sends the sessions whose copies
	// near expiry (traffic refreshes a kernel timeout without an event):
	// it looks them up by key when the backend can (Looker), else dumps
	// the table (default 10 s).
	Refresh time.Duration
	// FullRefresh is how often the primary dumps its whole table all the
	// same, to repair what events missed without saying so (default 2
	// min). A dump of a million entries costs seconds of CPU.
	FullRefresh time.Duration
	// LookupMin is the table size from which the refresh looks sessions up
	// instead of dumping every time (default 100,000: a dump of fewer costs
	// a fraction of a second, and it also repairs what events missed).
	LookupMin int
	// DumpInterval, when positive, replaces the two above: a whole-table
	// dump every DumpInterval whatever the table's size, near-expiry
	// lookups every Refresh in between. Negative: no periodic dump at all
	// (an event loss the kernel reports is still answered by one, and
	// anti-entropy repairs the subordinates). 0: the default, by size.
	// A backend that cannot look up (no Looker) dumps every Refresh all
	// the same: it has no other way to re-send near-expiry sessions.
	DumpInterval time.Duration
	// AntiEntropy is how often the primary compares its table's digest
	// with each subordinate's and resends the ranges that differ
	// (antientropy.go; default 5 s, negative: never).
	AntiEntropy time.Duration
	// QueueLen bounds the changes queued for one subordinate; beyond it the
	// queue is dropped and the subordinate resynced (default 65536).
	QueueLen int
	// Expectation syncs conntrack expectations (the related connections
	// of helpers such as FTP) and the helpers of their masters, when the
	// backend holds them (ExpectBackend).
	Expectation bool
	// TCPWindowTracking keeps the kernel's TCP window checks on the
	// sessions a subordinate installs. Off (the default), they are
	// installed liberal (IP_CT_TCP_FLAG_BE_LIBERAL, as conntrackd does
	// by default): the window the kernel tracks is not synced, so a
	// subordinate that forwards a stray packet of a session (a client
	// with a stale ARP entry) records a window that is stale by the time
	// it takes over, and its strict checks would then drop the session.
	TCPWindowTracking bool
	// MinVersion refuses connections below this protocol version (0: any
	// this build speaks). Version 3 is the first whose subordinate
	// challenges the primary (release 0.1.0's): below it a recorded
	// connection can be replayed.
	MinVersion uint8
	// BulkOldestFirst sends a bulk's sessions longest idle first, the
	// reverse of the default (order.go): a lab test's proof that the order
	// is what saves a live session from a failover during a bulk.
	BulkOldestFirst bool
	// maxVersion, in tests, makes the engine speak as an older build.
	maxVersion uint8
	// lose, in tests, drops a change a subordinate receives outside a
	// repair, as a lost event or batch would (antientropy.go).
	lose func(c *session.Change) bool
	// Heartbeat is the idle keepalive interval (default 1 s); a connection
	// silent for IdleTimeout (default 5 s) is dropped.
	Heartbeat   time.Duration
	IdleTimeout time.Duration
	// IOTimeout bounds one frame write (default 10 s).
	IOTimeout time.Duration
	// HandshakeTimeout bounds an inbound connection's handshake, from
	// accept until the primary has answered the challenge (default 3 s: a
	// primary sends its hello at once, and strangers must not hold a
	// handshake slot long).
	HandshakeTimeout time.Duration
	// MaxClockSkew refuses frames stamped further than this from now (0:
	// no check).
	MaxClockSkew time.Duration

	Logger   *slog.Logger
	Observer Observer
	Now      func() time.Time
}

type role uint8

const (
	roleNone role = iota
	roleSubordinate
	rolePrimary
)

func (r role) String() string {
	switch r {
	case roleSubordinate:
		return "subordinate"
	case rolePrimary:
		return "primary"
	}
	return "none"
}

// Engine runs session pickup for one node. Create it with NewEngine, Start
// it, then drive its role with BecomePrimary and BecomeSubordinate. Safe for
// concurrent use.
//
// Its state is grouped by what guards it: what is set once by NewEngine and
// Start and only read after, what one goroutine owns, and what mu guards,
// itself grouped by role (pri, sub), with the counters (st) and the
// expectations (xp) apart.
type Engine struct {
	// Set by NewEngine (and Start, for listeners and runCtx), read-only
	// after.
	cfg       EngineConfig
	be        Backend
	log       *slog.Logger
	obs       Observer
	sel       *selector           // guards itself
	peers     map[netip.Addr]bool // cfg.Peers, unmapped and without zone (nil: any)
	hs        handshakes          // guards itself
	sealer    *seal.Sealer
	opener    *seal.Opener
	now       func() time.Time // the engine's one clock: cfg.Now
	start     time.Time        // now() at NewEngine, the origin of secs
	listeners []net.Listener
	runCtx    context.Context

	streams atomic.Uint32  // seal streams, one per connection
	wg      sync.WaitGroup // every goroutine the engine starts

	bucketsWarned bool // checkBuckets: said once (owned by the receiving goroutine)

	// The face to the daemon (drive.go): the commands queue guards
	// itself, events is a channel.
	cmds     commands
	events   chan Event
	listened atomic.Bool // Events was called: emit waits for the reader

	// mu guards everything below, and the fields of every peer but its
	// address, cancel and wake.
	mu   sync.Mutex
	role role
	// roleSet is closed while role is not roleNone (setRoleLocked): a
	// connection that authenticates between two roles waits on it to be
	// judged (awaitRole).
	roleSet   chan struct{}
	tab       *table
	primaryID string // the primary a subordinate accepts ("": any member)
	// gen numbers dump rounds (primary) and bulks (subordinate) in one
	// sequence, so a new round never matches an entry's older mark.
	gen uint32
	pri primaryState
	sub subordinateState
	st  counters
	xp  expects // expectations (expect.go)
}

// primaryState is what the engine needs as primary: the subordinates it
// serves and the goroutines of the role. Guarded by Engine.mu.
type primaryState struct {
	peers map[netip.AddrPort]*peer // kept across roles; served while primary
	// ctx, cancel and wg run the role's goroutines (nil wg: none running).
	ctx      context.Context
	cancel   context.CancelFunc
	wg       *sync.WaitGroup
	mirrored chan struct{} // closed once a new primary's table is dumped
	serving  bool          // the table is mirrored, peers are served
	pending  []pendingKey  // sessions younger than Delay, oldest first
	lastDump time.Time     // when the last whole-table dump began
}

// subordinateState is what the engine holds as subordinate: the
// connection from the primary and what it has received. Guarded by
// Engine.mu.
type subordinateState struct {
	inbound  *inbound
	lastSeq  uint64    // of the last batch received on inbound
	lastBulk BulkStats // the last bulk received
	lag      lagHistogram
	// reserved counts the new sessions admitted to the batch being
	// installed, not yet recorded in the table (max_sessions).
	reserved int
	// held: new sessions not yet in the kernel (heldback.go); bulk and
	// repair say the batches being received are not the stream of
	// changes, whose new sessions alone are held back.
	held         heldBack
	bulk, repair bool
	// repairRefused counts the sessions a repair brought that the kernel
	// refused: they are not counted as repaired.
	repairRefused int
	// purge: this node stepped down from primary; the sessions it
	// forwarded are removed when the new primary's first bulk begins
	// (see BecomeSubordinate).
	purge bool
}

type pendingKey struct {
	k     session.Key
	first uint32
}

// NewEngine checks cfg and prepares an engine over backend.
func NewEngine(cfg EngineConfig, backend Backend) (*Engine, error) {
	if cfg.NodeID == "" {
		return nil, errors.New("sessions: node id missing")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Epoch == 0 {
		cfg.Epoch = uint64(cfg.Now().UnixNano())
	}
	if len(cfg.ListenAddrs) == 0 {
		cfg.ListenAddrs = []netip.AddrPort{netip.AddrPortFrom(netip.IPv6Unspecified(), DefaultPort)}
	}
	if cfg.Dial == nil {
		cfg.Dial = func(ctx context.Context, addr string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.Refresh, 10*time.Second)
	def(&cfg.FullRefresh, 2*time.Minute)
	if cfg.AntiEntropy == 0 {
		cfg.AntiEntropy = 5 * time.Second
	}
	if cfg.LookupMin == 0 {
		cfg.LookupMin = 100_000
	}
	def(&cfg.Heartbeat, time.Second)
	def(&cfg.IdleTimeout, 5*time.Second)
	def(&cfg.IOTimeout, 10*time.Second)
	def(&cfg.HandshakeTimeout, 3*time.Second)
	if cfg.QueueLen <= 0 {
		cfg.QueueLen = 65536
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Observer == nil {
		cfg.Observer = NopObserver{}
	}
	sealer, err := seal.NewSealer(cfg.Keyring, cfg.Mode, seal.Sync, cfg.Group, cfg.NodeID, cfg.Epoch)
	if err != nil {
		return nil, fmt.Errorf("sessions: %w", err)
	}
	return &Engine{
		cfg: cfg, be: backend, log: cfg.Logger.With("component", "sessions"), obs: cfg.Observer,
		sel: newSelector(cfg.Filter, cfg.Virtual...), sealer: sealer, peers: addrSet(cfg.Peers),
		opener: seal.NewOpener(cfg.Keyring, cfg.Mode, seal.Sync, cfg.Group, cfg.NodeID, cfg.MaxClockSkew),
		now:    cfg.Now, start: cfg.Now(), tab: newTable(cfg.MaxSessions), pri: primaryState{peers: map[netip.AddrPort]*peer{}},
		cmds: commands{wake: make(chan struct{}, 1)}, events: make(chan Event, 64), roleSet: make(chan struct{}),
	}, nil
}

// Start binds the sync listeners and serves until ctx ends; Wait then
// returns once every goroutine has stopped.
func (e *Engine) Start(ctx context.Context) error {
	for _, a := range e.cfg.ListenAddrs {
		addr := net.JoinHostPort(a.Addr().String(), strconv.Itoa(int(a.Port())))
		if a.Addr().IsUnspecified() {
			addr = ":" + strconv.Itoa(int(a.Port()))
		}
		l, err := e.listen(addr, e.cfg.Devices[a.Addr()])
		if err != nil {
			for _, l := range e.listeners {
				l.Close()
			}
			return fmt.Errorf("sessions: listen %s: %w", addr, err)
		}
		e.listeners = append(e.listeners, l)
	}
	e.runCtx = ctx
	for _, l := range e.listeners {
		e.wg.Add(1)
		go e.acceptLoop(ctx, l)
	}
	e.wg.Add(2)
	go func() {
		defer e.wg.Done()
		e.runCommands(ctx)
	}()
	go func() {
		defer e.wg.Done()
		<-ctx.Done()
		for _, l := range e.listeners {
			l.Close()
		}
		e.stopRole()
	}()
	return nil
}

// Wait blocks until the engine has stopped after its context ended.
func (e *Engine) Wait() { e.wg.Wait() }

// Addrs returns the addresses the engine listens on.
func (e *Engine) Addrs() []net.Addr {
	var out []net.Addr
	for _, l := range e.listeners {
		out = append(out, l.Addr())
	}
	return out
}

// SetLocalAddrs tells the engine the node's own addresses: sessions the
// gateway terminates itself are never synced. Call it when they change.
func (e *Engine) SetLocalAddrs(addrs []netip.Addr) { e.sel.setLocal(addrs) }

// SetPeers sets the subordinates' sync addresses, which a primary dials.
func (e *Engine) SetPeers(addrs []netip.AddrPort) { e.setPeers(addrs, nil) }

// setPeers sets the subordinates' sync addresses and which of them are
// absent (their member not heard): an absent member is not dialled, and a
// member that stops being absent is dialled at once, whatever its backoff.
func (e *Engine) setPeers(addrs, absent []netip.AddrPort) {
	e.mu.Lock()
	defer e.mu.Unlock()
	want := map[netip.AddrPort]bool{}
	for _, a := range addrs {
		want[a] = true
	}
	gone := map[netip.AddrPort]bool{}
	for _, a := range absent {
		gone[a] = true
	}
	for a, p := range e.pri.peers {
		if !want[a] {
			p.cancel()
			delete(e.pri.peers, a)
		}
	}
	for a := range want {
		p, known := e.pri.peers[a]
		if !known {
			p = newPeer(a)
			e.pri.peers[a] = p
		}
		p.setAbsentLocked(gone[a])
		if !known && e.role == rolePrimary {
			e.startPeerLocked(p)
		}
	}
}

// SetPrimary names the node a subordinate accepts sessions from.
func (e *Engine) SetPrimary(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.primaryID = id
	if in := e.sub.inbound; in != nil && in.from != id {
		in.conn.Close()
	}
}

// BecomeSubordinate stops serving subordinates and accepts the sessions of
// primaryID ("": of any member until SetPrimary names one). The daemon calls
// it at start, so that a member takes the primary's sessions during its
// hello holddown. The sessions already in the table stay installed; those
// the new primary's first bulk does not carry are removed at its end. A
// node that was primary removes the sessions it forwarded when that first
// bulk begins (see purgeForwarded), not before.
func (e *Engine) BecomeSubordinate(ctx context.Context, primaryID string) error {
	e.mu.Lock()
	wasSubordinate, wasPrimary := e.role == roleSubordinate, e.role == rolePrimary
	e.mu.Unlock()
	if wasSubordinate {
		// Leaving hello, or a new primary: keep the connection of the
		// primary named, if it is the one sending.
		e.SetPrimary(primaryID)
		return nil
	}
	e.stopRole()
	switch {
	case wasPrimary:
		// Kept until the new primary's first bulk begins: should the
		// new primary be gone before (a stale heartbeat made it look
		// alive, it died right after), this node takes the role back
		// with the sessions it was forwarding, current to the moment.
		e.mu.Lock()
		e.sub.purge = true
		e.mu.Unlock()
	default:
		// At start: what a previous run left is stale.
		if err := e.purgeForwarded(ctx); err != nil {
			e.log.Error("session pickup: removing the sessions this node forwarded", "err", err)
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.setRoleLocked(roleSubordinate)
	e.primaryID = primaryID
	e.gen++ // what we hold is older than the next bulk: swept at its end
	e.pri.pending = nil
	e.resetExpectsLocked()
	e.log.Info("session pickup: subordinate", "primary", primaryID, "sessions", e.tab.len())
	return nil
}

// purgeForwarded removes from the kernel table, and from the engine's, every
// session that is not the gateway's own. Entries this node forwarded, as
// primary in this run or before the daemon restarted, hold the TCP sequence
// tracking of the moment it stopped forwarding; an update from the primary
// cannot reset that (ctnetlink carries no window data), so had they stayed,
// the connections' packets would be out of window and dropped as invalid
// when this node next became primary. A subordinate forwards nothing, so
// nothing is lost: the primary's bulk sync installs the sessions afresh, and
// a fresh entry learns the windows from the next packets.
func (e *Engine) purgeForwarded(ctx context.Context) error {
	var changes []session.Change
	var err error
	if !e.backendEmpty(ctx) {
		err = e.be.Dump(ctx, func(x session.Session) error {
			if !e.sel.isLocal(&x) {
				changes = append(changes, session.Change{Op: session.Delete, Session: session.Session{Key: x.Key}})
			}
			return nil
		})
	}
	e.mu.Lock()
	e.tab = newTable(e.cfg.MaxSessions)
	e.mu.Unlock()
	if err != nil {
		return fmt.Errorf("dump: %w", err)
	}
	if len(changes) == 0 {
		return nil
	}
	e.log.Info("session pickup: removed the sessions this node had forwarded", "sessions", len(changes))
	return e.be.Apply(ctx, changes)
}

// backendEmpty reports whether the backend says, without a dump, that it
// holds no entry (Counter); false when it cannot say.
func (e *Engine) backendEmpty(ctx context.Context) bool {
	c, ok := e.be.(Counter)
	if !ok {
		return false
	}
	n, err := c.Count(ctx)
	return err == nil && n == 0
}

// setRoleLocked sets the role and opens or closes roleSet to match.
func (e *Engine) setRoleLocked(r role) {
	e.role = r
	select {
	case <-e.roleSet:
		if r == roleNone {
			e.roleSet = make(chan struct{})
		}
	default:
		if r != roleNone {
			close(e.roleSet)
		}
	}
}

// awaitRole waits, at most HandshakeTimeout, while the engine is between
// roles: becoming subordinate first stops the role it had and, at start,
// purges the table (a dump of the whole kernel table, tens of
// milliseconds), which is when a primary dials a joining member, at its
// first heartbeat.
func (e *Engine) awaitRole(ctx context.Context) {
	e.mu.Lock()
	set := e.roleSet
	e.mu.Unlock()
	t := time.NewTimer(e.cfg.HandshakeTimeout)
	defer t.Stop()
	select {
	case <-set:
	case <-t.C:
	case <-ctx.Done():
	}
}

// stopRole ends the goroutines of the current role and waits for them.
func (e *Engine) stopRole() {
	e.mu.Lock()
	cancel, wg := e.pri.cancel, e.pri.wg
	e.pri.cancel, e.pri.wg = nil, nil
	e.pri.serving = false
	in := e.sub.inbound
	e.setRoleLocked(roleNone)
	e.mu.Unlock()
	if cancel != nil {
		cancel()
		wg.Wait()
	}
	if in != nil {
		in.conn.Close()
		<-in.done
	}
}
