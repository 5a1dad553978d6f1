// Command hagate-soak runs the chaos soak (lab/harness.Soak) against
// three real hagate daemons in a fresh namespace lab and prints what it
// injected and what it saw: faults per kind, sessions carried and lost,
// the longest dual-primary window and the no-primary windows. It needs
// root. Exit status 1 means an invariant broke, 2 that the soak could not
// run.
//
//	cd lab && go run ./cmd/hagate-soak -duration 5m [-seed N] [-pickup -sessions 8 -require-sessions] [-v]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/hagate/hagate/lab/harness"
	"github.com/hagate/hagate/lab/netlab"
)

func main() {
	os.Exit(run())
}

func run() int {
	duration := flag.Duration("duration", 5*time.Minute, "how long to inject faults")
	seed := flag.Uint64("seed", 0, "fault schedule seed (0: from the clock)")
	sessions := flag.Int("sessions", 0, "long-lived TCP sessions to keep open through the cluster (needs session pickup to survive failovers)")
	requireSessions := flag.Bool("require-sessions", false, "count a session lost at a failover as a violation")
	pickup := flag.Bool("pickup", false, "turn session pickup on in the members' configuration")
	quorum := flag.Bool("quorum", false, "turn the quorum rule on in the members' configuration and cut members off (ha-isolate faults)")
	poll := flag.Duration("poll", 20*time.Millisecond, "how often to read the virtual IP holders")
	faults := flag.String("faults", "", "comma-separated fault kinds (default all: "+kinds()+")")
	verbose := flag.Bool("v", false, "print every fault as it is injected")
	keep := flag.Bool("keep", false, "keep the daemons' logs and configuration (the directory is printed)")
	flag.Parse()

	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "hagate-soak: needs root (network namespaces)")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	opts := harness.SoakOptions{Duration: *duration, Seed: *seed, Poll: *poll, Sessions: *sessions, RequireSessions: *requireSessions, Quorum: *quorum}
	if *faults != "" {
		for _, f := range strings.Split(*faults, ",") {
			opts.Faults = append(opts.Faults, harness.FaultKind(strings.TrimSpace(f)))
		}
	}
	if *verbose {
		opts.Logf = func(format string, args ...any) { fmt.Printf(format+"\n", args...) }
	}

	dir, err := os.MkdirTemp("", "hagate-soak")
	if err != nil {
		fmt.Fprintln(os.Stderr, "hagate-soak:", err)
		return 2
	}
	if *keep {
		fmt.Println("logs and configuration in", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	bin, err := harness.Build(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "hagate-soak:", err)
		return 2
	}
	co, lo := harness.SoakClusterOptions()
	if *pickup {
		co.Extra += "session_pickup:\n  enabled: true\n"
	}
	if *quorum {
		co.Extra += harness.QuorumExtra
	}
	lo.Prefix = "hgsoak"
	lo.Logf = func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
	l, err := netlab.New(lo)
	if err != nil {
		fmt.Fprintln(os.Stderr, "hagate-soak:", err)
		return 2
	}
	defer l.Close()
	c, err := harness.New(l, bin, dir, lo.Gateways, co)
	if err != nil {
		fmt.Fprintln(os.Stderr, "hagate-soak:", err)
		return 2
	}
	defer c.Close()
	if err := c.StartAll(); err != nil {
		fmt.Fprintln(os.Stderr, "hagate-soak:", err)
		return 2
	}
	fmt.Printf("hagate-soak: 3 members, two heartbeat links, faults for %s\n", *duration)
	rep, err := harness.Soak(ctx, c, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "hagate-soak:", err)
		return 2
	}
	rep.Format(os.Stdout)
	if ctx.Err() != nil {
		fmt.Println("(interrupted)")
	}
	if rep.Err() != nil {
		if !*keep {
			fmt.Println("(run with -keep to keep the daemons' logs; repeat the schedule with -seed", rep.Seed, ")")
		}
		return 1
	}
	return 0
}

func kinds() string {
	var ks []string
	for _, k := range harness.AllFaults {
		ks = append(ks, string(k))
	}
	return strings.Join(ks, ",")
}
