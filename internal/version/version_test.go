package version

import (
	"runtime/debug"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	rev := debug.BuildSetting{Key: "vcs.revision", Value: "7450053a1b2c3d4e5f60718293a4b5c6d7e8f901"}
	for _, tc := range []struct {
		name string
		bi   debug.BuildInfo
		want string
	}{
		{"nothing known", debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "dev"},
		{"go install at a version", debug.BuildInfo{Main: debug.Module{Version: "v0.2.0"}, Settings: []debug.BuildSetting{rev}}, "v0.2.0"},
		{"git checkout", debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{rev}}, "7450053a1b2c"},
		{"dirty checkout", debug.BuildInfo{Settings: []debug.BuildSetting{rev, {Key: "vcs.modified", Value: "true"}}}, "7450053a1b2c-dirty"},
	} {
		if got := fromBuildInfo(&tc.bi); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestStamped(t *testing.T) {
	defer func(v string) { Version = v }(Version)
	Version = "v0.2.0-3-g1234567"
	if got := String(); got != Version {
		t.Fatalf("got %q, want the stamped %q", got, Version)
	}
}
