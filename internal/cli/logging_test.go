package cli

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

func TestLogJournal(t *testing.T) {
	var b bytes.Buffer
	log := slog.New(logHandler(&b, "text", true, slog.LevelDebug)).With("member", "gw1")
	log.Error("notify command failed", "reason", "exit status 1")
	log.Warn("role change", "to", "primary")
	log.Info("hagate starting")
	log.Debug("heartbeat send")
	want := `<3>level=ERROR msg="notify command failed" member=gw1 reason="exit status 1"
<4>level=WARN msg="role change" member=gw1 to=primary
<6>level=INFO msg="hagate starting" member=gw1
<7>level=DEBUG msg="heartbeat send" member=gw1
`
	if b.String() != want {
		t.Errorf("journal lines:\n%s\nwant:\n%s", b.String(), want)
	}
	// Outside systemd: the plain text handler, with its timestamp.
	b.Reset()
	slog.New(logHandler(&b, "text", false, slog.LevelInfo)).Error("x")
	if !strings.HasPrefix(b.String(), "time=") {
		t.Errorf("plain line %q", b.String())
	}
}

func TestLogJSON(t *testing.T) {
	var b bytes.Buffer
	slog.New(logHandler(&b, "json", true, slog.LevelInfo)).Warn("failover", "member", "gw2", "reason", "device")
	var rec map[string]any
	if err := json.Unmarshal(b.Bytes(), &rec); err != nil {
		t.Fatalf("%q: %v", b.String(), err)
	}
	if rec["msg"] != "failover" || rec["member"] != "gw2" || rec["reason"] != "device" || rec["level"] != "WARN" {
		t.Errorf("record %v", rec)
	}
}
