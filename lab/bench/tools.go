package bench

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"
)

// Hidden subcommands of the benchmark's binary. The echo server and client
// it runs in the lab's namespaces are hagate-echo, built beside hagate.
const (
	cmdFill   = "fill"
	cmdCPUHog = "cpu-hog"
)

// runTool runs a hidden subcommand; ok is false if args name none.
func runTool(ctx context.Context, args []string, stdout io.Writer) (code int, ok bool) {
	if len(args) == 0 {
		return 0, false
	}
	var err error
	switch args[0] {
	case cmdFill:
		err = toolFill(ctx, args[1:], stdout)
	case cmdCPUHog:
		err = toolCPUHog(ctx, args[1:], stdout)
	default:
		return 0, false
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "hagate-bench %s: %v\n", args[0], err)
		return 1, true
	}
	return 0, true
}

// toolFill creates or deletes synthetic sessions in a namespace's
// conntrack table, for trying things by hand.
func toolFill(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet(cmdFill, flag.ContinueOnError)
	ns := fs.String("ns", "", "network namespace (ip netns name)")
	n := fs.Int("n", 1000, "sessions")
	workers := fs.Int("workers", 4, "netlink sockets")
	del := fs.Bool("delete", false, "delete instead of create")
	if err := fs.Parse(args); err != nil {
		return err
	}
	p, err := dialNS(*ns, *workers)
	if err != nil {
		return err
	}
	defer p.Close()
	start := time.Now()
	var done int
	if *del {
		done, err = p.Delete(ctx, 0, *n)
	} else {
		done, err = p.Create(ctx, 0, *n)
	}
	took := time.Since(start)
	fmt.Fprintf(stdout, "%d sessions in %s (%.0f/s)\n", done, took.Round(time.Millisecond), float64(done)/took.Seconds())
	return err
}
