// Package bench owns `make bench`: hagate and keepalived + conntrackd side
// by side on the same namespace lab, in one run. It builds a fresh
// two-gateway lab for every run, starts one system's daemons in it, drives
// a long-lived TCP echo session through the virtual IP (hagate-echo, package
// echo, run inside the namespaces), injects the fault, and measures the
// gap the client sees, whether its session survived, bulk sync, churn,
// memory, and false failovers under CPU stress. It writes
// docs/benchmarks.md and an SVG chart per scenario under docs/bench/.
//
// Benchmarks measure; they never assert. The unit tests cover what needs
// no root: statistics, the SVG writer and the parsers.
package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Main runs hagate-bench with args (without the program name) and returns
// the exit code.
func Main(args []string, stdout io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if code, ok := runTool(ctx, args, stdout); ok {
		return code
	}
	cfg, err := parseFlags(args, os.Stderr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "hagate-bench: %v\n", err)
		return 2
	}
	if err := runSuite(ctx, cfg, args, stdout); err != nil {
		fmt.Fprintf(os.Stderr, "hagate-bench: %v\n", err)
		return 1
	}
	return 0
}
