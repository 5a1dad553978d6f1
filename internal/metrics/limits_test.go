package metrics

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

func serveWith(t *testing.T, readHeader, idle time.Duration, conns int) string {
	t.Helper()
	saved := limits
	limits.readHeader, limits.idle, limits.conns = readHeader, idle, conns
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln, New(), nil) }()
	t.Cleanup(func() { cancel(); <-done; limits = saved })
	return ln.Addr().String()
}

// closedByServer reports whether the server closes c within 10 s.
func closedByServer(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, c)
	return err == nil // EOF: closed by the other end; a timeout is an error
}

// Finding 7: a connection that sends no request, or that idles after one,
// is closed by the server.
func TestMetricsClosesSilentAndIdleConnections(t *testing.T) {
	addr := serveWith(t, 200*time.Millisecond, 200*time.Millisecond, 16)
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	if !closedByServer(silent) {
		t.Fatal("a connection that sends nothing stays open")
	}

	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	io.WriteString(idle, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(idle), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz: %v", err)
	}
	resp.Body.Close()
	if !closedByServer(idle) {
		t.Fatal("an idle keep-alive connection stays open")
	}
}

// Finding 7: at most limits.conns connections are served at once; a scrape
// beyond waits for a free one.
func TestMetricsConnectionCap(t *testing.T) {
	addr := serveWith(t, time.Minute, time.Minute, 4)
	var held []net.Conn
	for range 4 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	client := &http.Client{Timeout: 500 * time.Millisecond}
	if resp, err := client.Get("http://" + addr + "/healthz"); err == nil {
		resp.Body.Close()
		t.Fatal("a fifth connection was served while four were held")
	}
	held[0].Close()
	client.Timeout = 10 * time.Second
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape after a connection was freed: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatal(resp.Status)
	}
}

// "Make failures visible": drops by source, bounded.
func TestDroppedFromBounded(t *testing.T) {
	m := New()
	for i := range 200 {
		m.DroppedFrom("ha", "key", "198.51.100."+strconv.Itoa(i))
	}
	m.DroppedFrom("ha", "key", "198.51.100.4")
	body := scrape(t, m.Handler())
	if !strings.Contains(body, `hagate_frames_dropped_total{reason="key",source="198.51.100.4"} 2`) {
		t.Fatal("per-source count missing")
	}
	if n := strings.Count(body, "hagate_frames_dropped_total{"); n != MaxDropSources+1 {
		t.Fatalf("%d series, want %d sources + other", n, MaxDropSources)
	}
	if !strings.Contains(body, `hagate_frames_dropped_total{reason="key",source="other"} 120`) {
		t.Fatal("drops beyond the bound not under other")
	}
}
