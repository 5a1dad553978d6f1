package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
configuration.

--clear deletes the history, like FortiOS's diagnose sys ha history
delete: through the daemon, which then records that it was cleared, or in
the file when the daemon is not running.`,
		Args: cobra.NoArgs,
	}
	dc := newDaemonClient(o, cmd, true)
	cmd.Flags().IntVar(&count, "count", 50, "how many events")
	cmd.Flags().StringVar(&stateDir, "state-dir", "", "read the history file in this directory (default: state_dir from the configuration when the daemon is not running)")
	var follow, clear bool
	cmd.Flags().BoolVar(&clear, "clear", false, "delete the history (diagnose sys ha history delete); the daemon keeps one entry saying so")
	cmd.Flags().BoolVar(&follow, "follow", false, "print the events oldest first, then each new one as it happens, until interrupted (asks the daemon)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if count <= 0 {
			return configError(fmt.Errorf("--count must be positive, got %d", count))
		}
		if clear {
			return clearHistory(cmd, o, dc, stateDir)
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
			data, dir, err := askOrFindFile(o, dc, control.Request{Command: "history", Args: map[string]string{"count": strconv.Itoa(count)}})
			if err != nil || dir == "" {
				return dc.answer(cmd.OutOrStdout(), data, err, printHistory)
			}
			stateDir = dir
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

// clearHistory deletes the history through the daemon, or in its file when
// the daemon is not running.
func clearHistory(cmd *cobra.Command, o *options, dc *daemonClient, stateDir string) error {
	if stateDir == "" {
		data, dir, err := askOrFindFile(o, dc, control.Request{Command: "history", Args: map[string]string{"clear": "true"}})
		if err != nil || dir == "" {
			return dc.answer(cmd.OutOrStdout(), data, err, printHistory)
		}
		stateDir = dir
	}
	l, err := history.Open(stateDir, 1)
	if err != nil {
		return fail(err)
	}
	defer l.Close()
	if err := l.Clear(); err != nil {
		return fail(err)
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "hagate: daemon not asked; cleared %s\n", l.Path())
	return nil
}

// askOrFindFile asks the daemon; when it is not running it returns the
// state_dir from the configuration instead, where the history file is.
func askOrFindFile(o *options, dc *daemonClient, req control.Request) (json.RawMessage, string, error) {
	data, err := dc.call(req)
	if !errors.Is(err, control.ErrNotRunning) {
		return data, "", err
	}
	cfg, lerr := o.load()
	if lerr != nil {
		return nil, "", fail(fmt.Errorf("%w; and the history file cannot be found: %w", err, lerr))
	}
	return nil, cfg.StateDir, nil
}

// answer shows the daemon's answer, or returns its error.
func (dc *daemonClient) answer(w io.Writer, data json.RawMessage, err error, print func(io.Writer, json.RawMessage) error) error {
	if err != nil {
		return err
	}
	return dc.show(w, data, print)
}
