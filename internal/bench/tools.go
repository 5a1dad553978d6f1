package bench

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// Hidden subcommands: the benchmark re-executes its own binary inside the
// lab's namespaces (ip netns exec) to run the echo server and the
// measurement client there.
const (
	cmdEchoServer = "echo-server"
	cmdEchoClient = "echo-client"
	cmdFill       = "fill"
)

// readyLine is what the echo client prints once its session works.
const readyLine = "READY"

// runTool runs a hidden subcommand; ok is false if args name none.
func runTool(ctx context.Context, args []string, stdout io.Writer) (code int, ok bool) {
	if len(args) == 0 {
		return 0, false
	}
	var err error
	switch args[0] {
	case cmdEchoServer:
		err = toolEchoServer(ctx, args[1:])
	case cmdEchoClient:
		err = toolEchoClient(ctx, args[1:], stdout)
	case cmdFill:
		err = toolFill(ctx, args[1:], stdout)
	default:
		return 0, false
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "hagate-bench %s: %v\n", args[0], err)
		return 1, true
	}
	return 0, true
}

func toolEchoServer(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet(cmdEchoServer, flag.ContinueOnError)
	listen := fs.String("listen", ":7000", "address to listen on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	return ServeEcho(ctx, ln)
}

func toolEchoClient(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet(cmdEchoClient, flag.ContinueOnError)
	var cfg ClientConfig
	fs.StringVar(&cfg.Addr, "addr", "203.0.113.100:7000", "echo server")
	fs.DurationVar(&cfg.Interval, "interval", 50*time.Millisecond, "time between records")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "sending time")
	fs.DurationVar(&cfg.Drain, "drain", 3*time.Second, "wait for outstanding echoes")
	fs.DurationVar(&cfg.Stall, "stall", 10*time.Second, "give a connection up after this long without echo")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.Ready = func() { fmt.Fprintln(stdout, readyLine) }
	tr, err := RunClient(ctx, cfg)
	if err != nil {
		return err
	}
	return json.NewEncoder(stdout).Encode(tr)
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
