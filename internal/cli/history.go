package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/hagate/hagate/internal/control"
	"github.com/hagate/hagate/internal/history"
)

func historyCommand(o *options) *cobra.Command {
	var count int
	var stateDir string
	cmd := &cobra.Command{
		Use:   "history",
		Short: "Show the last election events (diagnose sys ha history read)",
		Long: `Show the last election events, like FortiOS's diagnose sys ha history read.

When the daemon is not running, the history is read from its file in
state_dir (history.jsonl), which survives restarts: what happened before a
crash stays readable. --state-dir names that directory without reading the
configuration.`,
		Args: cobra.NoArgs,
	}
	dc := newDaemonClient(o, cmd, true)
	cmd.Flags().IntVar(&count, "count", 50, "how many events")
	cmd.Flags().StringVar(&stateDir, "state-dir", "", "read the history file in this directory (default: state_dir from the configuration when the daemon is not running)")
	var follow bool
	cmd.Flags().BoolVar(&follow, "follow", false, "print the events oldest first, then each new one as it happens, until interrupted (asks the daemon)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if count <= 0 {
			return configError(fmt.Errorf("--count must be positive, got %d", count))
		}
		if follow {
			if stateDir != "" {
				return configError(errors.New("--follow asks the running daemon: not with --state-dir"))
			}
			ctx, stop := untilInterrupted()
			defer stop()
			return followHistory(ctx, cmd.OutOrStdout(), dc, count, time.Second)
		}
		if stateDir == "" {
			data, err := dc.call(control.Request{Command: "history", Args: map[string]string{"count": strconv.Itoa(count)}})
			if !errors.Is(err, control.ErrNotRunning) {
				if err != nil {
					return err
				}
				return dc.show(cmd.OutOrStdout(), data, printHistory)
			}
			cfg, lerr := o.load()
			if lerr != nil {
				return fail(fmt.Errorf("%w; and the history file cannot be found: %w", err, lerr))
			}
			stateDir = cfg.StateDir
		}
		path := filepath.Join(stateDir, history.FileName)
		entries, err := readHistoryFile(path, count)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "hagate: daemon not asked; read from %s\n", path)
		data, err := json.Marshal(entries)
		if err != nil {
			return fail(err)
		}
		return dc.show(cmd.OutOrStdout(), data, printHistory)
	}
	return cmd
}

// readHistoryFile returns the newest count entries of a history file.
func readHistoryFile(path string, count int) ([]history.Entry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	defer f.Close()
	r, err := history.Read(f, count)
	if err != nil {
		return nil, fmt.Errorf("history %s: %w", path, err)
	}
	return r.Entries, nil
}
