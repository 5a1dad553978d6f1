// Package cli owns the hagate command line: parsing the subcommands, running
// the daemon, and asking the running daemon over its control socket.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/hagate/hagate/internal/config"
	"github.com/hagate/hagate/internal/control"
	"github.com/hagate/hagate/internal/daemon"
	"github.com/hagate/hagate/internal/netif"
)

// Exit codes.
const (
	exitOK     = 0
	exitFail   = 1
	exitConfig = 2 // a bad configuration or bad usage
)

// DefaultConfig is where hagate looks for its configuration.
const DefaultConfig = "/etc/hagate/hagate.yaml"

// Version is set at build time.
var Version = "dev"

const usage = `usage: hagate COMMAND [--config FILE] [flags]

commands:
  run            run this cluster member in the foreground
  status         show the cluster as this member sees it (like get system ha status)
  history        show the last election events (like diagnose sys ha history read)
  failover       make this member step down and rank last until --unset (execute ha failover set)
  reset-uptime   reset this member's HA uptime (diagnose sys ha reset-uptime)
  sessions       show session pickup: counts, last bulk sync, sync lag
  release        remove this member's virtual IPs (after a crash; the systemd unit runs it)
  check-config   validate the configuration file and exit
  version        print the version

common flags:
  --config FILE  configuration file (default ` + DefaultConfig + `)
  --json         machine-readable output (status, history, sessions)
`

// Main runs the command line and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return exitConfig
		}
		return exitOK
	}
	cmd, rest := args[0], args[1:]
	fs := flag.NewFlagSet("hagate "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", DefaultConfig, "configuration file")
	asJSON := fs.Bool("json", false, "JSON output")
	unset := fs.Bool("unset", false, "failover: rank normally again")
	count := fs.Int("count", 50, "history: how many events")
	if err := fs.Parse(rest); err != nil {
		return exitConfig
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "hagate %s: unexpected argument %q\n", cmd, fs.Arg(0))
		return exitConfig
	}
	if cmd == "version" {
		fmt.Fprintln(stdout, "hagate", Version)
		return exitOK
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "hagate: %v\n", err)
		return exitConfig
	}
	switch cmd {
	case "check-config":
		fmt.Fprintf(stdout, "%s: OK (node %s, group %d, %d heartbeat links, %d virtual IPs)\n",
			*cfgPath, cfg.NodeID, cfg.GroupID, len(cfg.Heartbeat.Links), len(cfg.VirtualIPs))
		return exitOK
	case "run":
		return run(cfg, stderr)
	case "release":
		return release(cfg, stdout, stderr)
	case "status":
		return ask(cfg, stdout, stderr, control.Request{Command: "status"}, *asJSON, printStatus)
	case "history":
		return ask(cfg, stdout, stderr, control.Request{Command: "history", Args: map[string]string{"count": strconv.Itoa(*count)}}, *asJSON, printHistory)
	case "failover":
		req := control.Request{Command: "failover"}
		if *unset {
			req.Args = map[string]string{"unset": "true"}
		}
		return ask(cfg, stdout, stderr, req, *asJSON, printStatus)
	case "reset-uptime":
		return ask(cfg, stdout, stderr, control.Request{Command: "reset-uptime"}, *asJSON, printStatus)
	case "sessions":
		return ask(cfg, stdout, stderr, control.Request{Command: "sessions"}, *asJSON, printSessions)
	}
	fmt.Fprintf(stderr, "hagate: unknown command %q\n\n%s", cmd, usage)
	return exitConfig
}

func run(cfg *config.Config, stderr io.Writer) int {
	level := map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}[cfg.LogLevel]
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	d, err := daemon.New(cfg, log)
	if err != nil {
		log.Error("cannot start", "err", err)
		return exitConfig
	}
	if err := d.Run(ctx); err != nil {
		log.Error("hagate stopped", "err", err)
		return exitFail
	}
	return exitOK
}

// release removes the virtual IPs a member holds. A running daemon's control
// socket answering means it is alive: then it is left alone.
func release(cfg *config.Config, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := control.Call(ctx, cfg.ControlSocket, control.Request{Command: "status"}); err == nil {
		fmt.Fprintln(stderr, "hagate release: the daemon is running; it manages the addresses itself")
		return exitFail
	}
	h, err := netif.New()
	if err != nil {
		fmt.Fprintf(stderr, "hagate release: %v\n", err)
		return exitFail
	}
	defer h.Close()
	code := exitOK
	for _, v := range cfg.VirtualIPs {
		if err := h.DelAddress(v.Interface, v.Address); err != nil {
			fmt.Fprintf(stderr, "hagate release: %v\n", err)
			code = exitFail
			continue
		}
		fmt.Fprintf(stdout, "released %s on %s\n", v.Address, v.Interface)
	}
	return code
}

// ask sends req to the running daemon and prints the answer.
func ask(cfg *config.Config, stdout, stderr io.Writer, req control.Request, asJSON bool, print func(io.Writer, json.RawMessage) error) int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := control.Call(ctx, cfg.ControlSocket, req)
	if err != nil {
		fmt.Fprintf(stderr, "hagate: %v\n", err)
		return exitFail
	}
	if !resp.OK {
		fmt.Fprintf(stderr, "hagate: %s\n", resp.Error)
		return exitFail
	}
	if asJSON {
		stdout.Write(resp.Data)
		fmt.Fprintln(stdout)
		return exitOK
	}
	if err := print(stdout, resp.Data); err != nil {
		fmt.Fprintf(stderr, "hagate: %v\n", err)
		return exitFail
	}
	return exitOK
}

var errNoData = errors.New("empty answer from the daemon")

func decode[T any](data json.RawMessage) (T, error) {
	var v T
	if len(data) == 0 {
		return v, errNoData
	}
	err := json.Unmarshal(data, &v)
	return v, err
}
