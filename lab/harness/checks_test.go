package harness

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hagate/hagate/lab/netlab"
)

// A check command (keepalived's track_script) of weight 0 that starts
// failing on the primary is a remote-link failure: the other member takes
// over. The counterpart: the same fault with the check removed from the
// configuration moves nothing. The check is /usr/bin/test run directly (no
// shell), failing while a marker file exists.
func TestCheckFailsOver(t *testing.T) {
	for _, withCheck := range []bool{true, false} {
		name := map[bool]string{true: "check", false: "no-check"}[withCheck]
		t.Run(name, func(t *testing.T) {
			c := setup(t, 2, Options{}, netlab.Options{})
			// Every member runs the same check, on its own marker: the
			// remote link is compared between members.
			marker := filepath.Join(c.Dir, "gw1", "upstream-broken")
			for _, gw := range []string{"gw1", "gw2"} {
				if withCheck {
					appendConfig(t, c.ConfigPath(gw), "checks:\n  - name: upstream\n    command: [/usr/bin/test, '!', -e, "+
						filepath.Join(c.Dir, gw, "upstream-broken")+"]\n    interval: 200ms\n    timeout: 200ms\n    fall: 2\n")
				}
			}
			c.StartAll()
			mustHolder(t, c, 15*time.Second, "gw1")
			if err := os.WriteFile(marker, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			if !withCheck {
				time.Sleep(3 * time.Second)
				if h := c.Holders(); len(h) != 1 || h[0] != "gw1" {
					t.Fatalf("without the check the role moved: holders %v", h)
				}
				return
			}
			mustHolder(t, c, 5*time.Second, "gw2")
			if !strings.Contains(c.Log("gw1"), "check upstream failing") {
				t.Fatal("gw1's log does not name the failing check")
			}
			st, err := c.Status("gw1")
			if err != nil {
				t.Fatal(err)
			}
			if len(st.Checks) != 1 || !st.Checks[0].Failing || st.Checks[0].ExitCode != 1 {
				t.Fatalf("status checks %+v", st.Checks)
			}
		})
	}
}

func appendConfig(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString(text)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
}
