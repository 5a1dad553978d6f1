package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"sync"
	"time"
)

// The echo protocol: the client writes fixed-size records and the server
// writes back every byte it reads. A record is
//
//	magic "hgb1" | sequence number (uint64, big endian) | CRC-32 (IEEE) of the first 12 bytes
//
// so the client sees at once a lost, duplicated, reordered or corrupted
// byte: the next record it reads is not the one it expects.
const (
	RecordSize  = 16
	recordMagic = "hgb1"
)

// Errors of ParseRecord.
var (
	ErrShortRecord = errors.New("echo: short record")
	ErrBadMagic    = errors.New("echo: bad magic")
	ErrBadChecksum = errors.New("echo: bad checksum")
)

// AppendRecord appends the record carrying seq to b.
func AppendRecord(b []byte, seq uint64) []byte {
	start := len(b)
	b = append(b, recordMagic...)
	b = binary.BigEndian.AppendUint64(b, seq)
	return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b[start:start+12]))
}

// ParseRecord returns the sequence number of the record at the start of b.
func ParseRecord(b []byte) (uint64, error) {
	if len(b) < RecordSize {
		return 0, fmt.Errorf("%w: %d bytes", ErrShortRecord, len(b))
	}
	if string(b[:4]) != recordMagic {
		return 0, ErrBadMagic
	}
	if crc32.ChecksumIEEE(b[:12]) != binary.BigEndian.Uint32(b[12:16]) {
		return 0, ErrBadChecksum
	}
	return binary.BigEndian.Uint64(b[4:12]), nil
}

// ServeEcho accepts connections on ln and echoes every byte back until ctx
// ends.
func ServeEcho(ctx context.Context, ln net.Listener) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("echo server: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			done := context.AfterFunc(ctx, func() { c.Close() })
			defer done()
			io.Copy(c, c)
		}()
	}
}

// Sample is one record the client sent. Times are Unix nanoseconds, so
// that they line up with the fault times the benchmark records in another
// process.
type Sample struct {
	Seq    uint64 `json:"seq"`
	Conn   int    `json:"conn"` // 0 for the first connection, 1 after the first reconnect, ...
	SentNS int64  `json:"sent_ns"`
	EchoNS int64  `json:"echo_ns,omitempty"` // 0: never echoed (lost)
}

// Trace is what one client run saw.
type Trace struct {
	StartNS  int64    `json:"start_ns"`
	Samples  []Sample `json:"samples"`
	Conns    int      `json:"conns"`            // connections opened
	Errors   []string `json:"errors,omitempty"` // why connections ended early
	Survived bool     `json:"survived"`         // one connection, every record echoed once and in order
}

// ClientConfig shapes a client run.
type ClientConfig struct {
	Addr     string
	Interval time.Duration // between records, default 50ms
	Duration time.Duration // sending time
	Drain    time.Duration // wait for outstanding echoes after sending stops, default 3s
	// Stall: a connection with records outstanding and no echo for this
	// long is given up (a session the network dropped silently), and a new
	// one is opened. Default 10s.
	Stall time.Duration
	// Ready, if set, is called once the first echo came back.
	Ready func()
}

// clientConn is one TCP connection of the client and what it is owed.
type clientConn struct {
	c        net.Conn
	idx      int
	mu       sync.Mutex
	next     uint64 // the next sequence number it must echo
	sent     uint64 // records written on it
	lastEcho time.Time
	err      error
	dead     chan struct{}
}

// RunClient sends a record every Interval for Duration over one TCP
// connection, timing each echo, and reconnects if the connection breaks
// or stalls (the run then did not survive). Bounded: it returns within
// Duration + Drain + a connect timeout.
func RunClient(ctx context.Context, cfg ClientConfig) (Trace, error) {
	if cfg.Interval <= 0 {
		cfg.Interval = 50 * time.Millisecond
	}
	if cfg.Drain <= 0 {
		cfg.Drain = 3 * time.Second
	}
	if cfg.Stall <= 0 {
		cfg.Stall = 10 * time.Second
	}
	start := time.Now()
	tr := Trace{StartNS: start.UnixNano()}
	var mu sync.Mutex // guards tr.Samples' EchoNS and tr.Errors
	var readyOnce sync.Once

	dial := func(idx int, first uint64) (*clientConn, error) {
		d := net.Dialer{Timeout: time.Second}
		c, err := d.DialContext(ctx, "tcp", cfg.Addr)
		if err != nil {
			return nil, err
		}
		cc := &clientConn{c: c, idx: idx, next: first, sent: first, lastEcho: time.Now(), dead: make(chan struct{})}
		go func() {
			defer close(cc.dead)
			buf := make([]byte, RecordSize)
			for {
				if _, err := io.ReadFull(c, buf); err != nil {
					cc.mu.Lock()
					if cc.err == nil {
						cc.err = err
					}
					cc.mu.Unlock()
					return
				}
				now := time.Now()
				seq, err := ParseRecord(buf)
				cc.mu.Lock()
				if err == nil && seq != cc.next {
					err = fmt.Errorf("echo: got record %d, want %d", seq, cc.next)
				}
				if err != nil {
					if cc.err == nil {
						cc.err = err
					}
					cc.mu.Unlock()
					c.Close()
					return
				}
				cc.next++
				cc.lastEcho = now
				cc.mu.Unlock()
				mu.Lock()
				if seq < uint64(len(tr.Samples)) {
					tr.Samples[seq].EchoNS = now.UnixNano()
				}
				mu.Unlock()
				readyOnce.Do(func() {
					if cfg.Ready != nil {
						cfg.Ready()
					}
				})
			}
		}()
		return cc, nil
	}

	var cur *clientConn
	broken := func(cc *clientConn, why string) {
		mu.Lock()
		tr.Errors = append(tr.Errors, fmt.Sprintf("conn %d after %s: %s", cc.idx, time.Since(start).Round(time.Millisecond), why))
		mu.Unlock()
		cc.c.Close()
	}
	var seq uint64
	tick := time.NewTicker(cfg.Interval)
	defer tick.Stop()
	end := start.Add(cfg.Duration)
	var rec []byte
	for now := time.Now(); now.Before(end); now = time.Now() {
		if cur == nil {
			cc, err := dial(tr.Conns, seq)
			if err == nil {
				cur = cc
				tr.Conns++
			}
		}
		if cur != nil {
			cur.mu.Lock()
			err, stalled := cur.err, cur.next < cur.sent && time.Since(cur.lastEcho) > cfg.Stall
			cur.mu.Unlock()
			switch {
			case err != nil:
				broken(cur, err.Error())
				cur = nil
			case stalled:
				broken(cur, fmt.Sprintf("no echo for %s", cfg.Stall))
				cur = nil
			}
		}
		if cur != nil {
			mu.Lock()
			tr.Samples = append(tr.Samples, Sample{Seq: seq, Conn: cur.idx, SentNS: time.Now().UnixNano()})
			mu.Unlock()
			rec = AppendRecord(rec[:0], seq)
			cur.mu.Lock()
			cur.sent = seq + 1
			cur.mu.Unlock()
			seq++
			// A 16-byte write only blocks once the socket buffer is full,
			// minutes into an outage: a deadline then ends the connection.
			cur.c.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := cur.c.Write(rec); err != nil {
				broken(cur, err.Error())
				cur = nil
			}
		}
		select {
		case <-ctx.Done():
			return tr, ctx.Err()
		case <-tick.C:
		}
	}
	if cur != nil {
		deadline := time.Now().Add(cfg.Drain)
		for time.Now().Before(deadline) {
			cur.mu.Lock()
			done, err := cur.next >= cur.sent, cur.err
			cur.mu.Unlock()
			if done || err != nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		cur.mu.Lock()
		err, owed := cur.err, cur.sent-cur.next
		cur.mu.Unlock()
		if err != nil {
			broken(cur, err.Error())
		} else if owed > 0 {
			broken(cur, fmt.Sprintf("%d records never echoed", owed))
		}
		cur.c.Close()
		<-cur.dead
	}
	mu.Lock()
	defer mu.Unlock()
	tr.Survived = tr.Conns == 1 && len(tr.Errors) == 0
	return tr, nil
}
