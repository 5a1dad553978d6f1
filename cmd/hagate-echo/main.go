// Command hagate-echo is the lab's long-lived TCP session (package echo):
// `hagate-echo serve :7000` echoes; `hagate-echo client ADDR` sends a
// numbered message every 50 ms until SIGTERM or -for, then prints its report
// as JSON. The tests and the demo run it inside lab namespaces.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hagate/hagate/internal/echo"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: hagate-echo serve ADDR | client [-interval 50ms] [-for 0] [-progress] ADDR")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	switch os.Args[1] {
	case "serve":
		ln, err := net.Listen("tcp", os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if err := echo.Serve(ctx, ln); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	case "client":
		fs := flag.NewFlagSet("client", flag.ExitOnError)
		interval := fs.Duration("interval", 50*time.Millisecond, "time between messages")
		dur := fs.Duration("for", 0, "run this long (0: until SIGTERM)")
		progress := fs.Duration("progress", 0, "print the report so far this often (0: only at the end)")
		fs.Parse(os.Args[2:])
		if dur := *dur; dur > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, dur)
			defer cancel()
		}
		var c echo.Client
		if *progress > 0 {
			go func() {
				t := time.NewTicker(*progress)
				defer t.Stop()
				for {
					select {
					case <-ctx.Done():
						return
					case <-t.C:
						b, _ := json.Marshal(c.Snapshot())
						fmt.Println(string(b))
					}
				}
			}()
		}
		r := c.Run(ctx, fs.Arg(0), *interval)
		b, _ := json.Marshal(r)
		fmt.Println(string(b))
		if !r.Survived {
			os.Exit(1)
		}
	default:
		fmt.Fprintln(os.Stderr, "hagate-echo: unknown mode", os.Args[1])
		os.Exit(2)
	}
}
