package configsync

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hagate/hagate/internal/checksum"
	"github.com/hagate/hagate/internal/nstest"
)

// In namespaces: the primary's script applied on a subordinate gives the
// same ruleset checksum, replacing a table added by hand and keeping an
// excluded one; a script the kernel refuses (a rule naming an interface
// it lacks) changes nothing; rollback restores the kept copy.
func TestApplyKernel(t *testing.T) {
	nstest.RequireRoot(t, "nft")
	prim, sub := nstest.New(t), nstest.New(t)
	ex := checksum.Exclude{Tables: []string{"inet mgmt"}}
	prim.Run(t, "nft", "add table inet filter; add chain inet filter fw { type filter hook forward priority 0; }; add rule inet filter fw tcp dport 80 accept; add table ip nat; add chain ip nat post { type nat hook postrouting priority 100; }; add rule ip nat post masquerade")
	sub.Run(t, "nft", "add table inet filter; add table ip handmade; add table inet mgmt; add chain inet mgmt in { type filter hook input priority 0; }; add rule inet mgmt in tcp dport 22 accept")
	ctx := context.Background()
	var script []byte
	var primSum, subSum uint64
	read := func(ns *nstest.NS, sum *uint64) {
		t.Helper()
		if err := ns.Do(func() error {
			text, err := checksum.ReadRuleset(ctx, ex)
			*sum = checksum.Of(text)
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := prim.Do(func() (err error) { script, err = Script(ctx, ex); return err }); err != nil {
		t.Fatal(err)
	}
	read(prim, &primSum)
	read(sub, &subSum)
	if primSum == subSum {
		t.Fatal("different rulesets, same checksum")
	}
	state := t.TempDir()
	if err := sub.Do(func() error { return Apply(ctx, script, ex, state) }); err != nil {
		t.Fatal(err)
	}
	read(sub, &subSum)
	if primSum != subSum {
		t.Fatalf("after apply: %x, primary %x\n%s", subSum, primSum, sub.Run(t, "nft", "list", "ruleset"))
	}
	rs := sub.Run(t, "nft", "list", "ruleset")
	if strings.Contains(rs, "handmade") || !strings.Contains(rs, "table inet mgmt") {
		t.Fatalf("synced tables not replaced or excluded table lost:\n%s", rs)
	}
	if prev, err := os.ReadFile(filepath.Join(state, PreviousFile)); err != nil || !strings.Contains(string(prev), "handmade") {
		t.Fatalf("previous ruleset not kept: %v\n%s", err, prev)
	}
	bad := append([]byte("table ip x {\n\tchain c {\n\t\tiif \"nosuch0\" accept\n\t}\n}\n"), script...)
	if err := sub.Do(func() error { return Apply(ctx, bad, ex, state) }); err == nil {
		t.Fatal("a ruleset naming a missing interface was applied")
	}
	read(sub, &subSum)
	if primSum != subSum {
		t.Fatal("a refused ruleset changed the ruleset")
	}
	if err := sub.Do(func() error { return Rollback(ctx, ex, state) }); err != nil {
		t.Fatal(err)
	}
	if rs := sub.Run(t, "nft", "list", "ruleset"); !strings.Contains(rs, "handmade") {
		t.Fatalf("rollback did not restore the kept ruleset:\n%s", rs)
	}
}
