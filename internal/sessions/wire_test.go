package sessions

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/hagate/hagate/internal/seal"
	"github.com/hagate/hagate/internal/sessions/session"
	"github.com/hagate/hagate/internal/sessions/syncproto"
)

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fakePrimary connects to a subordinate as "gw1" with the real key.
func fakePrimary(t *testing.T, to netip.AddrPort) (*frameConn, net.Conn) {
	c, err := net.Dial("tcp", to.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	sealer, err := seal.NewSealer(testKeys(t), seal.Authenticate, seal.Sync, 1, "gw1", uint64(time.Now().UnixNano()))
	if err != nil {
		t.Fatal(err)
	}
	fc := &frameConn{c: c, sealer: sealer, opener: seal.NewOpener(testKeys(t), seal.Authenticate, seal.Sync, 1, "gw1", 0), stream: 1, now: time.Now}
	if err := fc.write(syncproto.AppendHello(nil, syncproto.Hello{Version: syncproto.Version, NodeID: "gw1"}), time.Second); err != nil {
		t.Fatal(err)
	}
	_, p, err := fc.read(time.Second)
	if err != nil {
		t.Fatal(err)
	}
	m, err := syncproto.Decode(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Answer the subordinate's challenge.
	echo := syncproto.Hello{Version: syncproto.Version, NodeID: "gw1", Nonce: m.(syncproto.Hello).Nonce}
	if err := fc.write(syncproto.AppendHello(nil, echo), time.Second); err != nil {
		t.Fatal(err)
	}
	return fc, c
}

func TestSubordinateRefusesReplayedFrame(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := startNode(t, ctx, "gw2", nil)
	s.e.BecomeSubordinate(ctx, "gw1")
	fc, c := fakePrimary(t, s.addr(t))
	batch := syncproto.AppendBatch(nil, syncproto.Batch{Seq: 1, Changes: []session.Change{{Op: session.Upsert, Session: synthSession(1)}}})
	if err := fc.write(batch, time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the batch applied", func() bool { return s.mem.Len() == 1 })
	// The same sealed bytes again: refused, counted, connection dropped.
	if _, err := c.Write(fc.wbuf); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the replay counted", func() bool { return s.e.Stats().FrameErrors == 1 })
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	var b [64]byte
	for {
		if _, err := c.Read(b[:]); err != nil {
			break // closed by the subordinate (after an ack or two)
		}
	}
}

func TestSubordinateDropsStalledPrimary(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := startNode(t, ctx, "gw2", func(c *EngineConfig) { c.IdleTimeout = 200 * time.Millisecond })
	s.e.BecomeSubordinate(ctx, "gw1")
	_, c := fakePrimary(t, s.addr(t))
	// A valid length prefix, then nothing.
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], 100)
	c.Write(hdr[:])
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	var b [64]byte
	start := time.Now()
	for {
		if _, err := c.Read(b[:]); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("subordinate kept a stalled connection open")
			}
			break
		}
	}
	t.Logf("stalled connection dropped after %s", time.Since(start))
}

func TestSubordinateRefusesHugeFrame(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := startNode(t, ctx, "gw2", nil)
	s.e.BecomeSubordinate(ctx, "gw1")
	_, c := fakePrimary(t, s.addr(t))
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], MaxFrame+1)
	c.Write(hdr[:])
	waitFor(t, "the oversized frame counted", func() bool { return s.e.Stats().FrameErrors == 1 })
}

// A subordinate that accepts and then never reads must not hold up the
// primary or its other subordinates.
func TestPrimaryNotBlockedByStalledSubordinate(t *testing.T) {
	ctx, p, s := pair(t, func(c *EngineConfig) { c.IOTimeout = 300 * time.Millisecond; c.QueueLen = 100 })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close() // hold it open, read nothing
		}
	}()
	p.e.SetPeers([]netip.AddrPort{s.addr(t), netip.MustParseAddrPort(l.Addr().String())})
	if err := p.e.becomePrimaryMirrored(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 5000 {
		p.mem.Inject(session.Change{Op: session.Upsert, Session: synthSession(i)})
	}
	converge(t, p, s)
}

// A primary's batches, cut at maxPayload, stay under what a subordinate
// decodes (syncproto.MaxBatchChanges), even of the smallest changes.
func TestBatchesUnderDecodeBound(t *testing.T) {
	var w syncproto.BatchWriter
	w.Reset(nil)
	for i := 0; w.Len() < maxPayload; i++ {
		c := session.Change{Op: session.Delete, Session: session.Session{Key: synthSession(i).Key}}
		w.Add(&c)
	}
	if w.Count() > syncproto.MaxBatchChanges {
		t.Fatalf("a batch cut at %d bytes holds %d deletes, over MaxBatchChanges %d", maxPayload, w.Count(), syncproto.MaxBatchChanges)
	}
}
