package echo

import (
	"context"
	"net"
	"testing"
	"time"
)

func TestSessionOverLoopback(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go Serve(ctx, ln)
	cctx, ccancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer ccancel()
	var c Client
	r := c.Run(cctx, ln.Addr().String(), 10*time.Millisecond)
	if !r.Survived || r.Sent < 5 || r.Received != r.Sent {
		t.Fatalf("report %+v", r)
	}
}

// A server that corrupts the stream is caught: the test can fail.
func TestDetectsLostBytes(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		buf := make([]byte, 8)
		for i := 0; ; i++ {
			if _, err := conn.Read(buf); err != nil {
				return
			}
			if i == 3 {
				continue // drop one message
			}
			conn.Write(buf)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var c Client
	if r := c.Run(ctx, ln.Addr().String(), 10*time.Millisecond); r.Survived || r.Err == "" {
		t.Fatalf("lost message not noticed: %+v", r)
	}
}

func TestRefusedConnection(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	var c Client
	if r := c.Run(context.Background(), addr, 10*time.Millisecond); r.Survived || r.Err == "" {
		t.Fatalf("%+v", r)
	}
}
