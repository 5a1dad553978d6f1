package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hagate/hagate/lab/netlab"
)

// kad is keepalived (VRRPv3, both virtual IPs in one sync group, unicast
// adverts over the LAN and WAN links) with conntrackd (FTFW over the HA
// link, external cache) glued by the notify script of conntrack-tools'
// doc/sync/primary-backup.sh: what Linux users run today.
type kad struct {
	l      *netlab.Lab
	dir    string
	advert string // advert_int, seconds
	udp    bool   // conntrackd syncs UDP as well as TCP
	mu     sync.Mutex
	procs  map[string][]*exec.Cmd
	logs   map[string][]io.Closer
}

// Adverts: keepalived's default, and the tuned value. VRRPv3 counts the
// interval in centiseconds; 0.05 s gives a master-down interval of
// 3 x 0.05 s plus a skew of (256 - priority) / 256 x 0.05 s, about the
// 150-200 ms of hagate at 50 ms x 3.
const (
	advertDefault = "1"
	advertTuned   = "0.05"
	advertFast    = "0.01" // VRRPv3's smallest: one centisecond
)

func newKAD(l *netlab.Lab, dir string, t Tuning) *kad {
	adv := map[Tuning]string{Defaults: advertDefault, Tuned: advertTuned, Fast: advertFast}[t]
	// Datagrams are the fast tuning's subject: conntrackd syncs UDP too.
	return &kad{l: l, dir: dir, advert: adv, udp: t == Fast, procs: map[string][]*exec.Cmd{}, logs: map[string][]io.Closer{}}
}

func (k *kad) Name() string { return "keepalived+conntrackd" }
func (k *kad) Note() string { return "" }

func (k *kad) gwDir(gw string) string   { return filepath.Join(k.dir, gw) }
func (k *kad) ctdConf(gw string) string { return filepath.Join(k.gwDir(gw), "conntrackd.conf") }

// Start writes gw's configuration and starts conntrackd, then keepalived
// (whose notify script talks to conntrackd).
func (k *kad) Start(gw string) error {
	idx, other, err := gatewayIndex(k.l, gw)
	if err != nil {
		return err
	}
	d := k.gwDir(gw)
	if err := os.MkdirAll(d, 0o700); err != nil {
		return err
	}
	files := map[string]string{
		"keepalived.conf": keepalivedConf(d, idx, other, k.advert),
		"conntrackd.conf": conntrackdConf(d, idx, other, k.udp),
		"notify.sh":       notifyScript(k.ctdConf(gw), filepath.Join(d, "notify.log")),
	}
	for name, text := range files {
		mode := os.FileMode(0o600)
		if strings.HasSuffix(name, ".sh") {
			mode = 0o700
		}
		if err := os.WriteFile(filepath.Join(d, name), []byte(text), mode); err != nil {
			return err
		}
	}
	if err := k.start(gw, "conntrackd.out", "conntrackd", "-C", k.ctdConf(gw)); err != nil {
		return err
	}
	sock := filepath.Join(d, "conntrackd.ctl")
	if err := netlab.WaitFor(5*time.Second, 10*time.Millisecond, func() (bool, error) {
		_, err := os.Stat(sock)
		return err == nil, nil
	}); err != nil {
		return fmt.Errorf("conntrackd on %s: no control socket: %w", gw, err)
	}
	return k.start(gw, "keepalived.out", "keepalived", "--dont-fork", "--log-console", "--log-detail", "--vrrp",
		"--use-file", filepath.Join(d, "keepalived.conf"),
		"--pid", filepath.Join(d, "keepalived.pid"),
		"--vrrp_pid", filepath.Join(d, "vrrp.pid"),
		"--checkers_pid", filepath.Join(d, "checkers.pid"))
}

func (k *kad) start(gw, logName string, args ...string) error {
	f, err := os.OpenFile(filepath.Join(k.gwDir(gw), logName), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd, err := k.l.Start(gw, f, args...)
	if err != nil {
		f.Close()
		return err
	}
	k.mu.Lock()
	k.procs[gw] = append(k.procs[gw], cmd)
	k.logs[gw] = append(k.logs[gw], f)
	k.mu.Unlock()
	go cmd.Wait()
	return nil
}

// Kill kills keepalived's VRRP child first (so that its parent cannot
// make it leave cleanly), then keepalived and conntrackd.
func (k *kad) Kill(gw string) error {
	if b, err := os.ReadFile(filepath.Join(k.gwDir(gw), "vrrp.pid")); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	k.mu.Lock()
	cmds := k.procs[gw]
	k.procs[gw] = nil
	k.mu.Unlock()
	for _, c := range cmds {
		c.Process.Kill()
	}
	return nil
}

// Close kills every daemon: the lab is thrown away after each run, so
// there is nothing to leave cleanly.
func (k *kad) Close() {
	for _, gw := range k.l.Gateways() {
		k.Kill(gw)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, fs := range k.logs {
		for _, f := range fs {
			f.Close()
		}
	}
	k.logs = map[string][]io.Closer{}
}

// ctdStats runs `conntrackd -s` on gw and returns the current entries of
// the internal and external caches.
func (k *kad) ctdStats(gw string) (internal, external int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := k.l.ExecContext(ctx, gw, "conntrackd", "-C", k.ctdConf(gw), "-s")
	if err != nil {
		return 0, 0, err
	}
	return parseCtdStats(out)
}

var ctdCacheRE = regexp.MustCompile(`cache (internal|external):\s*\ncurrent active connections:\s*(\d+)`)

// parseCtdStats reads the current entries of both caches from the output
// of `conntrackd -s`.
func parseCtdStats(out string) (internal, external int, err error) {
	found := 0
	for _, m := range ctdCacheRE.FindAllStringSubmatch(out, -1) {
		n, _ := strconv.Atoi(m[2])
		if m[1] == "internal" {
			internal = n
		} else {
			external = n
		}
		found++
	}
	if found != 2 {
		return 0, 0, fmt.Errorf("conntrackd -s: caches not found in %q", out)
	}
	return internal, external, nil
}

// Synced is the size of gw's external cache: what conntrackd -c commits
// to the kernel at a takeover.
func (k *kad) Synced(gw string) (int, error) {
	_, ext, err := k.ctdStats(gw)
	return ext, err
}

func (k *kad) Daemons(gw string) (sync, all []procInfo, err error) {
	all, err = nsProcs(k.l.NS(gw), "conntrackd", "keepalived")
	for _, p := range all {
		if p.Comm == "conntrackd" {
			sync = append(sync, p)
		}
	}
	return sync, all, err
}

// NotifyLog returns what gw's notify script recorded.
func (k *kad) NotifyLog(gw string) string {
	b, _ := os.ReadFile(filepath.Join(k.gwDir(gw), "notify.log"))
	return string(b)
}

// gatewayIndex returns gw's 1-based index and the other gateway's (the
// benchmark's labs have two).
func gatewayIndex(l *netlab.Lab, gw string) (idx, other int, err error) {
	gws := l.Gateways()
	if len(gws) != 2 {
		return 0, 0, fmt.Errorf("benchmark lab has %d gateways, want 2", len(gws))
	}
	switch gw {
	case gws[0]:
		return 1, 2, nil
	case gws[1]:
		return 2, 1, nil
	}
	return 0, 0, fmt.Errorf("no gateway %q", gw)
}
