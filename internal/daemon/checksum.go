package daemon

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"sync"
	"time"

	"github.com/hagate/hagate/internal/checksum"
	"github.com/hagate/hagate/internal/cluster"
	"github.com/hagate/hagate/internal/config"
	"github.com/hagate/hagate/internal/configsync"
	"github.com/hagate/hagate/internal/control"
	"github.com/hagate/hagate/internal/seal"
)

// Checksums are recomputed every checksumPeriod, and checksumDebounce after
// nftables reports a change (`nft monitor`): a ruleset changed many times
// a second is read once per debounce, and the last state wins.
const (
	checksumPeriod   = 2 * time.Second
	checksumDebounce = 100 * time.Millisecond
)

// confSync computes this member's checksums, serves its content to the
// other members and applies the primary's.
type confSync struct {
	stateDir string
	peer     *configsync.Peer
	sums     chan checksum.Sums             // to the loop
	trigger  chan struct{}                  // recompute now
	syncs    chan cluster.SyncConfig        // latest wins
	fdb      func() ([]byte, uint64, error) // transparent mode's learnt addresses

	mu       sync.Mutex
	src      checksum.Source // replaced by a reload: read it with source()
	texts    map[checksum.Part][]byte
	errs     map[checksum.Part]string
	lastSync SyncResult
}

// SyncResult is the last configuration sync, for `hagate status`.
type SyncResult struct {
	Time    time.Time `json:"time,omitzero"`
	From    string    `json:"from,omitempty"`
	Applied bool      `json:"applied"`
	Error   string    `json:"error,omitempty"`
}

// exclude is what the configuration declares member-specific; hagate's own
// tables (the fence) are left out by checksum.Exclude itself.
func exclude(cfg *config.Config) checksum.Exclude {
	ex := cfg.ConfigSync.Exclude
	return checksum.Exclude{Tables: ex.Tables, Chains: ex.Chains, Interfaces: ex.Interfaces}
}

// startConfigSync starts the checksums, the exchange's server and the
// sync worker. The first checksums are computed in the background (nft
// runs as a command: about 10 ms) while the rest of the start-up goes on;
// the channel returned gives them once, and start steps them into the
// state machine before the loop runs, so that no hello holddown ends on a
// member that does not know its checksums yet.
func (d *Daemon) startConfigSync(epoch uint64) (<-chan checksum.Sums, error) {
	cfg := d.cfg
	src, err := syncSource(cfg)
	if err != nil {
		return nil, err
	}
	sealer, err := seal.NewSealer(d.keys, d.mode, seal.ConfigSync, uint16(cfg.GroupID), cfg.NodeID, epoch)
	if err != nil {
		return nil, err
	}
	cs := &confSync{
		stateDir: cfg.StateDir, src: src,
		sums: make(chan checksum.Sums, 1), trigger: make(chan struct{}, 1), syncs: make(chan cluster.SyncConfig, 1),
		peer: &configsync.Peer{Sealer: sealer, Opener: seal.NewOpener(d.keys, d.mode, seal.ConfigSync, uint16(cfg.GroupID), cfg.NodeID, cfg.Security.MaxClockSkew),
			Port: cfg.ConfigSync.Port, MaxSize: cfg.ConfigSync.MaxSize, Log: d.log},
		fdb: func() ([]byte, uint64, error) { return d.bridge.content(d.nif) },
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(cfg.ConfigSync.Port)))
	if err != nil {
		return nil, fmt.Errorf("config_sync.port: %w", err)
	}
	d.conf = cs
	first := make(chan checksum.Sums, 1)
	d.spawn("config sync server", func() error { return cs.peer.Serve(d.bg, ln, cs.content) })
	d.spawn("checksums", func() error {
		first <- cs.read(d.bg)
		return cs.run(d.bg, d)
	})
	d.spawn("nft monitor", func() error { return cs.monitor(d.bg) })
	d.spawn("config sync", func() error { cs.syncLoop(d.bg, d); return nil })
	return first, nil
}

// syncSource is what a member checksums beyond its kernel state, from its
// configuration: the exclusions, the routing tables, the cluster-wide keys.
func syncSource(cfg *config.Config) (checksum.Source, error) {
	cw, err := cfg.ClusterWide()
	if err != nil {
		return checksum.Source{}, err
	}
	src := checksum.Source{Exclude: exclude(cfg), Config: cw}
	for _, t := range cfg.ConfigSync.RouteTables {
		src.RouteTables = append(src.RouteTables, t)
	}
	return src, nil
}

func (cs *confSync) source() checksum.Source {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.src
}

// reload takes a reloaded configuration's exclusions, routing tables and
// cluster-wide keys (a change of any of them changes the checksums), and
// recomputes the checksums at once.
func (cs *confSync) reload(cfg *config.Config) error {
	src, err := syncSource(cfg)
	if err != nil {
		return err
	}
	cs.mu.Lock()
	cs.src = src
	cs.mu.Unlock()
	cs.recompute()
	return nil
}

// rekey switches the exchange to the reloaded key file's keys: the first
// seals from now on, every one opens.
func (cs *confSync) rekey(kr *seal.Keyring) error {
	if err := cs.peer.Sealer.Rekey(kr); err != nil {
		return fmt.Errorf("config sync: %w", err)
	}
	cs.peer.Opener.SetKeyring(kr)
	return nil
}

// read reads every part now and returns the checksums.
func (cs *confSync) read(ctx context.Context) checksum.Sums {
	var sums checksum.Sums
	texts, errs := map[checksum.Part][]byte{}, map[checksum.Part]string{}
	for _, r := range checksum.Compute(ctx, cs.source()) {
		if r.Err != nil {
			errs[r.Part] = r.Err.Error()
			continue
		}
		sums[r.Part], texts[r.Part] = r.Sum, r.Text
	}
	cs.mu.Lock()
	cs.texts, cs.errs = texts, errs
	cs.mu.Unlock()
	return sums
}

// compute reads every part now and hands the checksums to the loop.
func (cs *confSync) compute(ctx context.Context) {
	sums := cs.read(ctx)
	select {
	case <-cs.sums: // an older result not yet taken: the newest wins
	default:
	}
	cs.sums <- sums
}

func (cs *confSync) recompute() {
	select {
	case cs.trigger <- struct{}{}:
	default:
	}
}

func (cs *confSync) run(ctx context.Context, d *Daemon) error {
	tick := time.NewTicker(checksumPeriod)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-cs.trigger:
			// Let a burst of changes settle.
			select {
			case <-time.After(checksumDebounce):
			case <-ctx.Done():
				return nil
			}
		}
		cs.compute(ctx)
	}
}

// monitor recomputes when nftables reports a ruleset change. Without it
// (nft monitor unavailable) the period alone finds changes.
func (cs *confSync) monitor(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, "nft", "monitor", "ruleset")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("nft monitor: %w", err)
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		cs.recompute()
	}
	return cmd.Wait()
}

// content serves this member's parts to the others.
func (cs *confSync) content(ctx context.Context, op configsync.Op, part checksum.Part) ([]byte, uint64, error) {
	if op == configsync.OpFDB {
		return cs.fdb()
	}
	cs.mu.Lock()
	text, errText := cs.texts[part], cs.errs[part]
	cs.mu.Unlock()
	if errText != "" {
		return nil, 0, errors.New(errText)
	}
	switch {
	case op == configsync.OpText:
		return text, checksum.Of(text), nil
	case part == checksum.Ruleset:
		script, err := configsync.Script(ctx, cs.source().Exclude)
		return script, checksum.Of(text), err
	}
	return nil, 0, fmt.Errorf("%s cannot be synced", part)
}

func (cs *confSync) requestSync(sc cluster.SyncConfig) {
	select {
	case <-cs.syncs:
	default:
	}
	cs.syncs <- sc
}

func (cs *confSync) syncLoop(ctx context.Context, d *Daemon) {
	for {
		select {
		case <-ctx.Done():
			return
		case sc := <-cs.syncs:
			err := cs.sync(ctx, sc)
			res := SyncResult{Time: time.Now(), From: sc.From, Applied: err == nil}
			if err != nil {
				res.Error = err.Error()
				d.log.Error("configuration sync from the primary failed: this member keeps its configuration and stays out of sync", "primary", sc.From, "err", err)
			} else {
				d.log.Info("configuration synced from the primary", "primary", sc.From)
			}
			cs.mu.Lock()
			cs.lastSync = res
			cs.mu.Unlock()
			cs.compute(ctx)
		}
	}
}

// sync fetches and applies the primary's synced parts.
func (cs *confSync) sync(ctx context.Context, sc cluster.SyncConfig) error {
	if !sc.Addr.IsValid() {
		return fmt.Errorf("no address of %s known", sc.From)
	}
	for _, part := range sc.Parts {
		if part != checksum.Ruleset {
			continue
		}
		resp, err := cs.peer.Fetch(ctx, sc.Addr, configsync.OpApply, part)
		if err != nil {
			return err
		}
		if err := configsync.Apply(ctx, resp.Body, cs.source().Exclude, cs.stateDir); err != nil {
			return err
		}
	}
	return nil
}

// configMismatch sets the metric and tells the notify command.
func (d *Daemon) configMismatch(a cluster.ConfigMismatch) {
	d.met.ConfigMismatch.WithLabelValues(a.Part, a.Member).Set(boolFloat(a.Differs))
	reason := fmt.Sprintf("configuration checksum of %s on member %s agrees with the primary's (%s)", a.Part, a.Member, a.Primary)
	if a.Differs {
		reason = fmt.Sprintf("configuration checksum of %s on member %s differs from the primary's (%s)", a.Part, a.Member, a.Primary)
	}
	// The first argument is "checksum", never a role: a script that acts
	// on "primary" must not run its takeover again. HAGATE_ROLE still
	// says this member's role.
	role := d.node.Role().String()
	d.notify.send(notification{Command: d.cfg.Notify, Event: "checksum", Role: role, Previous: role, Kind: "checksum", Reason: reason})
}

// ChecksumReport is what `hagate checksum` shows.
type ChecksumReport struct {
	Members  []cluster.MemberChecksums `json:"members"`
	Errors   map[string]string         `json:"errors,omitempty"` // parts this member could not read
	LastSync SyncResult                `json:"last_sync"`
	Diff     *Diff                     `json:"diff,omitempty"`
}

// Diff is this member's and the primary's normalised texts of one part.
type Diff struct {
	Part    string `json:"part"`
	Primary string `json:"primary"`
	Local   string `json:"local"`
	Remote  string `json:"primary_text"`
}

// handleConfigSync answers the checksum and synchronize commands. Those
// that wait on the network answer from a goroutine, never holding up the
// loop; it reports whether it took the request.
func (d *Daemon) handleConfigSync(req request, now time.Time) bool {
	cs := d.conf
	switch req.Command {
	case "checksum":
		cs.mu.Lock()
		rep := ChecksumReport{Members: d.node.Checksums(), Errors: map[string]string{}, LastSync: cs.lastSync}
		for p, e := range cs.errs {
			rep.Errors[p.String()] = e
		}
		local := cs.texts
		cs.mu.Unlock()
		name := req.Args["diff"]
		if name == "" {
			req.reply <- control.OK(rep)
			return true
		}
		part, err := checksum.ParsePart(name)
		sc, ferr := d.node.ForceSync(now)
		switch {
		case err != nil:
			req.reply <- control.Errorf("%v", err)
			return true
		case ferr != nil:
			req.reply <- control.Errorf("diff: %v", ferr)
			return true
		}
		go func() {
			resp, err := cs.peer.Fetch(d.bg, sc.Addr, configsync.OpText, part)
			if err != nil {
				req.reply <- control.Errorf("diff: %v", err)
				return
			}
			rep.Diff = &Diff{Part: part.String(), Primary: sc.From, Local: string(local[part]), Remote: string(resp.Body)}
			req.reply <- control.OK(rep)
		}()
		return true
	case "synchronize":
		rollback := req.Args["rollback"] == "true"
		sc, err := d.node.ForceSync(now)
		if err != nil && !rollback {
			req.reply <- control.Errorf("synchronize: %v", err)
			return true
		}
		if len(sc.Parts) == 0 && !rollback {
			req.reply <- control.Errorf("synchronize: config_sync is off (config_sync.enabled: false)")
			return true
		}
		go func() {
			var err error
			if rollback {
				err = configsync.Rollback(d.bg, cs.source().Exclude, cs.stateDir)
			} else {
				err = cs.sync(d.bg, sc)
			}
			cs.compute(d.bg)
			if err != nil {
				req.reply <- control.Errorf("synchronize: %v", err)
				return
			}
			req.reply <- control.OK(map[string]any{"synchronized": !rollback, "rolled_back": rollback, "from": sc.From})
		}()
		return true
	}
	return false
}

// addConfigStatus adds the last sync's failure to the status' warnings.
func (d *Daemon) addConfigStatus(st *Status) {
	cs := d.conf
	cs.mu.Lock()
	defer cs.mu.Unlock()
	st.ConfigSync = cs.lastSync
	if cs.lastSync.Error != "" {
		st.Warnings = append(st.Warnings, "configuration sync from "+cs.lastSync.From+" failed: "+cs.lastSync.Error)
	}
}
