package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Release010 is the commit of release 0.1.0, the release the current build
// must run beside (docs/upgrade.md: the compatibility window).
const Release010 = "7450053"

// BuildRelease builds the hagate command of an earlier release (commit) into
// dir and returns its path: it checks the commit out into a temporary git
// worktree under dir, builds it there with that release's own go.mod, and
// removes the worktree again, so a rolling upgrade can start from what
// operators really run.
func BuildRelease(commit, dir string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	src := filepath.Join(dir, "src-"+commit)
	if out, err := exec.Command("git", "-C", root, "worktree", "add", "--detach", src, commit).CombinedOutput(); err != nil {
		return "", fmt.Errorf("git worktree add %s: %v: %s", commit, err, out)
	}
	defer func() {
		// A worktree left behind would pin the commit in the repository's
		// list of worktrees; the build does not need it any more.
		exec.Command("git", "-C", root, "worktree", "remove", "--force", src).Run()
		os.RemoveAll(src)
	}()
	bin := filepath.Join(dir, "hagate-"+commit)
	build := exec.Command("go", "build", "-o", bin, "./cmd/hagate")
	build.Dir = src
	build.Env = append(os.Environ(), "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build of %s: %v: %s", commit, err, strings.TrimSpace(string(out)))
	}
	return bin, nil
}
