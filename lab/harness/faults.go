package harness

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/hagate/hagate/lab/echo"
	"github.com/hagate/hagate/lab/netlab"

	"github.com/hagate/hagate/internal/nstest"
)

// MetricsPort is where MetricsExtra makes every daemon serve its metrics,
// on the loopback address of its gateway's namespace (each namespace has
// its own loopback, so every gateway uses the same port).
const MetricsPort = 9703

// MetricsExtra is the configuration text (for Options.Extra) that turns on
// the metrics endpoint Scrape reads.
func MetricsExtra() string {
	return fmt.Sprintf("metrics_listen: 127.0.0.1:%d\n", MetricsPort)
}

// InNamespace runs f on an OS thread that has entered node's network
// namespace (any lab node name works: "gw1", "client", ...). Sockets f
// creates stay in that namespace for their whole life, wherever they are
// used afterwards, so f only needs to open them. f must not start
// goroutines that create sockets: they may run on other threads.
func (c *Cluster) InNamespace(node string, f func() error) error {
	if err := nstest.Do(c.Lab.NS(node), f); err != nil {
		return fmt.Errorf("in %s: %w", node, err)
	}
	return nil
}

// ListenUDP opens a UDP socket bound to addr inside node's namespace.
func (c *Cluster) ListenUDP(node string, addr netip.AddrPort) (*net.UDPConn, error) {
	var conn *net.UDPConn
	err := c.InNamespace(node, func() error {
		var err error
		conn, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen udp %s in %s: %w", addr, node, err)
	}
	return conn, nil
}

// DialTCP opens a TCP connection from inside node's namespace.
func (c *Cluster) DialTCP(ctx context.Context, node string, addr netip.AddrPort) (net.Conn, error) {
	var conn net.Conn
	err := c.InNamespace(node, func() error {
		var err error
		var d net.Dialer
		conn, err = d.DialContext(ctx, "tcp", addr.String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dial %s from %s: %w", addr, node, err)
	}
	return conn, nil
}

// DaemonPID returns the process id of gw's running daemon, 0 if it does not
// run. `ip netns exec` execs the daemon, so the started process is it.
func (c *Cluster) DaemonPID(gw string) int {
	c.mu.Lock()
	p := c.procs[gw]
	c.mu.Unlock()
	if p == nil || !c.Running(gw) {
		return 0
	}
	return p.cmd.Process.Pid
}

// CPUTime returns the user plus system CPU time a process has used so far,
// from /proc/PID/stat.
func CPUTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("cpu time: %w", err)
	}
	// The command name (field 2) is in parentheses and may contain spaces:
	// count fields after the last ')'. utime and stime are fields 14 and
	// 15, so the 12th and 13th after it.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("cpu time: unexpected /proc/%d/stat %q", pid, s)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("cpu time: short /proc/%d/stat", pid)
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("cpu time: %w", err)
	}
	// USER_HZ is 100 on every Linux architecture Go supports.
	return time.Duration(utime+stime) * (time.Second / 100), nil
}

// Samples are the series of one metrics scrape, keyed by name and labels as
// the text format writes them: `hagate_heartbeats_dropped_total{link="ha",reason="key"}`.
type Samples map[string]float64

// Sum adds up the series of a metric whose labels include every label in
// match (name="value" pairs); no match means every series of the metric.
func (s Samples) Sum(name string, match ...string) float64 {
	var sum float64
	for k, v := range s {
		base, labels, _ := strings.Cut(k, "{")
		if base != name {
			continue
		}
		ok := true
		for _, m := range match {
			if !strings.Contains(labels, m) {
				ok = false
				break
			}
		}
		if ok {
			sum += v
		}
	}
	return sum
}

// ByLabel returns a metric's values summed per value of one label, e.g.
// drops per reason.
func (s Samples) ByLabel(name, label string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range s {
		base, labels, _ := strings.Cut(k, "{")
		if base != name {
			continue
		}
		_, after, ok := strings.Cut(labels, label+`="`)
		if !ok {
			continue
		}
		val, _, _ := strings.Cut(after, `"`)
		out[val] += v
	}
	return out
}

// maxScrape bounds what ParseSamples reads.
const maxScrape = 4 << 20

// ParseSamples reads the Prometheus text exposition format: comments are
// skipped, every other line is a series and its value (a timestamp after
// the value is ignored). Lines it cannot read are skipped.
func ParseSamples(r io.Reader) (Samples, error) {
	s := Samples{}
	sc := bufio.NewScanner(io.LimitReader(r, maxScrape))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		// Label values may contain spaces: the value follows the closing
		// brace when there is one.
		rest := line
		key := ""
		if i := strings.LastIndexByte(line, '}'); i >= 0 {
			key, rest = line[:i+1], line[i+1:]
		} else {
			var ok bool
			key, rest, ok = strings.Cut(line, " ")
			if !ok {
				continue
			}
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		s[strings.TrimSpace(key)] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read metrics: %w", err)
	}
	return s, nil
}

// Scrape reads gw's metrics endpoint (the cluster must be configured with
// MetricsExtra). The endpoint listens on the loopback of gw's namespace, so
// the connection is opened from inside it.
func (c *Cluster) Scrape(ctx context.Context, gw string) (Samples, error) {
	tr := &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			ap, err := netip.ParseAddrPort(addr)
			if err != nil {
				return nil, err
			}
			return c.DialTCP(ctx, gw, ap)
		},
	}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/metrics", MetricsPort), nil)
	if err != nil {
		return nil, err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", gw, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: %s", gw, resp.Status)
	}
	s, err := ParseSamples(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", gw, err)
	}
	return s, nil
}

// AddrWatch reads which gateways hold the LAN virtual IP straight from
// netlink, a handle per gateway namespace: a poll costs a few system calls
// instead of a process per gateway, so it can run every few milliseconds
// without loading the machine it measures. Not safe for concurrent use.
type AddrWatch struct {
	c       *Cluster
	handles map[string]*netlink.Handle
}

// NewAddrWatch opens a netlink handle in every gateway's namespace. Close it
// when done.
func (c *Cluster) NewAddrWatch() (*AddrWatch, error) {
	w := &AddrWatch{c: c, handles: map[string]*netlink.Handle{}}
	for _, gw := range c.gws {
		ns, err := netns.GetFromName(c.Lab.NS(gw))
		if err != nil {
			w.Close()
			return nil, fmt.Errorf("namespace of %s: %w", gw, err)
		}
		h, err := netlink.NewHandleAt(ns)
		ns.Close()
		if err != nil {
			w.Close()
			return nil, fmt.Errorf("netlink in %s: %w", gw, err)
		}
		w.handles[gw] = h
	}
	return w, nil
}

// Holders lists the reachable gateways (not powered off) that hold the LAN
// virtual IP, like Cluster.Holders.
func (w *AddrWatch) Holders() ([]string, error) {
	var out []string
	want := netlab.LANVIP.Addr()
	for _, gw := range w.c.gws {
		w.c.mu.Lock()
		off := w.c.off[gw]
		w.c.mu.Unlock()
		if off {
			continue
		}
		h := w.handles[gw]
		link, err := h.LinkByName(netlab.LAN)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", gw, netlab.LAN, err)
		}
		addrs, err := h.AddrList(link, netlink.FAMILY_V4)
		if err != nil {
			return nil, fmt.Errorf("%s addresses: %w", gw, err)
		}
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == want {
				out = append(out, gw)
				break
			}
		}
	}
	return out, nil
}

// Close closes the netlink handles.
func (w *AddrWatch) Close() {
	for _, h := range w.handles {
		h.Close()
	}
	w.handles = nil
}

// Release runs `hagate release` in gw's namespace, as the systemd unit does
// after the daemon stopped: a daemon killed with SIGKILL leaves its virtual
// IPs behind, and this removes them.
func (c *Cluster) Release(gw string) error {
	if _, err := c.Lab.Exec(gw, c.Bin, "release", "--config", c.ConfigPath(gw)); err != nil {
		return fmt.Errorf("release %s: %w", gw, err)
	}
	return nil
}

// ClusterOptions returns the options the cluster was built with, defaults
// filled in.
func (c *Cluster) ClusterOptions() Options { return c.opts }

// sessionStall is how long a session may go without an echo before the
// soak counts it as lost: far longer than a failover with session pickup
// takes, far shorter than TCP takes to give up.
const sessionStall = 6 * time.Second

// sessionPool keeps n long-lived echo sessions open from the client to the
// server through the cluster, replacing each one that breaks.
type sessionPool struct {
	c       *Cluster
	n       int
	changes func() []time.Time // when the primary changed
	start   time.Time          // the soak's start, for times in reports
	stopc   chan struct{}
	done    chan struct{}

	live []*liveSession
	rep  SessionReport
}

type liveSession struct {
	s      *Session
	opened time.Time
}

func startSessions(ctx context.Context, c *Cluster, n int, start time.Time, changes func() []time.Time) (*sessionPool, error) {
	if err := c.StartEchoServer(); err != nil {
		return nil, fmt.Errorf("echo server: %w", err)
	}
	ss := &sessionPool{c: c, n: n, changes: changes, start: start, stopc: make(chan struct{}), done: make(chan struct{}),
		rep: SessionReport{Enabled: true}}
	// The echo server needs a moment to listen.
	time.Sleep(300 * time.Millisecond)
	for range n {
		if err := ss.open(); err != nil {
			ss.closeAll()
			return nil, err
		}
	}
	go ss.run(ctx)
	return ss, nil
}

func (ss *sessionPool) open() error {
	s, err := ss.c.StartSession(100 * time.Millisecond)
	if err != nil {
		return fmt.Errorf("session: %w", err)
	}
	ss.live = append(ss.live, &liveSession{s: s, opened: time.Now()})
	ss.rep.Opened++
	return nil
}

func (ss *sessionPool) run(ctx context.Context) {
	defer close(ss.done)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ss.stopc:
			return
		case <-tick.C:
		}
		for i, ls := range ss.live {
			r, err := ls.s.Progress()
			broken := !ls.s.Alive() || (err == nil && (r.Err != "" || r.MaxGap > sessionStall))
			if !broken {
				continue
			}
			r, _ = ls.s.Stop()
			ss.lost(ls, r, time.Now())
			ss.live[i] = nil
		}
		ss.live = slices.DeleteFunc(ss.live, func(ls *liveSession) bool { return ls == nil })
		for len(ss.live) < ss.n {
			if err := ss.open(); err != nil {
				ss.rep.Errors = append(ss.rep.Errors, err.Error())
				break
			}
		}
	}
}

// lost records a broken session. It was lost at a failover if the primary
// changed in the stall before it was declared broken.
func (ss *sessionPool) lost(ls *liveSession, r echo.Report, at time.Time) {
	ss.rep.Lost++
	window := sessionStall + 4*time.Second
	atFailover := false
	for _, ch := range ss.changes() {
		if ch.After(ls.opened) && at.Sub(ch) < window {
			atFailover = true
		}
		// Changes it outlived by more than the window were carried.
		if ch.After(ls.opened) && at.Sub(ch) >= window {
			ss.rep.Carried++
		}
	}
	if atFailover {
		ss.rep.LostAtFailover++
	}
	if len(ss.rep.Errors) < 10 {
		// Times from the soak's start, to line up with the fault log.
		rel := func(t time.Time) time.Duration { return t.Sub(ss.start).Round(time.Millisecond) }
		silent := "never echoed"
		if !r.GapAt.IsZero() {
			silent = fmt.Sprintf("silent from %s", rel(r.GapAt))
		}
		ss.rep.Errors = append(ss.rep.Errors, fmt.Sprintf("session from %s opened at %s, %s, lost at %s (%s)",
			r.Local, rel(ls.opened), silent, rel(at), r))
	}
}

// stop ends every session and returns the counts.
func (ss *sessionPool) stop() SessionReport {
	close(ss.stopc)
	<-ss.done
	now := time.Now()
	for _, ls := range ss.live {
		r, err := ls.s.Stop()
		if err != nil || !r.Survived {
			ss.lost(ls, r, now)
			continue
		}
		ss.rep.Alive++
		for _, ch := range ss.changes() {
			if ch.After(ls.opened) {
				ss.rep.Carried++
			}
		}
	}
	ss.live = nil
	return ss.rep
}

func (ss *sessionPool) closeAll() {
	for _, ls := range ss.live {
		ls.s.Stop()
	}
	ss.live = nil
}
