package metrics

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape status %s", resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestScrape(t *testing.T) {
	m := New()
	m.SetRole("primary")
	m.Members.Set(3)
	m.HeartbeatsSent.WithLabelValues("port3").Add(5)
	m.HeartbeatsReceived.WithLabelValues("port3", "fw-b").Inc()
	m.HeartbeatsDropped.WithLabelValues("port3", "auth").Inc()
	m.HeartbeatsLost.WithLabelValues("port4", "fw-b").Add(2)
	m.Elections.Inc()
	m.Failovers.WithLabelValues("device").Inc()
	m.LastFailover.Set(1.7e9)
	m.SplitBrain.Set(1)
	m.ControlDenied.Inc()
	m.SyncUpdatesSent.Add(7)
	m.SyncUpdatesApplied.Add(6)
	m.SyncAckLag.Set(0.25)
	m.SyncLag.Observe(0.003)
	m.SyncDivergentRanges.Add(2)
	m.SyncRepaired.Add(5)
	m.SyncResyncs.WithLabelValues("reconnect").Inc()
	m.SyncDropped("key")
	m.SyncDropped("no-such-reason")
	m.NotifyRuns.Inc()
	m.Start("1.2.3", []string{"port3"})
	m.SessionsDroppedLimit.Inc()

	body := scrape(t, m.Handler())
	for _, want := range []string{
		"# HELP hagate_primary ",
		"hagate_primary 1\n",
		`hagate_role{role="primary"} 1` + "\n",
		`hagate_role{role="subordinate"} 0` + "\n",
		`hagate_role{role="hello"} 0` + "\n",
		"hagate_members 3\n",
		`hagate_heartbeats_sent_total{link="port3"} 5` + "\n",
		`hagate_heartbeats_received_total{link="port3",peer="fw-b"} 1` + "\n",
		`hagate_heartbeats_dropped_total{link="port3",reason="auth"} 1` + "\n",
		`hagate_heartbeats_lost_total{link="port4",peer="fw-b"} 2` + "\n",
		"hagate_heartbeat_send_jitter_seconds 0\n",
		"hagate_elections_total 1\n",
		`hagate_failovers_total{reason="device"} 1` + "\n",
		"hagate_last_failover_timestamp_seconds 1.7e+09\n",
		"hagate_split_brain 1\n",
		"hagate_control_denied_total 1\n",
		"hagate_sync_updates_sent_total 7\n",
		"hagate_sync_updates_applied_total 6\n",
		"hagate_sync_ack_lag_seconds 0.25\n",
		`hagate_sync_lag_seconds_bucket{le="0.005"} 1` + "\n",
		`hagate_sync_lag_seconds_bucket{le="0.002"} 0` + "\n",
		"hagate_sync_divergent_ranges_total 2\n",
		"hagate_sync_repaired_sessions_total 5\n",
		`hagate_sync_resyncs_total{reason="reconnect"} 1` + "\n",
		`hagate_sync_frames_dropped_total{reason="key"} 1` + "\n",
		`hagate_sync_frames_dropped_total{reason="other"} 1` + "\n",
		`hagate_sync_frames_dropped_total{reason="replay"} 0` + "\n",
		`hagate_failovers_total{reason="manual"} 0` + "\n",
		`hagate_role_changes_total{reason="device",to="primary"} 0` + "\n",
		`hagate_heartbeats_dropped_total{link="port3",reason="key"} 0` + "\n",
		"hagate_notify_runs_total 1\n",
		"hagate_notify_failures_total 0\n",
		`hagate_build_info{goversion="go`,
		`version="1.2.3"} 1`,
		"hagate_sessions_dropped_limit_total 1\n",
		"go_goroutines ",
		"process_start_time_seconds ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("scrape:\n%s", body)
	}
}

func TestSetRole(t *testing.T) {
	m := New()
	tests := []struct {
		role    string
		primary float64
	}{
		{role: "hello", primary: 0},
		{role: "primary", primary: 1},
		{role: "subordinate", primary: 0},
	}
	for _, tt := range tests {
		m.SetRole(tt.role)
		if got := value(t, m.Role); got != tt.primary {
			t.Errorf("SetRole(%q): hagate_primary = %v, want %v", tt.role, got, tt.primary)
		}
		for _, r := range Roles {
			want := 0.0
			if r == tt.role {
				want = 1
			}
			if got := value(t, m.RoleState.WithLabelValues(r)); got != want {
				t.Errorf("SetRole(%q): hagate_role{role=%q} = %v, want %v", tt.role, r, got, want)
			}
		}
	}
}

// TestPrivateRegistries checks that two sets of metrics live side by side,
// as they must when tests build several daemons in one process.
func TestPrivateRegistries(t *testing.T) {
	a, b := New(), New()
	a.Elections.Inc()
	if got := value(t, b.Elections); got != 0 {
		t.Errorf("second registry sees %v elections", got)
	}
	// Every family has help text and the hagate_ prefix or a standard one.
	families, err := a.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		name := f.GetName()
		if f.GetHelp() == "" {
			t.Errorf("%s has no help", name)
		}
		if !strings.HasPrefix(name, "hagate_") && !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_") {
			t.Errorf("unexpected metric %s", name)
		}
	}
}

// value reads the one value of a gauge or counter.
func value(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 64)
	c.Collect(ch)
	close(ch)
	var n int
	var v float64
	for m := range ch {
		n++
		var pb dto.Metric
		if err := m.Write(&pb); err != nil {
			t.Fatal(err)
		}
		switch {
		case pb.Gauge != nil:
			v = pb.Gauge.GetValue()
		case pb.Counter != nil:
			v = pb.Counter.GetValue()
		default:
			t.Fatalf("not a gauge or counter: %v", m.Desc())
		}
	}
	if n != 1 {
		t.Fatalf("collector has %d metrics, want 1", n)
	}
	return v
}

func TestServe(t *testing.T) {
	m := New()
	m.Elections.Inc()
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	var logBuf syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln, m, slog.New(slog.NewTextHandler(&logBuf, nil))) }()

	client := &http.Client{Timeout: 5 * time.Second}
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := client.Get("http://" + addr + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, body := get("/metrics"); code != http.StatusOK || !strings.Contains(body, "hagate_elections_total 1\n") {
		t.Errorf("/metrics: %d, body without the election counter", code)
	}
	if code, _ := get("/other"); code != http.StatusNotFound {
		t.Errorf("/other: %d, want 404", code)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not stop with its context")
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Error("metrics port still open after shutdown")
	}
	if !strings.Contains(logBuf.String(), "serving metrics") {
		t.Errorf("log: %q", logBuf.String())
	}
}

func TestServeListenerStops(t *testing.T) {
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- New().ServeListener(ctx, ln) }()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + ln.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ServeListener: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ServeListener did not stop with its context")
	}
}

func TestServeAddressInUse(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	addr := busy.Addr().String()
	done := make(chan error, 1)
	go func() { done <- Serve(context.Background(), addr, New(), nil) }()
	select {
	case err := <-done:
		if err == nil || !strings.HasPrefix(err.Error(), "metrics_listen "+addr+": ") || !strings.Contains(err.Error(), "address already in use") {
			t.Fatalf("Serve on a busy address: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve on a busy address did not fail")
	}
}

func TestServeStopsBeforeStart(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Serve(ctx, "127.0.0.1:0", New(), nil); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("Serve with a done context: %v", err)
	}
}

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
