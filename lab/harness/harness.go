// Package harness runs real hagate daemons in the namespace lab: it writes
// each gateway's configuration and the cluster key, starts and stops the
// daemons inside the gateways' namespaces, and asks them for their status
// over the control socket. The integration tests, the demo and the
// benchmarks share it.
package harness

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hagate/hagate/internal/control"
	"github.com/hagate/hagate/internal/daemon"
	"github.com/hagate/hagate/internal/sessions"
	"github.com/hagate/hagate/lab/netlab"
)

// Key is the cluster key the harness writes, unless a node is given another:
// 32 random bytes in hex, as `hagate genkey` writes them.
var Key = KeyFor("hagate lab cluster key, not for production")

// KeyFor turns a name into a key a daemon accepts (32 bytes in hex, the
// name's SHA-256), so tests can speak of "a key from another cluster".
func KeyFor(name string) string {
	sum := sha256.Sum256([]byte(name))
	return hex.EncodeToString(sum[:])
}

// Options shape the cluster's configuration.
type Options struct {
	Interval      time.Duration // default 100ms
	LostThreshold int           // default 5
	Holddown      time.Duration // default 2s
	UptimeMargin  time.Duration // default 300s
	Override      bool
	Priorities    []int // per gateway; default 200, 150, 100, 50
	HA2           bool  // a second heartbeat link
	IPv6          bool  // IPv6 virtual IPs too (the lab needs IPv6 on)
	VirtualMAC    bool
	// ConfigSync turns on the ruleset sync from the primary
	// (config_sync.enabled); the checksums are compared either way.
	ConfigSync bool
	// Extra is appended to every gateway's configuration (YAML), e.g. a
	// session_pickup section.
	Extra string
	// Keys overrides the cluster key of some gateways ("gw3": "wrong ...").
	Keys map[string]string
	// Env is added to the daemons' environment ("NAME=value").
	Env []string
	// HeartbeatRealtime is heartbeat.realtime_priority (0: not set).
	HeartbeatRealtime int
}

// Cluster is the set of daemons in one lab.
type Cluster struct {
	Lab  *netlab.Lab
	Dir  string
	Bin  string
	opts Options
	gws  []string

	mu    sync.Mutex
	bins  map[string]string // gateways that run another build than Bin (UseBin)
	procs map[string]*proc
	off   map[string]bool // powered off: whatever it holds is unreachable
}

type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Build compiles the hagate command, and the lab's echo tool beside it
// (EchoBin), into dir and returns the hagate command's path. The command is
// built in the product's module (the lab's parent directory), with the
// product's own go.mod and go.sum, so the daemon under test is the working
// copy's and its dependencies are the ones it ships with; the echo tool in
// the lab's module.
func Build(dir string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	for _, b := range []struct{ dir, pkg string }{{filepath.Dir(root), "./cmd/hagate"}, {root, "./cmd/hagate-echo"}} {
		cmd := exec.Command("go", "build", "-o", dir+"/", b.pkg)
		cmd.Dir = b.dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("go build %s: %v: %s", b.pkg, err, out)
		}
	}
	return filepath.Join(dir, "hagate"), nil
}

// EchoBin is the echo tool built beside the hagate command bin.
func EchoBin(bin string) string { return filepath.Join(filepath.Dir(bin), "hagate-echo") }

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside the hagate lab module (run from lab/)")
	}
	return filepath.Dir(mod), nil
}

// New writes the configuration of every gateway of l into dir. Nothing runs
// until Start.
func New(l *netlab.Lab, bin, dir string, gateways int, o Options) (*Cluster, error) {
	if o.Interval == 0 {
		o.Interval = 100 * time.Millisecond
	}
	if o.LostThreshold == 0 {
		o.LostThreshold = 5
	}
	if o.Holddown == 0 {
		o.Holddown = 2 * time.Second
	}
	if o.UptimeMargin == 0 {
		o.UptimeMargin = 300 * time.Second
	}
	if o.Priorities == nil {
		o.Priorities = []int{200, 150, 100, 50}
	}
	c := &Cluster{Lab: l, Dir: dir, Bin: bin, opts: o, bins: map[string]string{}, procs: map[string]*proc{}, off: map[string]bool{}}
	for k := 1; k <= gateways; k++ {
		gw := netlab.Gateway(k)
		c.gws = append(c.gws, gw)
		if err := c.writeConfig(k, gateways); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Gateways lists the gateway names.
func (c *Cluster) Gateways() []string { return c.gws }

// ConfigPath is the configuration file of gw.
func (c *Cluster) ConfigPath(gw string) string { return filepath.Join(c.Dir, gw, "hagate.yaml") }

// LogPath is where gw's daemon writes its log.
func (c *Cluster) LogPath(gw string) string { return filepath.Join(c.Dir, gw, "hagate.log") }

// Socket is gw's control socket.
func (c *Cluster) Socket(gw string) string { return filepath.Join(c.Dir, gw, "hagate.sock") }

func (c *Cluster) writeConfig(k, n int) error {
	gw := netlab.Gateway(k)
	dir := filepath.Join(c.Dir, gw)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	key := Key
	if v, ok := c.opts.Keys[gw]; ok {
		key = v
	}
	if err := os.WriteFile(filepath.Join(dir, "cluster.key"), []byte(key+"\n"), 0o600); err != nil {
		return err
	}
	peers := func(link string) string {
		var ps []string
		for j := 1; j <= n; j++ {
			if j != k {
				p, _ := netlab.GatewayAddr(j, link)
				ps = append(ps, p.Addr().String())
			}
		}
		return "[" + strings.Join(ps, ", ") + "]"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "node_id: %s\ngroup_id: 7\npriority: %d\noverride: %v\n", gw, c.opts.Priorities[k-1], c.opts.Override)
	fmt.Fprintf(&b, "uptime_margin: %s\nhello_holddown: %s\n", c.opts.UptimeMargin, c.opts.Holddown)
	fmt.Fprintf(&b, "key_file: %s\ncontrol_socket: %s\nstate_dir: %s\n", filepath.Join(dir, "cluster.key"), c.Socket(gw), dir)
	fmt.Fprintf(&b, "notify: %s\n", c.notifyScript(dir))
	fmt.Fprintf(&b, "heartbeat:\n  interval: %s\n  lost_threshold: %d\n", c.opts.Interval, c.opts.LostThreshold)
	if c.opts.HeartbeatRealtime != 0 {
		fmt.Fprintf(&b, "  realtime_priority: %d\n", c.opts.HeartbeatRealtime)
	}
	b.WriteString("  links:\n")
	fmt.Fprintf(&b, "    - interface: %s\n      priority: 100\n      peers: %s\n", netlab.HA, peers(netlab.HA))
	if c.opts.HA2 {
		fmt.Fprintf(&b, "    - interface: %s\n      priority: 50\n      peers: %s\n", netlab.HA2, peers(netlab.HA2))
	}
	fmt.Fprintf(&b, "monitor: [%s, %s]\n", netlab.LAN, netlab.WAN)
	if c.Lab.Transparent() {
		// One management address on the bridge; the ports carry none.
		fmt.Fprintf(&b, "virtual_ips:\n  - interface: %s\n    address: %s\n", netlab.Bridge, netlab.LANVIP)
		fmt.Fprintf(&b, "transparent:\n  bridge: %s\n  ports: [%s, %s]\n", netlab.Bridge, netlab.LAN, netlab.WAN)
	} else {
		fmt.Fprintf(&b, "virtual_ips:\n  - interface: %s\n    address: %s\n  - interface: %s\n    address: %s\n",
			netlab.LAN, netlab.LANVIP, netlab.WAN, netlab.WANVIP)
	}
	if c.opts.IPv6 {
		fmt.Fprintf(&b, "  - interface: %s\n    address: %s\n  - interface: %s\n    address: %s\n",
			netlab.LAN, netlab.LANVIP6, netlab.WAN, netlab.WANVIP6)
	}
	fmt.Fprintf(&b, "virtual_mac: %v\ngratuitous_arp:\n  count: 3\n  interval: 500ms\n", c.opts.VirtualMAC)
	if c.opts.ConfigSync {
		b.WriteString("config_sync:\n  enabled: true\n")
	}
	b.WriteString(c.opts.Extra)
	return os.WriteFile(c.ConfigPath(gw), []byte(b.String()), 0o600)
}

// notifyScript writes a notify command that appends each role change to
// roles.log, so tests can check the notify hook ran.
func (c *Cluster) notifyScript(dir string) string {
	path := filepath.Join(dir, "notify.sh")
	// Role changes only: a checksum notification's first argument is
	// "checksum".
	script := fmt.Sprintf("#!/bin/sh\n[ \"$1\" = checksum ] && exit 0\necho \"$1 $HAGATE_KIND\" >> %s\n", filepath.Join(dir, "roles.log"))
	os.WriteFile(path, []byte(script), 0o700)
	return path
}

// UseBin makes gw's daemon, from its next Start on, the build at bin (an
// older release, say): what an upgrade or a rollback of one member does.
// The configuration stays as written.
func (c *Cluster) UseBin(gw, bin string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bins[gw] = bin
}

// Start starts gw's daemon.
func (c *Cluster) Start(gw string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	bin := c.Bin
	if b, ok := c.bins[gw]; ok {
		bin = b
	}
	if p := c.procs[gw]; p != nil {
		select {
		case <-p.done:
		default:
			return fmt.Errorf("%s already running", gw)
		}
	}
	logf, err := os.OpenFile(c.LogPath(gw), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	args := []string{bin, "run", "--config", c.ConfigPath(gw)}
	if len(c.opts.Env) > 0 {
		args = append(append([]string{"env"}, c.opts.Env...), args...)
	}
	cmd, err := c.Lab.Start(gw, logf, args...)
	if err != nil {
		logf.Close()
		return err
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	c.procs[gw] = p
	return nil
}

// StartAll starts every gateway's daemon.
func (c *Cluster) StartAll() error {
	for _, gw := range c.gws {
		if err := c.Start(gw); err != nil {
			return err
		}
	}
	return nil
}

// Stop sends SIGTERM to gw's daemon and waits for it to exit.
func (c *Cluster) Stop(gw string) error { return c.signal(gw, syscall.SIGTERM) }

// Kill kills gw's daemon at once, as a crash or power loss does.
func (c *Cluster) Kill(gw string) error { return c.signal(gw, syscall.SIGKILL) }

func (c *Cluster) signal(gw string, sig syscall.Signal) error {
	c.mu.Lock()
	p := c.procs[gw]
	c.mu.Unlock()
	if p == nil {
		return fmt.Errorf("%s not started", gw)
	}
	// ip netns exec replaces itself with the daemon (exec), so the pid is
	// the daemon's.
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not exit within 10s of %s", gw, sig)
	}
}

// Reload sends SIGHUP to gw's daemon (it rereads its key file).
func (c *Cluster) Reload(gw string) error {
	c.mu.Lock()
	p := c.procs[gw]
	c.mu.Unlock()
	if p == nil {
		return fmt.Errorf("%s not started", gw)
	}
	return p.cmd.Process.Signal(syscall.SIGHUP)
}

// WriteKey replaces gw's key file with keys, one a line.
func (c *Cluster) WriteKey(gw string, keys ...string) error {
	return os.WriteFile(filepath.Join(c.Dir, gw, "cluster.key"), []byte(strings.Join(keys, "\n")+"\n"), 0o600)
}

// Running reports whether gw's daemon runs.
func (c *Cluster) Running(gw string) bool {
	c.mu.Lock()
	p := c.procs[gw]
	c.mu.Unlock()
	if p == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Status asks gw's daemon for its status.
func (c *Cluster) Status(gw string) (daemon.Status, error) {
	var st daemon.Status
	return st, c.ask(gw, "status", &st)
}

// Sessions asks gw's daemon for its session pickup's state (`hagate
// sessions`).
func (c *Cluster) Sessions(gw string) (sessions.Stats, error) {
	var st sessions.Stats
	return st, c.ask(gw, "sessions", &st)
}

// ask sends gw's daemon a command and decodes its answer into v.
func (c *Cluster) ask(gw, command string, v any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := control.Call(ctx, c.Socket(gw), control.Request{Command: command})
	if err != nil {
		return err
	}
	if !resp.OK {
		return errors.New(resp.Error)
	}
	return resp.Decode(v)
}

// PowerOff cuts every link of gw (heartbeat link first) and kills its
// daemon: what a power loss looks like to the others. Addresses left on the
// dead gateway no longer count as held.
func (c *Cluster) PowerOff(gw string) error {
	if err := c.Lab.PowerOff(gw); err != nil {
		return err
	}
	c.mu.Lock()
	c.off[gw] = true
	c.mu.Unlock()
	return c.Kill(gw)
}

// PowerOn reconnects gw and starts its daemon again.
func (c *Cluster) PowerOn(gw string) error {
	if err := c.Lab.PowerOn(gw); err != nil {
		return err
	}
	c.mu.Lock()
	c.off[gw] = false
	c.mu.Unlock()
	return c.Start(gw)
}

// Holders lists the reachable gateways that hold the LAN virtual IP.
func (c *Cluster) Holders() []string {
	var out []string
	for _, gw := range c.gws {
		c.mu.Lock()
		off := c.off[gw]
		c.mu.Unlock()
		if !off && c.Lab.HasAddr(gw, c.vipLink(), netlab.LANVIP.String()) {
			out = append(out, gw)
		}
	}
	return out
}

// vipLink is where the LAN virtual IP goes: lan, or the bridge in a
// transparent lab.
func (c *Cluster) vipLink() string {
	if c.Lab.Transparent() {
		return netlab.Bridge
	}
	return netlab.LAN
}

// WaitHolder waits until exactly one gateway holds the LAN virtual IP and,
// if want is not empty, that it is want.
func (c *Cluster) WaitHolder(timeout time.Duration, want string) (string, error) {
	var got []string
	err := netlab.WaitFor(timeout, 20*time.Millisecond, func() (bool, error) {
		got = c.Holders()
		return len(got) == 1 && (want == "" || got[0] == want), nil
	})
	if err != nil {
		return "", fmt.Errorf("virtual IP holders %v, want exactly one%s: %w", got, map[bool]string{true: " (" + want + ")", false: ""}[want != ""], err)
	}
	return got[0], nil
}

// Log returns gw's daemon log.
func (c *Cluster) Log(gw string) string {
	b, _ := os.ReadFile(c.LogPath(gw))
	return string(b)
}

// Roles returns what gw's notify command recorded, one role change a line.
func (c *Cluster) Roles(gw string) string {
	b, _ := os.ReadFile(filepath.Join(c.Dir, gw, "roles.log"))
	return string(b)
}

// Close stops every daemon (SIGTERM).
func (c *Cluster) Close() {
	for _, gw := range c.gws {
		if c.Running(gw) {
			c.Stop(gw)
		}
	}
}
