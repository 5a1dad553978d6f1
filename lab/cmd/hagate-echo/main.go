// Command hagate-echo is the lab's long-lived session (package echo):
// `hagate-echo serve :7000` echoes TCP and UDP on that port;
// `hagate-echo client ADDR` keeps one TCP connection (or, with -udp, one
// UDP flow) to ADDR and sends a numbered record every 50 ms until SIGTERM
// or -for, then prints its report as JSON (exit status 1 if the session did
// not survive). The tests, the demo and the benchmarks run it inside lab
// namespaces.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hagate/hagate/lab/echo"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: hagate-echo serve ADDR | client [-udp] [-interval 50ms] [-for 0] [-progress 0] [-drain 1s] [-stall 0] [-reconnect] [-samples] [-ready] ADDR")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	switch os.Args[1] {
	case "serve":
		logf := func(f string, a ...any) { fmt.Fprintf(os.Stderr, "hagate-echo: "+f+"\n", a...) }
		if err := echo.ListenAndServe(ctx, os.Args[2], logf); err != nil {
			fmt.Fprintln(os.Stderr, "hagate-echo:", err)
			os.Exit(1)
		}
	case "client":
		os.Exit(client(ctx, os.Args[2:]))
	default:
		fmt.Fprintln(os.Stderr, "hagate-echo: unknown mode", os.Args[1])
		os.Exit(2)
	}
}

func client(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("client", flag.ExitOnError)
	var cfg echo.Config
	udp := fs.Bool("udp", false, "one UDP flow instead of a TCP connection")
	fs.DurationVar(&cfg.Interval, "interval", 50*time.Millisecond, "time between records")
	fs.DurationVar(&cfg.Duration, "for", 0, "send this long (0: until SIGTERM)")
	fs.DurationVar(&cfg.Drain, "drain", time.Second, "then wait this long at most for the last echoes")
	fs.DurationVar(&cfg.Stall, "stall", 0, "TCP: give a connection up after this long without echo (0: never)")
	fs.BoolVar(&cfg.Reconnect, "reconnect", false, "TCP: open a new connection when one breaks or stalls")
	fs.BoolVar(&cfg.Samples, "samples", false, "put every record's send and echo time in the final report")
	progress := fs.Duration("progress", 0, "print the report so far this often (0: only at the end)")
	ready := fs.Bool("ready", false, "print "+echo.ReadyLine+" at the first echo")
	fs.Parse(args)
	cfg.Addr = fs.Arg(0)
	if *udp {
		cfg.Network = "udp"
	}
	out := json.NewEncoder(os.Stdout)
	if *ready {
		cfg.Ready = func() { fmt.Println(echo.ReadyLine) }
	}
	var c echo.Client
	pctx, cancel := context.WithCancel(ctx)
	progressed := make(chan struct{})
	go func() {
		defer close(progressed)
		if *progress > 0 {
			t := time.NewTicker(*progress)
			defer t.Stop()
			for {
				select {
				case <-pctx.Done():
					return
				case <-t.C:
					out.Encode(c.Snapshot())
				}
			}
		}
	}()
	r := c.Run(ctx, cfg)
	// The final report must be the last line: progress stops first.
	cancel()
	<-progressed
	out.Encode(r)
	if !r.Survived {
		return 1
	}
	return 0
}
