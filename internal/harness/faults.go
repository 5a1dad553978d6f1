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
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/hagate/hagate/internal/lab"
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

// InNamespace runs f on an OS thread that has entered gw's network
// namespace (any lab node name works: "gw1", "client", ...). Sockets f
// creates stay in that namespace for their whole life, wherever they are
// used afterwards, so f only needs to open them. The thread is thrown away
// when f returns, so no other goroutine ever runs in the namespace.
func (c *Cluster) InNamespace(node string, f func() error) error {
	return inNamespace(c.Lab, node, f)
}

func inNamespace(l *lab.Lab, node string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the runtime ends a thread whose goroutine exits
		// while locked to it, so the namespace switch cannot leak into the
		// thread pool even if restoring would have failed.
		runtime.LockOSThread()
		h, err := netns.GetFromName(l.NS(node))
		if err != nil {
			errc <- fmt.Errorf("namespace of %s: %w", node, err)
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			errc <- fmt.Errorf("enter namespace of %s: %w", node, err)
			return
		}
		errc <- f()
	}()
	return <-errc
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
	want := lab.LANVIP.Addr()
	for _, gw := range w.c.gws {
		w.c.mu.Lock()
		off := w.c.off[gw]
		w.c.mu.Unlock()
		if off {
			continue
		}
		h := w.handles[gw]
		link, err := h.LinkByName(lab.LAN)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", gw, lab.LAN, err)
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
