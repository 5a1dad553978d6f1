// Package daemon runs one cluster member: it builds the parts (heartbeat
// transport, link watcher, address manager, control socket, metrics, session
// pickup) from the configuration, feeds their events to the cluster state
// machine in one loop, and carries out the actions the state machine
// returns. It decides nothing itself: every effect of a role change is an
// action of cluster.Node.
package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/hagate/hagate/internal/checks"
	"github.com/hagate/hagate/internal/checksum"
	"github.com/hagate/hagate/internal/cluster"
	"github.com/hagate/hagate/internal/config"
	"github.com/hagate/hagate/internal/heartbeat"
	"github.com/hagate/hagate/internal/history"
	"github.com/hagate/hagate/internal/metrics"
	"github.com/hagate/hagate/internal/netif"
	"github.com/hagate/hagate/internal/pinger"
	"github.com/hagate/hagate/internal/seal"
	"github.com/hagate/hagate/internal/sessions"
	"github.com/hagate/hagate/internal/version"
)

// historyEntries is how many election events are kept across restarts.
const historyEntries = 1000

// Daemon is one running member.
type Daemon struct {
	cfg    *config.Config
	log    *slog.Logger
	node   *cluster.Node
	tr     *heartbeat.Transport
	sender *heartbeat.Sender // sends what the loop decides, from its own thread
	nif    *netif.Handle
	bridge *bridgeFDB // transparent mode's relearning (transparent.go)
	ann    *netif.Announcer
	met    *metrics.Metrics
	hist   *history.Log
	pickup *pickup // nil when session pickup is off
	// pickupEvents is the engine's events, read from the start.
	pickupEvents <-chan sessions.Event
	conf         *confSync
	fence        fencer // nil when fencing is off
	mode         seal.Mode
	keys         *seal.Keyring
	sealer       *seal.Sealer
	opener       *seal.Opener
	started      time.Time

	requests chan request
	notify   *notifier
	sd       *sdNotifier    // systemd's readiness, status and watchdog
	witness  *pinger.Pinger // split_brain.witness; nil if none

	cfgPath string         // reloaded on SIGHUP and `hagate reload` ("": keys only)
	level   *slog.LevelVar // log_level, when the caller lets it change

	// Owned by the loop goroutine. The parts a reload restarts have their
	// own stop function.
	bg          context.Context // ends after the hand-over: every part runs on it
	wg          sync.WaitGroup  // every goroutine started on bg
	watch       *netif.LinkWatch
	stopWatch   context.CancelFunc
	pings       *pinger.Pinger // ping_servers; nil if none
	stopPings   context.CancelFunc
	checks      *checks.Runner // checks; nil if none
	stopChecks  context.CancelFunc
	stopMetrics context.CancelFunc

	holding      bool // the virtual addresses are ours
	lastFailover time.Time
	vmacs        map[string][]byte // interface -> MAC before the virtual MAC
	lost         map[[2]string]uint64
	mx           metricsState
	sends        sendClock
}

// New builds a member from cfg. Nothing is started yet.
func New(cfg *config.Config, log *slog.Logger) (*Daemon, error) {
	d := &Daemon{cfg: cfg, log: log, requests: make(chan request), vmacs: map[string][]byte{}, lost: map[[2]string]uint64{}}
	switch {
	case !cfg.AuthEnabled():
		d.mode = seal.Plain
		log.Warn("security.authentication is off: heartbeats are neither authenticated nor encrypted; anyone on the HA links can take the virtual addresses")
	case cfg.EncryptionEnabled():
		d.mode = seal.Encrypt
	default:
		d.mode = seal.Authenticate
	}
	if d.mode != seal.Plain {
		kr, err := seal.LoadKeys(cfg.KeyFile, keyPolicy(cfg))
		if err != nil {
			return nil, err
		}
		d.keys = kr
	}
	d.met = metrics.New()
	d.observe()
	return d, nil
}

// ReloadFrom makes SIGHUP and `hagate reload` reread path and apply what
// may change live (see reload.go), and log_level through level (nil: the
// log level stays). Call before Run.
func (d *Daemon) ReloadFrom(path string, level *slog.LevelVar) {
	d.cfgPath, d.level = path, level
}

// clusterConfig maps the configuration onto the state machine's.
func clusterConfig(cfg *config.Config) cluster.Config {
	cc := cluster.Config{
		NodeID: cfg.NodeID, Priority: cfg.Priority, Override: cfg.Override,
		UptimeMargin: cfg.UptimeMargin, Interval: cfg.Heartbeat.Interval,
		LostThreshold: cfg.Heartbeat.LostThreshold, HelloHolddown: cfg.HelloHolddown,
		Monitored: slices.Clone(cfg.Monitor), PingServers: len(cfg.PingServers),
		FailoverHoldTime: cfg.FailoverHoldTime, Quorum: cfg.SplitBrain.Quorum,
		ClusterSize: cfg.ClusterSize(), Witness: cfg.SplitBrain.Witness.IsValid(),
		SessionPickup: cfg.SessionPickup.Enabled, Build: version.String(),
		Fence: cfg.Fenced(), LinkFailedSignal: cfg.LinkFailedSignal,
	}
	remoteConfig(cfg, &cc)
	if cfg.ConfigSync.Enabled {
		for _, name := range cfg.ConfigSync.Parts {
			if p, err := checksum.ParsePart(name); err == nil { // validated
				cc.SyncedParts = append(cc.SyncedParts, p)
			}
		}
	}
	for _, l := range cfg.Heartbeat.Links {
		cc.Links = append(cc.Links, cluster.Link{Interface: l.Interface, Priority: l.Priority})
	}
	if cfg.SessionPickup.Enabled {
		for _, l := range syncLinks(cfg) {
			cc.SyncLinks = append(cc.SyncLinks, cluster.SyncLink{Interface: l.Interface, Peers: slices.Clone(l.Peers)})
		}
	}
	return cc
}

// undo is the start-up's cleanups, run in reverse order when Run returns.
type undo []func()

func (u *undo) push(f func()) { *u = append(*u, f) }
func (u undo) run() {
	for _, f := range slices.Backward(u) {
		f()
	}
}

// Run runs the member until ctx ends; then, if primary, it hands over to
// another member before returning. Every part it starts has stopped when it
// returns, whether the start-up failed or not.
func (d *Daemon) Run(ctx context.Context) error {
	var cleanup undo
	defer cleanup.run()
	if err := d.start(ctx, &cleanup); err != nil {
		return err
	}
	err := d.loop(ctx)
	d.sdNotify("STOPPING=1")
	d.handOver()
	return err
}

// spawn runs f in a goroutine that Run waits for; f must return once bg
// (or the context it was given) ends.
func (d *Daemon) spawn(name string, f func() error) {
	d.wg.Go(func() {
		if err := f(); err != nil && d.bg.Err() == nil {
			d.log.Error(name+" stopped", "err", err)
		}
	})
}

// start builds and starts every part, pushing what undoes each on cleanup.
func (d *Daemon) start(ctx context.Context, cleanup *undo) error {
	cfg := d.cfg
	var err error
	if d.nif, err = netif.New(); err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	cleanup.push(func() { d.nif.Close() })
	// A member starts without the virtual addresses, even after a crash
	// that left them behind: it is not primary until elected.
	d.releaseAddresses("startup")
	d.startFence(cleanup)
	d.startBridge()

	if d.sd, err = newSDNotifier(); err != nil {
		d.log.Warn("systemd notifications off", "err", err)
	}
	cleanup.push(d.sd.close)

	d.started = time.Now()
	epoch := uint64(d.started.UnixNano())
	if d.sealer, err = seal.NewSealer(d.keys, d.mode, seal.Heartbeat, uint16(cfg.GroupID), cfg.NodeID, epoch); err != nil {
		return err
	}
	// Frames sent before this start are captures the opener has no replay
	// window for, unless they echo this boot: the transport checks that
	// (heartbeat.StartMargin), not a clock allowance here.
	d.opener = seal.NewOpener(d.keys, d.mode, seal.Heartbeat, uint16(cfg.GroupID), cfg.NodeID, cfg.Security.MaxClockSkew)
	var links []heartbeat.Link
	for _, l := range cfg.Heartbeat.Links {
		links = append(links, heartbeat.Link{Interface: l.Interface, Peers: l.Peers})
	}
	if d.tr, err = heartbeat.Open(links, cfg.Heartbeat.Port, d.sealer, d.opener, hbCounters{d.met}, time.Now); err != nil {
		return err
	}
	cleanup.push(d.tr.Close)
	d.tr.Configure(heartbeat.Options{DeadInterval: cfg.DeadInterval(), Log: d.log})
	if err := d.newSender(); err != nil {
		return err
	}
	if d.hist, err = history.Open(cfg.StateDir, historyEntries); err != nil {
		return err
	}
	cleanup.push(func() { d.hist.Close() })
	ctl, err := d.listenControl()
	if err != nil {
		return err
	}
	cleanup.push(func() { ctl.Close() })

	// Everything below runs until bg ends, after the loop has handed over.
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	d.bg = bg
	cleanup.push(func() { stopBG(); d.wg.Wait() })
	firstSums, err := d.startConfigSync(epoch)
	if err != nil {
		return err
	}
	if err := d.watchLinks(); err != nil {
		return err
	}
	if err := d.serveMetrics(); err != nil {
		return err
	}
	d.spawn("heartbeat transport", func() error { d.tr.Run(bg); return nil })
	d.spawn("heartbeat sender", func() error { return d.sender.Run(bg) })
	d.spawn("control socket", func() error { return d.serveControl(bg, ctl) })
	d.notify = newNotifier(cfg.NodeID, d.log, d.met)
	d.spawn("notify", func() error { return d.notify.run(bg) })
	d.ann = netif.NewAnnouncer(d.nif, d.log)
	cleanup.push(d.ann.Stop)
	if err := d.startPings(); err != nil {
		return err
	}
	if err := d.startChecks(); err != nil {
		return err
	}
	if err := d.startWitness(); err != nil {
		return err
	}
	if cfg.SessionPickup.Enabled {
		if d.pickup, err = startPickup(bg, cfg, d.keys, d.mode, epoch, d.met, d.log); err != nil {
			return err
		}
		d.spawn("session pickup", func() error { return d.pickup.run(bg) })
		// Listen before the first step asks anything of the engine: a
		// bulk that arrives at once (an empty table) must not be missed.
		d.pickupEvents = d.pickup.e.Events()
		d.refreshLocalAddrs()
	}

	d.node = cluster.New(clusterConfig(cfg), time.Now())
	d.log.Info("hagate starting", "node", cfg.NodeID, "group", cfg.GroupID, "priority", cfg.Priority,
		"override", cfg.Override, "security", d.mode.String(), "hello_holddown", cfg.HelloHolddown,
		"heartbeat", fmt.Sprintf("%s x %d", cfg.Heartbeat.Interval, cfg.Heartbeat.LostThreshold))
	d.record(history.Entry{Event: "start", Role: cluster.Hello.String(), Reason: "daemon started"})
	d.restoreFailoverFlag()
	for _, name := range slices.Sorted(maps.Keys(d.watch.Initial)) {
		d.step(cluster.LinkChange{Now: time.Now(), Interface: name, Up: d.watch.Initial[name]})
	}
	// Ping servers count only once they answer.
	if d.pings != nil {
		d.step(d.pingEvent())
	}
	// After the first steps, which start the session pickup and the
	// heartbeats, and before the loop, whose ticks may end the hello
	// holddown.
	d.step(cluster.ChecksumsChange{Now: time.Now(), Sums: <-firstSums})
	return nil
}

// loop feeds events to the state machine until ctx ends. The parts a
// reload restarts are read afresh on every turn.
func (d *Daemon) loop(ctx context.Context) error {
	tick := time.NewTicker(d.cfg.Heartbeat.Interval / 4)
	defer tick.Stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var witnessUpdates <-chan int
	if d.witness != nil {
		witnessUpdates = d.witness.Updates()
	}
	pickupEvents := d.pickupEvents
	for {
		var pingUpdates <-chan int
		if d.pings != nil {
			pingUpdates = d.pings.Updates()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			d.sighup()
		case <-tick.C:
			d.drainHeartbeats()
			d.step(cluster.Tick{Now: time.Now()})
			d.fetchFDB(time.Now())
			d.sdTick(time.Now()) // here, so that a wedged loop stops petting the watchdog
		case rx := <-d.tr.Packets():
			rx.Now = time.Now()
			d.step(rx)
		case ev, ok := <-d.watch.Events():
			// The watch re-subscribes by itself when the kernel drops its
			// subscription, and reports what changed meanwhile: it ends
			// only with its context, replaced by a reload.
			if ok {
				d.step(cluster.LinkChange{Now: time.Now(), Interface: ev.Interface, Up: ev.Up})
			}
		case <-pingUpdates:
			d.step(d.pingEvent())
		case ch := <-d.checkChanges():
			d.step(d.checkEvent(ch))
		case n := <-witnessUpdates:
			d.step(cluster.WitnessChange{Now: time.Now(), Up: n > 0})
		case ev := <-pickupEvents:
			if cev := d.pickup.event(ev); cev != nil {
				d.step(cev)
			}
		case sums := <-d.conf.sums:
			d.step(cluster.ChecksumsChange{Now: time.Now(), Sums: sums})
		case req := <-d.requests:
			if !d.handleConfigSync(req, time.Now()) {
				req.reply <- d.handle(req)
			}
		}
	}
}

// drainHeartbeats steps the heartbeats already read before a tick judges
// silence: after the loop was held up, the tick and the heartbeats that
// arrived meanwhile are ready together, and select picks at random; a tick
// first would find the primary silent for the whole hold-up and take over
// while its heartbeats wait in the queue. Bounded by what is queued now.
func (d *Daemon) drainHeartbeats() {
	for range len(d.tr.Packets()) {
		rx := <-d.tr.Packets()
		rx.Now = time.Now()
		d.step(rx)
	}
}

// sighup reloads the configuration, or only the key file when the daemon
// was not given the file's path.
func (d *Daemon) sighup() {
	if d.cfgPath == "" {
		if err := d.reloadKeys(d.cfg.KeyFile); err != nil {
			d.log.Error("SIGHUP: key file not reloaded, the old keys stay in use", "err", err)
		}
		return
	}
	if _, err := d.reload(); err != nil {
		d.log.Error("SIGHUP: " + err.Error())
	}
}

// reloadKeys rereads the key file: the first key seals from now on, every
// listed key is accepted, and a key no longer listed is refused.
func (d *Daemon) reloadKeys(path string) error {
	if d.mode == seal.Plain {
		return nil
	}
	kr, err := seal.LoadKeys(path, keyPolicy(d.cfg))
	if err != nil {
		return err
	}
	if err := d.sealer.Rekey(kr); err != nil {
		return err
	}
	d.opener.SetKeyring(kr)
	d.keys = kr
	if d.pickup != nil {
		if err := d.pickup.e.Rekey(kr); err != nil {
			return fmt.Errorf("session sync: %w", err)
		}
	}
	if d.conf != nil {
		if err := d.conf.rekey(kr); err != nil {
			return err
		}
	}
	d.log.Info("key file reloaded", "keys", kr.IDs())
	d.record(history.Entry{Event: "event", Reason: "key file reloaded"})
	return nil
}

// handOver tells the others this member is leaving, so that if it was
// primary another takes over at once instead of after the dead interval.
func (d *Daemon) handOver() {
	d.step(cluster.Command{Now: time.Now(), Kind: cluster.Shutdown})
	d.releaseAddresses("shutdown") // also what a crash before this run left
	d.record(history.Entry{Event: "stop", Reason: "daemon stopped"})
	d.log.Info("hagate stopped")
}

// step feeds one event to the state machine and carries out its actions.
func (d *Daemon) step(ev cluster.Event) {
	for _, a := range d.node.Step(ev) {
		start := time.Now()
		d.perform(a)
		d.timeAction(a, time.Since(start))
	}
	d.stepMetrics(ev)
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// perform carries out one action of the state machine.
func (d *Daemon) perform(a cluster.Action) {
	switch a := a.(type) {
	case cluster.Send:
		if a.HB.Leaving {
			// The last heartbeat, at shutdown: sent here, before the
			// parts stop (the transport closes its sockets when they
			// do, and the sender thread could find them closed); the
			// others take over at once instead of after a dead interval.
			if err := d.tr.Send(a.HB); err != nil {
				d.log.Warn("leaving heartbeat not sent on every link", "err", err)
			}
			return
		}
		d.sender.Send(a.HB)
	case cluster.RoleChange:
		d.roleChange(a)
	case cluster.PrimaryChange:
		d.met.Elections.Inc()
		d.countFailover(a)
		if a.Primary == "" {
			d.log.Warn("cluster has no primary")
		} else {
			d.log.Info("primary selected", "primary", a.Primary, "reason", a.Reason)
		}
		d.record(history.Entry{Event: "election", Primary: a.Primary, Reason: a.Reason})
	case cluster.Notice:
		if a.Warn {
			d.log.Warn(a.Msg)
		} else {
			d.log.Info(a.Msg)
		}
		if a.History {
			d.record(history.Entry{Event: "event", Reason: a.Msg})
		}
	case cluster.ClaimAddresses:
		d.claimAddresses()
	case cluster.ReleaseAddresses:
		d.releaseAddresses(a.Reason)
	case cluster.Fence:
		d.raiseFence()
	case cluster.Unfence:
		d.lowerFence()
	case cluster.SignalLinkFailure:
		d.signalLinkFailure()
	case cluster.AcceptSessions:
		d.pickup.e.Do(sessions.AcceptFrom{From: a.From})
	case cluster.PromoteSessions:
		d.pickup.e.Do(sessions.Promote{Gen: a.Gen})
	case cluster.SyncRoutes:
		d.pickup.dial(a)
	case cluster.ConfigMismatch:
		d.configMismatch(a)
	case cluster.SyncConfig:
		d.conf.requestSync(a)
	case cluster.Notify:
		d.notify.send(notification{Command: d.cfg.Notify, Role: a.Role.String(), Previous: a.Previous.String(), Kind: string(a.Kind), Reason: a.Reason})
	}
}

// roleChange logs, counts and records a change of this member's role.
func (d *Daemon) roleChange(a cluster.RoleChange) {
	d.log.Warn("role change", "member", d.cfg.NodeID, "from", a.From.String(), "to", a.To.String(), "reason", string(a.Kind), "detail", a.Reason)
	d.countRoleChange(a)
	if d.pickup != nil {
		d.refreshLocalAddrs()
	}
	d.record(history.Entry{Event: "role", Role: a.To.String(), Primary: d.node.Primary(), Reason: a.Reason})
}

func (d *Daemon) record(e history.Entry) {
	if d.hist == nil {
		return
	}
	e.Time = time.Now()
	e.Node = d.cfg.NodeID
	// Queued: the disk's sync is not the loop's to wait for (a role
	// change would hold the heartbeats up behind it).
	if err := d.hist.Queue(e, func(err error) { d.log.Error("history", "err", err) }); err != nil {
		d.log.Error("history", "err", err)
	}
}

// claimAddresses adds the virtual addresses (and virtual MACs) and starts
// announcing them.
func (d *Daemon) claimAddresses() {
	var targets []netif.Target
	if d.cfg.VirtualMAC {
		for i, ifname := range d.vipInterfaces() {
			mac := netif.VirtualMAC(d.cfg.GroupID, i)
			prev, err := d.nif.SetMAC(ifname, mac)
			if err != nil {
				d.log.Error("virtual MAC", "interface", ifname, "err", err)
				continue
			}
			if _, ok := d.vmacs[ifname]; !ok {
				d.vmacs[ifname] = prev
			}
		}
	}
	for _, v := range d.cfg.VirtualIPs {
		if err := d.nif.AddAddress(v.Interface, v.Address); err != nil {
			d.log.Error("virtual IP", "err", err)
			continue
		}
		targets = append(targets, netif.Target{Interface: v.Interface, Addr: v.Address.Addr()})
	}
	d.holding = true
	d.announce(targets)
	d.log.Info("virtual addresses up", "count", len(targets))
}

// releaseAddresses removes the virtual addresses; a subordinate holds none
// and so never answers ARP for them.
func (d *Daemon) releaseAddresses(why string) {
	if d.ann != nil {
		d.ann.Stop()
	}
	for _, v := range d.cfg.VirtualIPs {
		if err := d.nif.DelAddress(v.Interface, v.Address); err != nil {
			d.log.Error("virtual IP", "err", err)
		}
	}
	for ifname, prev := range d.vmacs {
		if _, err := d.nif.SetMAC(ifname, prev); err != nil {
			d.log.Error("restore MAC", "interface", ifname, "err", err)
			continue
		}
		delete(d.vmacs, ifname)
	}
	if d.holding {
		d.log.Info("virtual addresses down", "reason", why)
	}
	d.holding = false
}

func (d *Daemon) vipInterfaces() []string {
	var out []string
	for _, v := range d.cfg.VirtualIPs {
		if !slices.Contains(out, v.Interface) {
			out = append(out, v.Interface)
		}
	}
	return out
}

// refreshLocalAddrs tells session pickup this member's own addresses, the
// virtual IPs always included, so that sessions the gateway terminates
// itself (management, heartbeats and sync, VPN endpoints) are not synced.
func (d *Daemon) refreshLocalAddrs() {
	addrs, err := d.nif.LocalAddrs()
	if err != nil {
		d.log.Error("session pickup: own addresses", "err", err)
	}
	for _, v := range d.cfg.VirtualIPs {
		addrs = append(addrs, v.Address.Addr())
	}
	d.pickup.e.Do(sessions.LocalAddrs{Addrs: addrs})
}

// startWitness starts the split-brain witness check, when configured.
func (d *Daemon) startWitness() error {
	cfg := d.cfg
	if !cfg.SplitBrain.Witness.IsValid() {
		return nil
	}
	// The witness is checked on the heartbeat's time scale, so a lost
	// witness is noticed as fast as a lost member.
	p, err := pinger.New([]pinger.Target{{Addr: cfg.SplitBrain.Witness, Interval: cfg.Heartbeat.Interval, Failures: cfg.Heartbeat.LostThreshold}}, 0, d.log)
	if err != nil {
		return fmt.Errorf("split_brain.witness: %w", err)
	}
	d.witness = p
	d.spawn("witness", func() error { return p.Run(d.bg) })
	return nil
}

// hbCounters adapts metrics to the transport's counters.
type hbCounters struct{ m *metrics.Metrics }

func (c hbCounters) Sent(link string) { c.m.HeartbeatsSent.WithLabelValues(link).Inc() }
func (c hbCounters) Received(link, peer string) {
	c.m.HeartbeatsReceived.WithLabelValues(link, peer).Inc()
}
func (c hbCounters) Dropped(link, reason string) {
	c.m.HeartbeatsDropped.WithLabelValues(link, reason).Inc()
}
func (c hbCounters) DroppedFrom(link, reason, source string) { c.m.DroppedFrom(link, reason, source) }

// keyPolicy is what the configuration allows of the key file.
func keyPolicy(cfg *config.Config) seal.KeyPolicy {
	return seal.KeyPolicy{Passphrase: cfg.Security.Passphrase, Group: uint16(cfg.GroupID)}
}
