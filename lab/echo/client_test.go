package echo

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// serveTCP runs Serve on a loopback listener until the test ends.
func serveTCP(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skip("no loopback TCP:", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// fakeTCP runs handle on every connection to a loopback listener.
func fakeTCP(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skip("no loopback TCP:", err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return ln.Addr().String()
}

func TestTCPSessionOverLoopback(t *testing.T) {
	addr := serveTCP(t)
	readied := 0
	var c Client
	r := c.Run(context.Background(), Config{Addr: addr, Interval: 5 * time.Millisecond, Duration: 200 * time.Millisecond,
		Samples: true, Ready: func() { readied++ }})
	if !r.Survived || r.Conns != 1 || len(r.Errors) > 0 || r.Received != r.Sent || r.Sent < 5 {
		t.Fatalf("report %s %+v", r, r.Errors)
	}
	if readied != 1 {
		t.Errorf("Ready called %d times, want once", readied)
	}
	if uint64(len(r.Samples)) != r.Sent {
		t.Fatalf("%d samples for %d records", len(r.Samples), r.Sent)
	}
	for _, s := range r.Samples {
		if s.EchoNS < s.SentNS {
			t.Fatalf("record %d: echo %d before send %d", s.Seq, s.EchoNS, s.SentNS)
		}
	}
}

// A server that drops one record is caught: the test can fail.
func TestTCPDetectsLostRecord(t *testing.T) {
	addr := fakeTCP(t, func(c net.Conn) {
		buf := make([]byte, RecordSize)
		for i := 0; ; i++ {
			if _, err := c.Read(buf); err != nil {
				return
			}
			if i != 3 {
				c.Write(buf)
			}
		}
	})
	var c Client
	r := c.Run(context.Background(), Config{Addr: addr, Interval: 10 * time.Millisecond, Duration: 300 * time.Millisecond})
	if r.Survived || !strings.Contains(r.Err, "got record 4, want 3") {
		t.Fatalf("lost record not noticed: %s", r)
	}
}

// A server that sends garbage breaks the connection; with Reconnect the
// client opens new ones and the run does not survive.
func TestTCPReconnectsAfterCorruption(t *testing.T) {
	addr := fakeTCP(t, func(c net.Conn) {
		buf := make([]byte, RecordSize)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
			c.Write(AppendRecord(nil, 99))
		}
	})
	var c Client
	r := c.Run(context.Background(), Config{Addr: addr, Interval: 5 * time.Millisecond, Duration: 100 * time.Millisecond, Reconnect: true})
	if r.Survived || r.Conns < 2 || len(r.Errors) < 2 {
		t.Fatalf("survived %v with %d connections and errors %v", r.Survived, r.Conns, r.Errors)
	}
}

// A silent server stalls the connection, which Stall gives up.
func TestTCPStall(t *testing.T) {
	addr := fakeTCP(t, func(c net.Conn) {
		buf := make([]byte, 64)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
		}
	})
	var c Client
	r := c.Run(context.Background(), Config{Addr: addr, Interval: 5 * time.Millisecond, Duration: 2 * time.Second, Stall: 50 * time.Millisecond})
	if r.Survived || !strings.Contains(r.Err, "no echo for 50ms") || r.Conns != 1 {
		t.Fatalf("stall not noticed: %s", r)
	}
}

func TestTCPRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skip("no loopback TCP:", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var c Client
	if r := c.Run(context.Background(), Config{Addr: addr, Interval: 10 * time.Millisecond}); r.Survived || !strings.Contains(r.Err, "dial") {
		t.Fatalf("%s", r)
	}
}

// serveUDP runs ServeUDP on a loopback socket until the test ends and
// returns its address and what it logged.
func serveUDP(t *testing.T) (string, func() string) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Skip("no loopback UDP:", err)
	}
	var mu sync.Mutex
	var log strings.Builder
	logf := func(f string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(&log, f+"\n", a...)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeUDP(ctx, pc, logf) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeUDP: %v", err)
		}
	})
	return pc.LocalAddr().String(), func() string { mu.Lock(); defer mu.Unlock(); return log.String() }
}

func TestUDPFlowOverLoopback(t *testing.T) {
	addr, _ := serveUDP(t)
	var c Client
	r := c.Run(context.Background(), Config{Network: "udp", Addr: addr, Interval: 5 * time.Millisecond, Duration: 200 * time.Millisecond})
	if !r.Survived || r.Lost != 0 || r.Dups != 0 || r.Sent < 5 || r.Received != r.Sent {
		t.Fatalf("report %s", r)
	}
}

// The server echoes a flow only from the address it first came from: the
// same flow from another socket (what a new NAT mapping looks like) is
// answered with KindMoved, and a client that hears it has a broken flow.
func TestUDPServerTracksPeer(t *testing.T) {
	addr, log := serveUDP(t)
	ask := func(c net.Conn, seq uint64) Datagram {
		t.Helper()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write(AppendDatagram(nil, Datagram{KindEcho, 77, seq})); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		d, err := ParseDatagram(buf[:n])
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	a, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if d := ask(a, 1); d != (Datagram{KindEcho, 77, 1}) {
		t.Fatalf("first peer got %+v", d)
	}
	if d := ask(b, 2); d != (Datagram{KindMoved, 77, 2}) {
		t.Fatalf("second peer got %+v, want KindMoved", d)
	}
	if d := ask(a, 3); d != (Datagram{KindEcho, 77, 3}) {
		t.Fatalf("first peer again got %+v", d)
	}
	if !strings.Contains(log(), "not echoed") {
		t.Errorf("server log:\n%s", log())
	}
}

// fakeUDP answers every datagram with what answer returns (nil: nothing).
func fakeUDP(t *testing.T, answer func(i int, d Datagram) []Datagram) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Skip("no loopback UDP:", err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 64)
		for i := 0; ; i++ {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			d, err := ParseDatagram(buf[:n])
			if err != nil {
				continue
			}
			for _, a := range answer(i, d) {
				pc.WriteTo(AppendDatagram(nil, a), from)
			}
		}
	}()
	return pc.LocalAddr().String()
}

// The client's verdicts on what a bad network or server does to a flow:
// each breaks the flow, so the UDP tests can fail.
func TestUDPClientVerdicts(t *testing.T) {
	tests := []struct {
		name   string
		answer func(i int, d Datagram) []Datagram
		want   string
	}{
		{"moved", func(i int, d Datagram) []Datagram {
			if i >= 5 {
				d.Kind = KindMoved
			}
			return []Datagram{d}
		}, "another source address"},
		{"stops", func(i int, d Datagram) []Datagram {
			if i >= 5 {
				return nil
			}
			return []Datagram{d}
		}, "the flow stopped"},
		{"two losses apart", func(i int, d Datagram) []Datagram {
			if i == 3 || i == 12 {
				return nil
			}
			return []Datagram{d}
		}, "separate runs"},
		{"duplicates", func(i int, d Datagram) []Datagram { return []Datagram{d, d} }, ""},
		{"other flow", func(i int, d Datagram) []Datagram { d.Flow++; return []Datagram{d} }, "bad answer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := fakeUDP(t, tt.answer)
			var c Client
			r := c.Run(context.Background(), Config{Network: "udp", Addr: addr, Interval: 10 * time.Millisecond, Duration: 300 * time.Millisecond, Drain: 200 * time.Millisecond})
			if r.Survived || !strings.Contains(r.Err, tt.want) {
				t.Fatalf("report %s", r)
			}
			if tt.name == "duplicates" && r.Dups == 0 {
				t.Fatalf("no duplicates counted: %s", r)
			}
		})
	}
}
