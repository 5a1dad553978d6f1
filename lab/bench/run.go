package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hagate/hagate/lab/echo"
	"github.com/hagate/hagate/lab/harness"
	"github.com/hagate/hagate/lab/netlab"
)

// env is what every run shares: the binaries and a scratch directory.
type env struct {
	self  string // this program, re-executed in the namespaces
	hgBin string // the hagate daemon
	dir   string
	hg    hgSettings // hagate's settings (sysHG)
	// realtime: the daemons' SCHED_RR priority, 0 for normal scheduling.
	realtime int
	// churnHeld: session_pickup.install_delay of sysHGHeld.
	churnHeld time.Duration
	members   int // gateways in the lab
	logf      func(format string, args ...any)
}

// Systems in the order of the table's columns.
const (
	sysHG  = "hagate"
	sysKAD = "keepalived+conntrackd"
	// sysHGHeld is hagate whose subordinates hold new sessions back from
	// their kernel (session_pickup.install_delay): the churn scenario's
	// second hagate, like for like with conntrackd's external cache.
	sysHGHeld = "hagate+install_delay"
)

var systemNames = []string{sysHG, sysKAD}

// run is one lab with one system in it.
type run struct {
	e   *env
	l   *netlab.Lab
	sys System
	dir string
}

// newRun builds a two-gateway lab, starts the echo server in it and
// prepares (but does not start) the system's daemons.
func (e *env) newRun(system string, t Tuning) (*run, error) {
	dir, err := os.MkdirTemp(e.dir, "run")
	if err != nil {
		return nil, err
	}
	l, err := netlab.New(netlab.Options{Prefix: "hgbench", Gateways: max(e.members, 2), Logf: e.logf})
	if err != nil {
		return nil, err
	}
	r := &run{e: e, l: l, dir: dir}
	out, err := os.Create(filepath.Join(dir, "echo-server.log"))
	if err != nil {
		r.close()
		return nil, err
	}
	if _, err := l.Start(netlab.Server, out, harness.EchoBin(e.hgBin), "serve", ":7000"); err != nil {
		out.Close()
		r.close()
		return nil, err
	}
	switch system {
	case sysHG:
		r.sys, err = newHG(l, e.hgBin, dir, t, e.hg)
	case sysHGHeld:
		held := e.hg
		held.installDelay = e.churnHeld
		r.sys, err = newHG(l, e.hgBin, dir, t, held)
	case sysKAD:
		r.sys = newKAD(l, dir, t)
	default:
		err = fmt.Errorf("unknown system %q", system)
	}
	if err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

func (r *run) close() {
	if r.sys != nil {
		r.sys.Close()
	}
	if err := r.l.Close(); err != nil {
		r.e.logf("closing lab: %v", err)
	}
}

// start starts gw's daemons, at real-time priority when the run asks.
// Every thread of every daemon process gets it (chrt -a), keepalived's
// and conntrackd's as hagate's: the comparison stays like for like.
func (r *run) start(gw string) error {
	if err := r.sys.Start(gw); err != nil {
		return err
	}
	if r.e.realtime == 0 {
		return nil
	}
	_, all, err := r.sys.Daemons(gw)
	if err != nil {
		return fmt.Errorf("%s: daemons for real-time priority: %w", gw, err)
	}
	for _, p := range all {
		if out, err := exec.Command("chrt", "-a", "-r", "-p", strconv.Itoa(r.e.realtime), strconv.Itoa(p.PID)).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: chrt %s (%d): %w: %s", gw, p.Comm, p.PID, err, out)
		}
	}
	return nil
}

// startAll starts both gateways and waits for gw1 to be primary and the
// cluster to settle.
func (r *run) startAll(timeout time.Duration) error {
	for _, gw := range r.l.Gateways() {
		if err := r.start(gw); err != nil {
			return err
		}
	}
	if err := waitPrimary(r.l, "gw1", timeout); err != nil {
		return err
	}
	time.Sleep(time.Second)
	return nil
}

// client is a running echo client in the client namespace.
type client struct {
	cmd    *exec.Cmd
	result chan clientResult
}

type clientResult struct {
	tr  echo.Report
	err error
}

// startClient starts the echo client (hagate-echo, one TCP connection
// that it replaces if it breaks or stalls for stall, a sample per record)
// for duration and waits until its session works.
//
// With a datagram interval (not 0), the client sends one UDP flow, a
// datagram every interval, instead.
func (r *run) startClient(duration, stall, datagrams time.Duration) (*client, error) {
	args := []string{harness.EchoBin(r.e.hgBin), "client", "-for", duration.String(), "-stall", stall.String(), "-drain", "3s", "-reconnect", "-samples", "-ready"}
	if datagrams > 0 {
		args = append(args, "-udp", "-interval", datagrams.String())
	}
	args = append(args, netlab.ServerAddr.Addr().String()+":7000")
	cmd := r.l.Command(netlab.Client, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("echo client: %w", err)
	}
	c := &client{cmd: cmd, result: make(chan clientResult, 1)}
	ready := make(chan struct{})
	go func() {
		br := bufio.NewReader(stdout)
		line, err := br.ReadString('\n')
		if err == nil && strings.TrimSpace(line) == echo.ReadyLine {
			close(ready)
		}
		var tr echo.Report
		derr := json.NewDecoder(br).Decode(&tr)
		werr := cmd.Wait()
		if derr != nil {
			derr = fmt.Errorf("echo client: %w (exit %v: %s)", derr, werr, strings.TrimSpace(stderr.String()))
		}
		c.result <- clientResult{tr, derr}
	}()
	select {
	case <-ready:
		return c, nil
	case res := <-c.result:
		return nil, fmt.Errorf("echo client never got an echo: %v", res.err)
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		return nil, errors.New("echo client: no echo within 10s")
	}
}

// wait returns the client's report, killing it if it overruns timeout.
func (c *client) wait(timeout time.Duration) (echo.Report, error) {
	select {
	case res := <-c.result:
		return res.tr, res.err
	case <-time.After(timeout):
		c.cmd.Process.Kill()
		res := <-c.result
		return res.tr, fmt.Errorf("echo client overran %s: %v", timeout, res.err)
	}
}

// fill creates n synthetic sessions in gw's conntrack table.
func (r *run) fill(ctx context.Context, gw string, n int) (time.Duration, error) {
	p, err := dialNS(r.l.NS(gw), 4)
	if err != nil {
		return 0, err
	}
	defer p.Close()
	start := time.Now()
	done, err := p.Create(ctx, 0, n)
	if err != nil {
		return 0, fmt.Errorf("filling %s: %d of %d created: %w", gw, done, n, err)
	}
	return time.Since(start), nil
}

// approxCounter is a system with a cheap count of a gateway's synced
// sessions that may run a handful ahead of Synced (hagate's: a read of the
// namespace's conntrack count, less the entries there were at its start).
type approxCounter interface {
	approxSynced(gw string) (int, error)
}

// waitSynced waits until gw's daemon holds at least n synced sessions and
// returns how long that took from start, with the (time, count) samples
// seen on the way. Where the system has a cheap count it polls that every
// few milliseconds and asks Synced only to confirm the end: Synced may
// dump the table, which on a busy machine takes long enough to sample a
// bulk coarsely and slows the very bulk it watches. The time is then that
// of the cheap count that reached n, not of the confirmation's end: a dump
// walks the host-wide table, every namespace's entries, and would add tens
// of milliseconds that are the benchmark's own.
func (r *run) waitSynced(gw string, n int, start time.Time, timeout time.Duration) (time.Duration, []Point, error) {
	var pts []Point
	var last int
	var took time.Duration
	ac, cheap := r.sys.(approxCounter)
	poll := 25 * time.Millisecond
	if cheap {
		poll = 2 * time.Millisecond
	}
	err := netlab.WaitFor(timeout, poll, func() (bool, error) {
		var got int
		var err error
		var at time.Duration
		if cheap {
			got, err = ac.approxSynced(gw)
			at = time.Since(start)
			if err == nil && got >= n {
				got, err = r.sys.Synced(gw)
			}
		} else {
			got, err = r.sys.Synced(gw)
			at = time.Since(start)
		}
		if err != nil {
			return false, nil // the daemon may not answer yet
		}
		last = got
		// The chart needs no more than a sample every 20 ms.
		if len(pts) == 0 || got >= n || at.Seconds()-pts[len(pts)-1].X >= 0.02 {
			pts = append(pts, Point{at.Seconds(), float64(got)})
		}
		took = at
		return got >= n, nil
	})
	if err != nil {
		return 0, pts, fmt.Errorf("%s holds %d of %d sessions: %w", gw, last, n, err)
	}
	return took, pts, nil
}
