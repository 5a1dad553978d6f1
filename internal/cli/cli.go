// Package cli owns the hagate command line: parsing the subcommands, running
// the daemon, and asking the running daemon over its control socket.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/hagate/hagate/internal/config"
	"github.com/hagate/hagate/internal/control"
	"github.com/hagate/hagate/internal/daemon"
	"github.com/hagate/hagate/internal/version"
)

// Exit codes. `hagate status` is usable as a monitoring check: 0 only when
// the member is in a healthy cluster.
const (
	exitOK      = 0
	exitFail    = 1 // the command failed (the daemon is not running, ...)
	exitConfig  = 2 // a bad configuration or bad usage
	exitWarning = 3 // status: health WARNING (a link down, a member not heard, ...)
	exitAlone   = 4 // status: no other member heard: not in a cluster
)

// DefaultConfig is where hagate looks for its configuration.
const DefaultConfig = "/etc/hagate/hagate.yaml"

// exitError carries a command's exit code. msg, when set, is printed on
// stderr prefixed with "hagate: ".
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// fail, configError and quiet build exitErrors.
func fail(err error) error        { return &exitError{code: exitFail, err: err} }
func configError(err error) error { return &exitError{code: exitConfig, err: err} }
func quiet(code int) error        { return &exitError{code: code} }

// Main runs the command line and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	root := NewCommand()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if !errors.As(err, &ee) {
		// Cobra's own errors: an unknown command, a bad flag or argument.
		// They are found before any command runs, so before any file is read.
		fmt.Fprintf(stderr, "hagate: %v\nRun 'hagate --help' for usage.\n", err)
		return exitConfig
	}
	if ee.err != nil {
		fmt.Fprintf(stderr, "hagate: %v\n", ee.err)
	}
	return ee.code
}

// options are the flags every command shares.
type options struct {
	configPath string
}

// NewCommand returns the hagate command tree. cmd/hagate-docs renders its
// man pages and shell completions from the same tree.
func NewCommand() *cobra.Command {
	o := &options{}
	root := &cobra.Command{
		Use:   "hagate",
		Short: "Active-passive high availability for Linux gateways (nftables + conntrack)",
		Long: `hagate turns two to four Linux gateways into one active-passive cluster in the
manner of FortiGate FGCP: heartbeats over dedicated HA links, an election,
virtual IPs held by the primary and session pickup (conntrack sync).

Exit codes:
  0  success; for status: healthy and in a cluster
  1  the command failed (e.g. the daemon is not running)
  2  bad configuration or bad usage (unknown command or flag)
  3  status: health WARNING (a heartbeat link down, a member not heard, ...)
  4  status: not in a cluster (no other member heard)`,
		Version:       version.String(),
		SilenceUsage:  true,
		SilenceErrors: true,
		// Without a command: the usage, as an error (a script calling plain
		// "hagate" did something wrong).
		RunE: func(cmd *cobra.Command, args []string) error {
			cmd.SetOut(cmd.ErrOrStderr())
			if err := cmd.Usage(); err != nil {
				return fail(err)
			}
			return quiet(exitConfig)
		},
	}
	root.SetVersionTemplate("hagate {{.Version}}\n")
	root.PersistentFlags().StringVarP(&o.configPath, "config", "c", DefaultConfig, "configuration file")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return configError(fmt.Errorf("%s: %w\nRun '%s --help' for usage", cmd.CommandPath(), err, cmd.CommandPath()))
	})
	root.AddCommand(
		runCommand(o),
		checkConfigCommand(o),
		statusCommand(o),
		historyCommand(o),
		failoverCommand(o),
		resetUptimeCommand(o),
		reloadCommand(o),
		sessionsCommand(o),
		checksumCommand(o),
		synchronizeCommand(o),
		releaseCommand(o),
		genkeyCommand(),
		versionCommand(),
	)
	return root
}

// load reads the configuration named by --config; a bad file exits 2.
func (o *options) load() (*config.Config, error) {
	cfg, err := config.Load(o.configPath)
	if err != nil {
		return nil, configError(err)
	}
	return cfg, nil
}

func runCommand(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "run",
		Short: "Run this cluster member in the foreground",
		Long: `Run this cluster member in the foreground, logging to stderr. SIGTERM or
SIGINT stops it; a primary hands its role over at once. The systemd unit runs
"hagate run".`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := o.load()
			if err != nil {
				return err
			}
			return run(cfg, o.configPath, cmd.ErrOrStderr())
		},
	}
}

func run(cfg *config.Config, path string, stderr io.Writer) error {
	level := new(slog.LevelVar) // a reload may change it
	level.Set(daemon.LogLevel(cfg.LogLevel))
	log := slog.New(logHandler(stderr, cfg.LogFormat, os.Getenv("JOURNAL_STREAM") != "", level))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	d, err := daemon.New(cfg, log)
	if err != nil {
		log.Error("cannot start", "err", err)
		return quiet(exitConfig)
	}
	d.ReloadFrom(path, level)
	if err := d.Run(ctx); err != nil {
		log.Error("hagate stopped", "err", err)
		return quiet(exitFail)
	}
	return nil
}

func checkConfigCommand(o *options) *cobra.Command {
	var dump bool
	cmd := &cobra.Command{
		Use:   "check-config",
		Short: "Validate the configuration file and what it names on this host",
		Long: `Validate the configuration file, then what it names on this host: the key
file (present, mode 600, valid keys), the control group and the notify
command (present, executable). Every problem names its key; exit 2 when
there is one. The systemd unit runs it before every start.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := o.load()
			if err != nil {
				return err
			}
			if err := cfg.CheckHost(); err != nil {
				return configError(fmt.Errorf("config %s: %w", o.configPath, err))
			}
			if dump {
				out, err := yaml.Marshal(cfg)
				if err != nil {
					return fmt.Errorf("dump: %w", err)
				}
				_, err = cmd.OutOrStdout().Write(out)
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: OK (node %s, group %d, %d heartbeat links, %d virtual IPs)\n",
				o.configPath, cfg.NodeID, cfg.GroupID, len(cfg.Heartbeat.Links), len(cfg.VirtualIPs))
			return nil
		},
	}
	cmd.Flags().BoolVar(&dump, "dump", false, "print the effective configuration, defaults filled in (keepalived's --dump-conf)")
	return cmd
}

func reloadCommand(o *options) *cobra.Command {
	return askCommand(o, &cobra.Command{
		Use:   "reload",
		Short: "Apply the configuration file to the running daemon (as SIGHUP)",
		Long: `Reread the configuration file and apply every setting that can change while
hagate runs (priority, override, monitored links, ping servers, virtual IPs,
gratuitous ARP, session pickup filters, notify, metrics, log level, keys),
without a role change unless the new settings call for one. A file that is
invalid, or that changes a setting fixed for the daemon's life (node_id,
group_id, heartbeat, session_pickup.enabled ...), is refused whole with the
reason, and the running configuration stays. systemctl reload does the same.`,
	}, printReload)
}

// askCommand completes cmd into one that sends the daemon the request named
// by cmd.Use, without arguments, and prints the answer with print (or as
// JSON with --json).
func askCommand(o *options, cmd *cobra.Command, print func(io.Writer, json.RawMessage) error) *cobra.Command {
	cmd.Args = cobra.NoArgs
	dc := newDaemonClient(o, cmd, true)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return dc.ask(cmd.OutOrStdout(), control.Request{Command: cmd.Name()}, print)
	}
	return cmd
}

func versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(cmd.OutOrStdout(), "hagate", version.String())
			return nil
		},
	}
}

// daemonClient asks the running daemon; its flags are those of every command
// that does.
type daemonClient struct {
	o      *options
	socket string
	asJSON bool
}

func newDaemonClient(o *options, cmd *cobra.Command, jsonFlag bool) *daemonClient {
	dc := &daemonClient{o: o}
	cmd.Flags().StringVar(&dc.socket, "socket", "", "control socket of the daemon (default: control_socket from the configuration, which is then not read)")
	if jsonFlag {
		cmd.Flags().BoolVar(&dc.asJSON, "json", false, "machine-readable output")
	}
	return dc
}

// socketPath returns --socket, else the configuration's control_socket.
func (dc *daemonClient) socketPath() (string, error) {
	if dc.socket != "" {
		return dc.socket, nil
	}
	cfg, err := dc.o.load()
	if err != nil {
		return "", err
	}
	return cfg.ControlSocket, nil
}

// call sends req to the daemon and returns its answer.
func (dc *daemonClient) call(req control.Request) (json.RawMessage, error) {
	path, err := dc.socketPath()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := control.Call(ctx, path, req)
	if err != nil {
		return nil, fail(err)
	}
	if !resp.OK {
		return nil, fail(errors.New(resp.Error))
	}
	return resp.Data, nil
}

// show prints an answer as JSON or through print.
func (dc *daemonClient) show(w io.Writer, data json.RawMessage, print func(io.Writer, json.RawMessage) error) error {
	if dc.asJSON {
		w.Write(data)
		fmt.Fprintln(w)
		return nil
	}
	if err := print(w, data); err != nil {
		return fail(err)
	}
	return nil
}

// ask is call then show, for the commands that only print the answer.
func (dc *daemonClient) ask(w io.Writer, req control.Request, print func(io.Writer, json.RawMessage) error) error {
	data, err := dc.call(req)
	if err != nil {
		return err
	}
	return dc.show(w, data, print)
}

func statusCommand(o *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the cluster as this member sees it (get system ha status)",
		Long: `Show the cluster as this member sees it, like FortiOS's get system ha status.

As a monitoring check, the exit code says:
  0  healthy and in a cluster
  1  the daemon is not running or did not answer
  2  bad configuration or usage
  3  health WARNING (the warnings are printed under "HA Health Status")
  4  not in a cluster: no other member is heard (alone, or in its hello holddown)

--socket asks the daemon without reading the configuration file, for while
it is being edited or is unreadable to the caller's group.`,
		Args: cobra.NoArgs,
	}
	dc := newDaemonClient(o, cmd, true)
	var watch bool
	var interval time.Duration
	cmd.Flags().BoolVar(&watch, "watch", false, "redraw the status every --interval, with the last events below, until interrupted")
	cmd.Flags().DurationVar(&interval, "interval", time.Second, "redraw interval of --watch")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if watch {
			if interval < 100*time.Millisecond {
				return configError(fmt.Errorf("--interval must be at least 100ms, got %s", interval))
			}
			ctx, stop := untilInterrupted()
			defer stop()
			watchStatus(ctx, cmd.OutOrStdout(), dc, interval)
			return nil
		}
		data, err := dc.call(control.Request{Command: "status"})
		if err != nil {
			return err
		}
		if err := dc.show(cmd.OutOrStdout(), data, printStatus); err != nil {
			return err
		}
		st, err := decode[daemon.Status](data)
		if err != nil {
			return fail(err)
		}
		if code := healthCode(st); code != exitOK {
			return quiet(code)
		}
		return nil
	}
	return cmd
}

// healthCode is status's exit code for st.
func healthCode(st daemon.Status) int {
	alone := true
	for _, m := range st.Members {
		if !m.Self && m.Alive {
			alone = false
		}
	}
	switch {
	case alone:
		return exitAlone
	case len(st.Warnings) > 0:
		return exitWarning
	}
	return exitOK
}

func failoverCommand(o *options) *cobra.Command {
	var unset bool
	cmd := &cobra.Command{
		Use:   "failover",
		Short: "Make this member step down and rank last until --unset (execute ha failover set)",
		Args:  cobra.NoArgs,
	}
	dc := newDaemonClient(o, cmd, true)
	cmd.Flags().BoolVar(&unset, "unset", false, "rank normally again (execute ha failover unset)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		req := control.Request{Command: "failover"}
		if unset {
			req.Args = map[string]string{"unset": "true"}
		}
		return dc.ask(cmd.OutOrStdout(), req, printStatus)
	}
	return cmd
}

func resetUptimeCommand(o *options) *cobra.Command {
	return askCommand(o, &cobra.Command{
		Use:   "reset-uptime",
		Short: "Reset this member's HA uptime (diagnose sys ha reset-uptime)",
	}, printStatus)
}

func sessionsCommand(o *options) *cobra.Command {
	return askCommand(o, &cobra.Command{
		Use:   "sessions",
		Short: "Show session pickup: counts, last bulk sync, sync lag",
	}, printSessions)
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
