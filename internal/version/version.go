// Package version names the build: the release or commit it was built from,
// so that an operator can tell which build each member runs.
package version

import "runtime/debug"

// Version is stamped at build time by the Makefile and the package build:
//
//	go build -ldflags "-X github.com/hagate/hagate/internal/version.Version=$(git describe --tags --always --dirty)"
var Version string

// String returns the stamped version, else what the Go toolchain recorded:
// the module version of a `go install ...@v1.2.3` build, or the commit of a
// build from a git checkout (with -dirty when it had uncommitted changes).
// "dev" means the build carries no trace of where it came from.
func String() string {
	if Version != "" {
		return Version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	return fromBuildInfo(bi)
}

func fromBuildInfo(bi *debug.BuildInfo) string {
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev string
	var dirty bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "dev"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return rev
}
