package configsync

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/hagate/hagate/internal/checksum"
)

// PreviousFile is where a subordinate keeps its ruleset from before the
// last sync (in state_dir): `hagate synchronize --rollback` applies it.
const PreviousFile = "ruleset.previous.nft"

// applyMu serialises applies: a sync and a rollback never interleave.
var applyMu sync.Mutex

type table struct{ family, name string }

// localTables lists this member's tables that are synced (not excluded).
func localTables(ctx context.Context, ex checksum.Exclude) ([]table, error) {
	out, err := checksum.Nft(ctx, "-j", "list", "tables")
	if err != nil {
		return nil, err
	}
	var doc struct {
		Nftables []struct {
			Table *struct{ Family, Name string } `json:"table"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return nil, fmt.Errorf("nft list tables: %w", err)
	}
	var ts []table
	for _, e := range doc.Nftables {
		if e.Table != nil && !ex.ExcludesTable(e.Table.Family, e.Table.Name) {
			ts = append(ts, table{e.Table.Family, e.Table.Name})
		}
	}
	return ts, nil
}

// Script is this member's synced tables as nft text, stateless (no
// counters' values): what the primary serves and a subordinate keeps.
func Script(ctx context.Context, ex checksum.Exclude) ([]byte, error) {
	ts, err := localTables(ctx, ex)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	for _, t := range ts {
		out, err := checksum.Nft(ctx, "-s", "list", "table", t.family, t.name)
		if err != nil {
			return nil, err
		}
		b.Write(out)
	}
	return b.Bytes(), nil
}

// scriptTables are the tables a script defines ("table FAMILY NAME {" at
// the start of a line, as nft lists them).
func scriptTables(script []byte) []table {
	var ts []table
	sc := bufio.NewScanner(bytes.NewReader(script))
	sc.Buffer(nil, len(script)+1)
	for sc.Scan() {
		w := strings.Fields(sc.Text())
		if len(w) == 4 && w[0] == "table" && w[3] == "{" && !slices.Contains(ts, table{w[1], w[2]}) {
			ts = append(ts, table{w[1], w[2]})
		}
	}
	return ts
}

// Apply replaces this member's synced tables with script's in one nftables
// transaction: every synced table of this member and of the script is
// deleted and the script's recreated. The whole file is checked first (nft
// -c); a file the kernel refuses leaves the ruleset as it was. The ruleset
// from before is kept in stateDir/PreviousFile.
func Apply(ctx context.Context, script []byte, ex checksum.Exclude, stateDir string) error {
	applyMu.Lock()
	defer applyMu.Unlock()
	for _, t := range scriptTables(script) {
		if ex.ExcludesTable(t.family, t.name) {
			return fmt.Errorf("the ruleset defines table %s %s, which this member excludes", t.family, t.name)
		}
	}
	current, err := Script(ctx, ex)
	if err != nil {
		return fmt.Errorf("read the current ruleset: %w", err)
	}
	local, err := localTables(ctx, ex)
	if err != nil {
		return err
	}
	var tx bytes.Buffer
	for _, t := range append(local, scriptTables(script)...) {
		fmt.Fprintf(&tx, "add table %s %s\ndelete table %s %s\n", t.family, t.name, t.family, t.name)
	}
	tx.Write(script)
	file := filepath.Join(stateDir, "ruleset.apply.nft")
	if err := writeFile(file, tx.Bytes()); err != nil {
		return err
	}
	defer os.Remove(file)
	if _, err := checksum.Nft(ctx, "-c", "-f", file); err != nil {
		return fmt.Errorf("refused by the kernel (nothing applied): %w", err)
	}
	if !bytes.Equal(current, script) {
		if err := writeFile(filepath.Join(stateDir, PreviousFile), current); err != nil {
			return fmt.Errorf("keep the previous ruleset: %w", err)
		}
	}
	if _, err := checksum.Nft(ctx, "-f", file); err != nil {
		return fmt.Errorf("refused by the kernel (nothing applied): %w", err)
	}
	return nil
}

// Rollback applies the ruleset kept before the last sync.
func Rollback(ctx context.Context, ex checksum.Exclude, stateDir string) error {
	prev, err := os.ReadFile(filepath.Join(stateDir, PreviousFile))
	if err != nil {
		return fmt.Errorf("no ruleset kept: %w", err)
	}
	return Apply(ctx, prev, ex, stateDir)
}

// writeFile replaces path's content atomically (a crash leaves the old or
// the new file, never a part).
func writeFile(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
