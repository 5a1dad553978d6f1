package bench

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

func TestRecordRoundTrip(t *testing.T) {
	for _, seq := range []uint64{0, 1, 255, 1 << 40, ^uint64(0)} {
		b := AppendRecord(nil, seq)
		if len(b) != RecordSize {
			t.Fatalf("record of %d is %d bytes", seq, len(b))
		}
		got, err := ParseRecord(b)
		if err != nil || got != seq {
			t.Errorf("ParseRecord(AppendRecord(%d)) = %d, %v", seq, got, err)
		}
	}
}

func TestParseRecordRejects(t *testing.T) {
	good := AppendRecord(nil, 7)
	flip := func(i int) []byte {
		b := append([]byte(nil), good...)
		b[i] ^= 1
		return b
	}
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrShortRecord},
		{"truncated", good[:15], ErrShortRecord},
		{"magic", flip(0), ErrBadMagic},
		{"sequence", flip(11), ErrBadChecksum},
		{"checksum", flip(15), ErrBadChecksum},
	}
	for _, tt := range tests {
		if _, err := ParseRecord(tt.in); !errors.Is(err, tt.want) {
			t.Errorf("%s: err %v, want %v", tt.name, err, tt.want)
		}
	}
}

func FuzzParseRecord(f *testing.F) {
	f.Add(AppendRecord(nil, 0))
	f.Add(AppendRecord(nil, 1<<63))
	f.Add([]byte("hgb1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		seq, err := ParseRecord(b)
		if err != nil {
			return
		}
		// Whatever parses must be exactly what AppendRecord writes.
		if again := AppendRecord(nil, seq); string(again) != string(b[:RecordSize]) {
			t.Fatalf("parsed %d from %x, which re-encodes as %x", seq, b[:RecordSize], again)
		}
	})
}

// The client and server over loopback: every record comes back, on one
// connection, so the run survives.
func TestClientServerLoopback(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skip("no loopback TCP:", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeEcho(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeEcho: %v", err)
		}
	}()
	ready := make(chan struct{})
	tr, err := RunClient(ctx, ClientConfig{Addr: ln.Addr().String(), Interval: 5 * time.Millisecond, Duration: 200 * time.Millisecond,
		Drain: 2 * time.Second, Ready: func() { close(ready) }})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-ready:
	default:
		t.Error("Ready never called")
	}
	if !tr.Survived || tr.Conns != 1 || len(tr.Errors) > 0 {
		t.Fatalf("survived %v conns %d errors %v", tr.Survived, tr.Conns, tr.Errors)
	}
	if len(tr.Samples) < 5 {
		t.Fatalf("only %d records sent", len(tr.Samples))
	}
	for _, s := range tr.Samples {
		if s.EchoNS < s.SentNS {
			t.Fatalf("record %d: echo %d before send %d", s.Seq, s.EchoNS, s.SentNS)
		}
	}
}

// A server that sends back garbage breaks the session, and the client
// says so.
func TestClientDetectsCorruption(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Skip("no loopback TCP:", err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, RecordSize)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
					c.Write(AppendRecord(nil, 99))
				}
			}()
		}
	}()
	tr, err := RunClient(context.Background(), ClientConfig{Addr: ln.Addr().String(), Interval: 5 * time.Millisecond, Duration: 100 * time.Millisecond, Drain: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if tr.Survived || len(tr.Errors) == 0 {
		t.Fatalf("survived %v with errors %v", tr.Survived, tr.Errors)
	}
}
