package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hagate/hagate/internal/history"
)

func TestStatusScreen(t *testing.T) {
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	hist, _ := json.Marshal([]history.Entry{{Time: t0, Node: "gw2", Event: "role", Role: "primary", Reason: "primary gw1 silent"}})
	screen := statusScreen(t0, time.Second,
		func() (json.RawMessage, error) { return nil, errors.New("hagate is not running") },
		func() (json.RawMessage, error) { return hist, nil })
	if !strings.HasPrefix(screen, home) || !strings.HasSuffix(screen, clearBelow) {
		t.Errorf("frame does not start at home and clear below: %q", screen)
	}
	// Every line clears its own end: a shorter line leaves nothing of the
	// last frame's behind, without clearing the screen (no flicker).
	body := strings.TrimSuffix(strings.TrimPrefix(screen, home), clearBelow)
	for line := range strings.Lines(body) {
		if !strings.HasSuffix(line, clearLine+"\n") {
			t.Errorf("line %q does not clear its end", line)
		}
	}
	if strings.Contains(screen, "\x1b[2J") {
		t.Error("the frame clears the whole screen")
	}
	for _, want := range []string{"Every 1s: hagate status", "hagate is not running", "gw2 became primary: primary gw1 silent"} {
		if !strings.Contains(screen, want) {
			t.Errorf("screen lacks %q:\n%s", want, screen)
		}
	}
}

func TestFollowerPrintsEachEventOnce(t *testing.T) {
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	e1 := history.Entry{Time: t0, Node: "gw1", Event: "start", Reason: "daemon started"}
	e2 := history.Entry{Time: t0, Node: "gw1", Event: "event", Reason: "member gw2 lost"} // same time
	e3 := history.Entry{Time: t0.Add(time.Second), Node: "gw1", Event: "role", Role: "primary", Reason: "takeover"}
	// The daemon answers its log's last entries, oldest first.
	log, err := history.Open(t.TempDir(), 2)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	var f follower
	var b bytes.Buffer
	for _, e := range []history.Entry{e1, e2} {
		if err := log.Append(e); err != nil {
			t.Fatal(err)
		}
	}
	f.print(&b, log.Last(10))
	if err := log.Append(e3); err != nil {
		t.Fatal(err)
	}
	f.print(&b, log.Last(10)) // e1 is gone: the log keeps 2
	f.print(&b, log.Last(10))
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "daemon started") || !strings.Contains(lines[1], "gw2 lost") || !strings.Contains(lines[2], "became primary") {
		t.Errorf("followed:\n%s", b.String())
	}
}
