package sessions

import (
	"context"
	"encoding/hex"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/hagate/hagate/internal/seal"
	"github.com/hagate/hagate/internal/sessions/syncproto"
)

// TestPrimaryFramesGolden pins the payloads a primary sends a subordinate,
// byte for byte: the handshake, a bulk of one session and its expectation,
// then one change of each kind. Release 0.1.0 subordinates read exactly
// these, so a change in how the engine cuts or orders batches shows here.
func TestPrimaryFramesGolden(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	p := startNode(t, ctx, "gw1", func(c *EngineConfig) { c.Expectation = true })
	m1, m2 := ftpControl(1), ftpControl(2)
	p.mem.Inject(upsert(m1))
	p.mem.InjectExpect(xupsert(ftpData(m1, 50001)))
	if err := p.e.becomePrimaryMirrored(ctx); err != nil {
		t.Fatal(err)
	}
	// The expectations are mirrored after the sessions: wait, so the bulk
	// carries this one.
	waitFor(t, "the expectation mirrored", func() bool { return p.e.ExpectStats().Held == 1 })
	p.e.SetPeers([]netip.AddrPort{netip.MustParseAddrPort(l.Addr().String())})

	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sealer, err := seal.NewSealer(testKeys(t), seal.Authenticate, seal.Sync, 1, "gw2", uint64(time.Now().UnixNano()))
	if err != nil {
		t.Fatal(err)
	}
	fc := &frameConn{c: c, sealer: sealer, opener: seal.NewOpener(testKeys(t), seal.Authenticate, seal.Sync, 1, "gw2", 0), stream: 1, now: time.Now}
	var got []string
	// next returns the next payload other than a heartbeat (their timing
	// is the clock's), acknowledging batches as a subordinate does.
	next := func() string {
		t.Helper()
		for {
			_, b, err := fc.read(5 * time.Second)
			if err != nil {
				t.Fatalf("after %d frames: %v", len(got), err)
			}
			m, err := syncproto.Decode(b, nil)
			if err != nil {
				t.Fatal(err)
			}
			var seq uint64
			switch m := m.(type) {
			case syncproto.Heartbeat:
				continue
			case syncproto.Batch:
				seq = m.Seq
			case syncproto.ExpectBatch:
				seq = m.Seq
			}
			if seq != 0 {
				if err := fc.write(syncproto.AppendAck(nil, syncproto.Ack{Seq: seq}), time.Second); err != nil {
					t.Fatal(err)
				}
			}
			got = append(got, hex.EncodeToString(b))
			return got[len(got)-1]
		}
	}
	next() // the primary's hello
	nonce := [syncproto.NonceLen]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	// Answered as a release 0.1.0 subordinate (version 3): after the
	// primary's hello, which offers its own version, every frame is what
	// 0.1.0 reads.
	answer := syncproto.Hello{Version: 3, NodeID: "gw2", Nonce: nonce}
	if err := fc.write(syncproto.AppendHello(nil, answer), time.Second); err != nil {
		t.Fatal(err)
	}
	for range 5 { // echo, bulk start, sessions, expectations, bulk end
		next()
	}
	p.mem.Inject(upsert(m2))
	p.mem.InjectExpect(xupsert(ftpData(m2, 50002)))
	next()
	next()
	want := goldenPrimaryFrames
	if len(got) != len(want) {
		t.Fatalf("%d frames, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("frame %d:\n got %s\nwant %s", i, got[i], want[i])
		}
	}
}

var goldenPrimaryFrames = []string{
	"01040003677731", // hello (version 4 offered)
	"010302036777310102030405060708090a0b0c0d0e0f10",                                 // hello echo
	"0200000000000000010000000000000001",                                             // bulk start
	"030000000000000001000000018306c000020bcb0071159c4100150e901c030000000003667470", // bulk: the session
	"08000000000000000200000001c106c000020bcb0071150000c351ffffffff000006c000020bcb0071159c410015ac0203667470116e61742d666f6c6c6f772d6d6173746572", // bulk: the expectation
	"0400000000000000010000000000000001",                                             // bulk end
	"030000000000000003000000018306c000020ccb0071159c4200150e901c030000000003667470", // a new session
	"08000000000000000400000001c106c000020ccb0071150000c352ffffffff000006c000020ccb0071159c420015ac0203667470116e61742d666f6c6c6f772d6d6173746572", // its expectation
}
