package daemon

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The flag outlives the process that set it: set, read back as a
// restarted daemon reads it, unset, read back again.
func TestFailoverFlagPersists(t *testing.T) {
	dir := t.TempDir()
	if set, err := loadFailoverFlag(dir); set || err != nil {
		t.Fatalf("fresh state_dir: set=%v err=%v", set, err)
	}
	if err := saveFailoverFlag(dir, true, time.Now()); err != nil {
		t.Fatal(err)
	}
	if set, err := loadFailoverFlag(dir); !set || err != nil {
		t.Fatalf("after set: set=%v err=%v", set, err)
	}
	if err := saveFailoverFlag(dir, false, time.Now()); err != nil {
		t.Fatal(err)
	}
	if set, err := loadFailoverFlag(dir); set || err != nil {
		t.Fatalf("after unset: set=%v err=%v", set, err)
	}
	if err := saveFailoverFlag(dir, false, time.Now()); err != nil {
		t.Fatalf("unset twice: %v", err)
	}
	// A state_dir that is not a directory cannot hold the flag: said, not
	// swallowed.
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o600)
	if err := saveFailoverFlag(file, true, time.Now()); err == nil {
		t.Fatal("saving under a file succeeded")
	}
}
