package sessions

import (
	"context"
	"net/netip"
	"sync"
	"time"
)

// The engine's face to the daemon: commands in, events out. The daemon
// turns the cluster state machine's actions into commands (Do) and feeds
// the events back to it, so the order of effects (the sessions usable
// before the addresses come up) is decided in one place, the state
// machine, and carried out here in the order given.

// Command is an instruction to the engine, carried out in order.
type Command interface{ isCommand() }

// AcceptFrom: be a subordinate and accept the sessions of the member From
// ("": of whichever primary sends until one is named). A node that was
// primary first drops what it forwarded (see BecomeSubordinate).
type AcceptFrom struct{ From string }

// Promote: become primary; Ready with the same Gen follows once the synced
// sessions are usable.
type Promote struct{ Gen uint64 }

// DialPeers: the subordinates' sync addresses, dialled while primary.
// Absent: those of Peers whose member is not heard now; they are not
// dialled until a later DialPeers leaves them out of Absent, and then at
// once.
type DialPeers struct{ Peers, Absent []netip.AddrPort }

// LocalAddrs: the node's own addresses (see SetLocalAddrs).
type LocalAddrs struct{ Addrs []netip.Addr }

// SetFilter: sync only the sessions f selects from now on (a reload). The
// sessions already synced stay until they end.
type SetFilter struct{ Filter Filter }

func (AcceptFrom) isCommand() {}
func (SetFilter) isCommand()  {}
func (Promote) isCommand()    {}
func (DialPeers) isCommand()  {}
func (LocalAddrs) isCommand() {}

// Event is something the engine reports.
type Event interface{ isEvent() }

// Ready: the sessions of Promote Gen are usable (Err: some may not be, the
// wait was cut short; the addresses must come up all the same).
type Ready struct {
	Gen  uint64
	Took time.Duration
	Err  error
}

// BulkDone: a subordinate received the primary's bulk sync.
type BulkDone struct {
	Sessions int
	Took     time.Duration
}

// SyncLost: a sync connection ended (Peer: the other side's address).
type SyncLost struct {
	Peer string
	Err  error
}

func (Ready) isEvent()    {}
func (BulkDone) isEvent() {}
func (SyncLost) isEvent() {}

// promoteTimeout bounds the wait for received sessions to be applied
// before a new primary claims its addresses.
const promoteTimeout = 5 * time.Second

// commands is the engine's queue of commands: unbounded, so that Do never
// blocks the caller (the daemon's loop, which also sends heartbeats).
type commands struct {
	mu    sync.Mutex
	queue []Command
	wake  chan struct{}
}

// Do queues cmd; the engine carries the commands out in order, in its own
// goroutine (making a large table usable takes a while).
func (e *Engine) Do(cmd Command) {
	e.cmds.mu.Lock()
	e.cmds.queue = append(e.cmds.queue, cmd)
	e.cmds.mu.Unlock()
	select {
	case e.cmds.wake <- struct{}{}:
	default:
	}
}

// Events reports what the engine did. Once called, the caller must read it
// until the engine stops: the engine waits for a slow reader rather than
// lose an event. Without a reader, events are dropped.
func (e *Engine) Events() <-chan Event {
	e.listened.Store(true)
	return e.events
}

// emit reports ev, unless nobody listens or the engine is stopping.
func (e *Engine) emit(ev Event) {
	if e.runCtx == nil || !e.listened.Load() {
		return
	}
	select {
	case e.events <- ev:
	case <-e.runCtx.Done():
	}
}

// runCommands carries out the queued commands until ctx ends.
func (e *Engine) runCommands(ctx context.Context) {
	for {
		e.cmds.mu.Lock()
		batch := e.cmds.queue
		e.cmds.queue = nil
		e.cmds.mu.Unlock()
		for _, c := range batch {
			if ctx.Err() != nil {
				return
			}
			e.carryOut(ctx, c)
		}
		select {
		case <-ctx.Done():
			return
		case <-e.cmds.wake:
		}
	}
}

func (e *Engine) carryOut(ctx context.Context, c Command) {
	switch c := c.(type) {
	case AcceptFrom:
		if err := e.BecomeSubordinate(ctx, c.From); err != nil {
			e.log.Error("session pickup: becoming subordinate", "err", err)
		}
	case Promote:
		start := e.now()
		pctx, cancel := context.WithTimeout(ctx, promoteTimeout)
		err := e.BecomePrimary(pctx)
		cancel()
		took := e.now().Sub(start)
		if err != nil {
			e.log.Error("session pickup: claiming the addresses though the sessions may not all be usable", "err", err)
		}
		e.log.Info("session pickup: sessions usable", "after", took.Round(time.Microsecond))
		e.emit(Ready{Gen: c.Gen, Took: took, Err: err})
	case DialPeers:
		e.setPeers(c.Peers, c.Absent)
	case LocalAddrs:
		e.SetLocalAddrs(c.Addrs)
	case SetFilter:
		e.sel.setFilter(c.Filter)
	}
}
