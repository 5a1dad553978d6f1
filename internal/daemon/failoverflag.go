package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hagate/hagate/internal/cluster"
)

// The failover flag (`hagate failover`) survives a restart of the daemon
// or of the machine, as FGCP's `execute ha failover set` does: a member
// an operator took out of service must not become primary again because
// it rebooted. It is kept as a file in state_dir whose presence is the
// flag; it holds, for whoever finds it, when it was set.

// FailoverFlagFile is the flag's file in state_dir.
const FailoverFlagFile = "failover-set"

// loadFailoverFlag reports whether the flag was set when the daemon last
// ran. A file that cannot be read counts as set: ranking last by mistake is
// the safe side.
func loadFailoverFlag(stateDir string) (bool, error) {
	_, err := os.Stat(filepath.Join(stateDir, FailoverFlagFile))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, os.ErrNotExist):
		return false, nil
	}
	return true, fmt.Errorf("failover flag: %w", err)
}

// saveFailoverFlag writes (set) or removes (unset) the flag's file, synced
// to disk before the command answers.
func saveFailoverFlag(stateDir string, set bool, now time.Time) error {
	path := filepath.Join(stateDir, FailoverFlagFile)
	if !set {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("failover flag: %w", err)
		}
		return syncDir(stateDir)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("failover flag: %w", err)
	}
	_, err = fmt.Fprintf(f, "hagate failover set at %s; `hagate failover --unset` removes it\n", now.UTC().Format(time.RFC3339))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("failover flag %s: %w", path, err)
	}
	return syncDir(stateDir)
}

// syncDir makes a file's creation or removal in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("failover flag: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("failover flag: sync %s: %w", dir, err)
	}
	return nil
}

// restoreFailoverFlag sets the flag again at start if it was set when the
// daemon last ran, before the first election.
func (d *Daemon) restoreFailoverFlag() {
	set, err := loadFailoverFlag(d.cfg.StateDir)
	if err != nil {
		d.log.Error("failover flag unreadable: ranking last until `hagate failover --unset`", "err", err)
	}
	if set {
		d.log.Warn("failover flag set before the restart: this member ranks last until `hagate failover --unset`",
			"file", filepath.Join(d.cfg.StateDir, FailoverFlagFile))
		d.step(cluster.Command{Now: time.Now(), Kind: cluster.FailoverSet})
	}
}
