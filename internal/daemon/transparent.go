package daemon

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hagate/hagate/internal/checksum"
	"github.com/hagate/hagate/internal/cluster"
	"github.com/hagate/hagate/internal/configsync"
	"github.com/hagate/hagate/internal/netif"
)

// Transparent mode's relearning. A subordinate's bridge ports learn
// nothing, so the addresses a new primary must announce to the switches
// come from the primary it replaces: every subordinate fetches the
// primary's learnt addresses over the configuration sync exchange
// (configsync.OpFDB) every fdbPeriod and keeps the last answer. Carrying
// out Unfence in transparent mode then means two things: the fence comes
// down, and the bridge sends the relearning frames (netif.Relearn) from
// the addresses last fetched, so the switches move them to this member's
// ports at once. The node needs no action of its own for it: the frames
// belong to lowering a bridge's fence, as learning coming back on does.
//
// A primary that does not answer (release 0.1.0 has no exchange at all, a
// build before OpFDB closes the connection at the unknown request) is
// asked again only after fdbBackoff; the subordinate keeps what it had,
// and its failover falls back to the switches relearning by themselves.

const (
	fdbPeriod  = 3 * time.Second
	fdbBackoff = 30 * time.Second
)

// bridgeFDB is the primary's learnt addresses as this member last fetched
// them.
type bridgeFDB struct {
	bridge string
	ports  []string

	mu      sync.Mutex
	next    time.Time // no fetch before
	busy    bool      // a fetch is running
	entries []netif.FDBEntry
	from    string    // the primary they came from
	at      time.Time // when
	err     string    // the last fetch's failure, until one succeeds
}

// BridgeStatus is transparent mode's part of `hagate status`.
type BridgeStatus struct {
	Bridge  string    `json:"bridge"`
	Learnt  int       `json:"primary_fdb_entries"` // addresses the relearning frames will come from
	From    string    `json:"primary_fdb_from,omitempty"`
	Fetched time.Time `json:"primary_fdb_fetched,omitzero"`
	Error   string    `json:"primary_fdb_error,omitempty"`
}

// startBridge prepares transparent mode's relearning (nothing in routed
// mode, or with fencing off: then every bridge forwards and learns).
func (d *Daemon) startBridge() {
	if tr := d.cfg.Transparent; tr.Bridge != "" && d.cfg.Fenced() {
		d.bridge = &bridgeFDB{bridge: tr.Bridge, ports: slices.Clone(tr.Ports)}
	}
}

// fdbContent serves this member's learnt addresses on its ports (a
// subordinate's ports learn nothing: it serves none).
func (b *bridgeFDB) content(nif *netif.Handle) ([]byte, uint64, error) {
	if b == nil {
		return nil, 0, errors.New("not in transparent mode")
	}
	all, err := nif.LearnedFDB(b.bridge)
	if err != nil {
		return nil, 0, err
	}
	onPorts := slices.DeleteFunc(all, func(e netif.FDBEntry) bool { return !slices.Contains(b.ports, e.Port) })
	body, err := configsync.AppendFDB(nil, onPorts)
	return body, checksum.Of(body), err
}

// fetchFDB starts a fetch of the primary's learnt addresses when one is
// due; called from the loop on every tick. The fetch runs aside: the loop
// never waits on the network.
func (d *Daemon) fetchFDB(now time.Time) {
	b := d.bridge
	if b == nil || d.node.Role() == cluster.Primary {
		return
	}
	b.mu.Lock()
	due := !b.busy && !now.Before(b.next)
	if due {
		b.busy, b.next = true, now.Add(fdbPeriod)
	}
	b.mu.Unlock()
	if !due {
		return
	}
	sc, err := d.node.ForceSync(now) // the primary and its best address
	if err == nil && !sc.Addr.IsValid() {
		err = fmt.Errorf("no address of %s known", sc.From)
	}
	if err != nil {
		b.done(now, nil, "", err, d)
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(d.bg, fdbPeriod)
		defer cancel()
		entries, err := d.conf.peer.FetchFDB(ctx, sc.Addr)
		b.done(now, entries, sc.From, err, d)
	}()
}

// done records a fetch's outcome. A failure keeps the addresses fetched
// before (the primary may just have died: those are the ones to announce)
// and, when the primary answered nothing, waits fdbBackoff before asking
// again; it is logged once per run of failures.
func (b *bridgeFDB) done(started time.Time, entries []netif.FDBEntry, from string, err error, d *Daemon) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.busy = false
	if err != nil {
		if b.err == "" && from != "" {
			d.log.Warn("transparent mode: the primary's forwarding database not fetched; after a failover the switches relearn by themselves", "primary", from, "err", err)
		}
		if from != "" {
			b.err, b.next = err.Error(), started.Add(fdbBackoff)
		}
		return
	}
	if b.err != "" || len(b.entries) != len(entries) {
		d.log.Info("transparent mode: the primary's forwarding database fetched", "primary", from, "entries", len(entries))
	}
	b.entries, b.from, b.at, b.err = entries, from, time.Now(), ""
}

// relearn sends the relearning frames from the addresses last fetched,
// right after the fence came down, aside from the loop.
func (d *Daemon) relearn() {
	b := d.bridge
	if b == nil {
		return
	}
	b.mu.Lock()
	entries, from, at := b.entries, b.from, b.at
	b.mu.Unlock()
	if len(entries) == 0 {
		d.log.Warn("transparent mode: no forwarding database of the old primary; the switches relearn by themselves")
		return
	}
	d.spawn("relearn", func() error {
		n, err := d.nif.Relearn(b.ports, entries)
		d.log.Info("transparent mode: relearning frames sent", "frames", n, "addresses", len(entries), "from_primary", from, "fetched", at.Format(time.RFC3339))
		if err != nil {
			d.log.Error("transparent mode: relearning frames", "err", err)
		}
		return nil
	})
}

// addBridgeStatus adds transparent mode's part to the status.
func (d *Daemon) addBridgeStatus(st *Status) {
	b := d.bridge
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	st.Bridge = &BridgeStatus{Bridge: b.bridge, Learnt: len(b.entries), From: b.from, Fetched: b.at, Error: b.err}
}
