// Package demo owns `make demo`: a live tour of a hagate cluster for a new
// user, on a namespace lab that it builds and removes.
package demo

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/hagate/hagate/lab/harness"
	"github.com/hagate/hagate/lab/netlab"
)

// Main runs the demo and returns the exit code.
func Main(w io.Writer) int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(w, "hagate demo: run as root (it builds network namespaces): sudo make demo")
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, w); err != nil {
		fmt.Fprintf(w, "\nhagate demo: %v\n", err)
		return 1
	}
	return 0
}

func step(w io.Writer, format string, args ...any) {
	fmt.Fprintf(w, "\n==> "+format+"\n", args...)
}

func run(ctx context.Context, w io.Writer) error {
	dir, err := os.MkdirTemp("", "hagate-demo")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	step(w, "Building hagate")
	bin, err := harness.Build(dir)
	if err != nil {
		return err
	}

	step(w, "Building the lab: client, server and three gateways in network namespaces (TEST-NET addresses)")
	l, err := netlab.New(netlab.Options{Prefix: "hgdemo", Gateways: 3, HA2: true})
	if err != nil {
		return err
	}
	defer l.Close()
	fmt.Fprintln(w, `    client 192.0.2.100 --[lan 192.0.2.0/24, VIP 192.0.2.1]-- gw1 gw2 gw3 --[wan 203.0.113.0/24, VIP 203.0.113.1]-- server 203.0.113.100
    heartbeats on ha 198.51.100.0/25 and ha2 198.51.100.128/25; priorities gw1 200, gw2 150, gw3 100; heartbeat 100ms x 5`)

	c, err := harness.New(l, bin, dir, 3, harness.Options{HA2: true, ConfigSync: true, Extra: "session_pickup:\n  enabled: true\n"})
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.StartEchoServer(); err != nil {
		return err
	}

	step(w, "Starting hagate on every gateway (hello holddown 2s)")
	if err := c.StartAll(); err != nil {
		return err
	}
	primary, err := c.WaitHolder(20*time.Second, "")
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "    %s holds the virtual IPs\n", primary)
	time.Sleep(500 * time.Millisecond)
	other := "gw2"
	if primary == "gw2" {
		other = "gw1"
	}

	step(w, "hagate status (on %s)", other)
	show(w, bin, "status", c.ConfigPath(other))

	if err := configSync(w, c, bin, primary, other); err != nil {
		return err
	}

	step(w, "The client opens one TCP session to the server through the virtual IP (source NAT, strict TCP tracking) and sends a numbered message every 50 ms")
	sess, err := c.OpenSession(50*time.Millisecond, 10*time.Second)
	if err != nil {
		return err
	}
	time.Sleep(2 * time.Second)
	step(w, "hagate sessions (on %s): the subordinates already hold the session in their kernel table", other)
	show(w, bin, "sessions", c.ConfigPath(other))

	step(w, "Power loss on the primary %s: heartbeat links cut first, then the data links; its daemon is killed", primary)
	watch := startWatch(w, sess)
	time.Sleep(time.Second)
	cut := time.Now()
	fmt.Fprintf(w, "    %s  --- power off %s ---\n", cut.Format("15:04:05.000"), primary)
	if err := c.PowerOff(primary); err != nil {
		return err
	}
	next, err := c.WaitHolder(10*time.Second, "")
	if err != nil {
		return err
	}
	took := time.Since(cut)
	time.Sleep(3 * time.Second)
	watch.stop()
	r, _ := sess.Progress()
	fmt.Fprintf(w, "\n    %s took over the virtual IPs %s after the power loss (detection: 100ms x 5 heartbeats)\n", next, took.Round(time.Millisecond))
	verdict := "SURVIVED: same TCP connection, every message echoed once, in order"
	if r.Err != "" || !sess.Alive() {
		verdict = "BROKE: " + r.Err
	}
	fmt.Fprintf(w, "    session: %s; largest gap %s -> %s\n", r, r.MaxGap.Round(time.Millisecond), verdict)

	step(w, "hagate status (on %s, the new primary)", next)
	show(w, bin, "status", c.ConfigPath(next))

	step(w, "hagate history (on %s)", next)
	show(w, bin, "history", c.ConfigPath(next), "--count", "8")

	step(w, "%s comes back: it rejoins as subordinate only if its absence exceeded uptime_margin (300s here), so with FGCP's rules its higher priority wins it back", primary)
	if err := c.PowerOn(primary); err != nil {
		return err
	}
	time.Sleep(4 * time.Second)
	holders := c.Holders()
	fmt.Fprintf(w, "    virtual IPs now held by %v\n", holders)
	show(w, bin, "status", c.ConfigPath(next))
	r, _ = sess.Stop()
	fmt.Fprintf(w, "    session after the failback: %s\n", r)

	step(w, "Done: everything the demo made is being removed")
	return nil
}

func show(w io.Writer, bin string, args ...string) {
	cmd := exec.Command(bin, append([]string{args[0], "--config"}, args[1:]...)...)
	out, err := cmd.CombinedOutput()
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		fmt.Fprintf(w, "    %s\n", line)
	}
	if err != nil {
		fmt.Fprintf(w, "    (%v)\n", err)
	}
}
