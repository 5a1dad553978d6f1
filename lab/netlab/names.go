package netlab

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/hagate/hagate/internal/nstest"
)

// DefaultPrefix starts every namespace name of a lab unless Options.Prefix
// says otherwise.
const DefaultPrefix = "hg"

// labSeq numbers the labs made by this process, so that two labs of one
// process (parallel tests) never share a name.
var labSeq atomic.Uint64

// A namespace name is <prefix><pid><seq>-<node>, e.g. "hg4711a-gw1": the
// prefix is lowercase letters, pid is the decimal pid of the process that
// made the lab and seq is that process's lab counter written in letters.
// The pid is in the name so that CleanupStale can tell a lab left by a
// crashed run (owner gone) from one a concurrent test process is using.

// validPrefix reports whether p can start lab names without making them
// ambiguous: letters only, so the pid that follows is unmistakable.
func validPrefix(p string) bool {
	if len(p) == 0 || len(p) > 8 {
		return false
	}
	for _, c := range p {
		if c < 'a' || c > 'z' {
			return false
		}
	}
	return true
}

// letters writes n in base 26 with digits a..z ("a", "b", ..., "ba", ...).
func letters(n uint64) string {
	var b []byte
	for {
		b = append(b, byte('a'+n%26))
		n /= 26
		if n == 0 {
			break
		}
	}
	for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
	return string(b)
}

// newID returns a lab id unique among the labs of all live processes.
func newID(prefix string) string {
	return prefix + strconv.Itoa(os.Getpid()) + letters(labSeq.Add(1)-1)
}

// parseName splits a namespace name made by a lab with this prefix into
// the owner's pid and the node name. ok is false for any other name.
func parseName(prefix, name string) (pid int, node string, ok bool) {
	if !validPrefix(prefix) {
		return 0, "", false
	}
	rest, found := strings.CutPrefix(name, prefix)
	if !found {
		return 0, "", false
	}
	i := 0
	for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
		i++
	}
	if i == 0 || i > 9 || rest[0] == '0' {
		return 0, "", false
	}
	pid, err := strconv.Atoi(rest[:i])
	if err != nil || pid <= 0 {
		return 0, "", false
	}
	j := i
	for j < len(rest) && rest[j] >= 'a' && rest[j] <= 'z' {
		j++
	}
	if j == i || j >= len(rest) || rest[j] != '-' {
		return 0, "", false
	}
	node = rest[j+1:]
	if !validNode(node) {
		return 0, "", false
	}
	return pid, node, true
}

// validNode reports whether node is one a lab makes: sw, client, server or
// gwK with K in 1..9.
func validNode(node string) bool {
	switch node {
	case Switch, Client, Server:
		return true
	}
	return len(node) == 3 && node[:2] == "gw" && node[2] >= '1' && node[2] <= '9'
}

// CleanupStale removes the namespaces left behind by labs with this prefix
// whose owning process is gone (a crashed or killed earlier run), killing
// any process still inside them. Labs of live processes are left alone, so
// it is safe to call while other tests run. It returns the names removed.
// [New] calls it for its own prefix.
func CleanupStale(prefix string) ([]string, error) {
	if !validPrefix(prefix) {
		return nil, fmt.Errorf("lab: cleanup: invalid prefix %q (want 1-8 lowercase letters)", prefix)
	}
	removed, err := nstest.RemoveStale(func(name string) (int, bool) {
		pid, _, ok := parseName(prefix, name)
		return pid, ok
	})
	if err != nil {
		return removed, fmt.Errorf("lab: cleanup: %w", err)
	}
	return removed, nil
}
