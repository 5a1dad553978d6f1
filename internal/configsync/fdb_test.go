package configsync

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hagate/hagate/internal/checksum"
	"github.com/hagate/hagate/internal/netif"
	"github.com/hagate/hagate/internal/seal"
)

var testFDB = []netif.FDBEntry{
	{MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, Port: "lan"},
	{MAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, Port: "wan0.100"},
}

func TestFDBRoundTrip(t *testing.T) {
	b, err := AppendFDB(nil, testFDB)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseFDB(b)
	if err != nil || !reflect.DeepEqual(got, testFDB) {
		t.Fatalf("ParseFDB: %v, %v", got, err)
	}
	if got, err := ParseFDB(nil); err != nil || len(got) != 0 {
		t.Fatalf("empty database: %v, %v", got, err)
	}
	for _, bad := range [][]byte{b[:3], b[:6], b[:8], []byte{2, 0, 0, 0, 0, 1, 0}, append([]byte{2, 0, 0, 0, 0, 1, 16}, strings.Repeat("x", 16)...)} {
		if _, err := ParseFDB(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseFDB(%x): %v", bad, err)
		}
	}
	for _, bad := range []netif.FDBEntry{{MAC: net.HardwareAddr{1, 2}, Port: "lan"}, {MAC: testFDB[0].MAC, Port: ""}, {MAC: testFDB[0].MAC, Port: strings.Repeat("x", 16)}} {
		if _, err := AppendFDB(nil, []netif.FDBEntry{bad}); err == nil {
			t.Errorf("AppendFDB(%+v) accepted", bad)
		}
	}
	// The request carries no part; one with a part is refused.
	req := Request{Op: OpFDB}
	if got, err := ParseRequest(req.Append(nil)); err != nil || got != req {
		t.Fatalf("request: %+v, %v", got, err)
	}
	if _, err := ParseRequest(Request{Op: OpFDB, Part: checksum.Ruleset}.Append(nil)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("request with a part: %v", err)
	}
}

func FuzzParseFDB(f *testing.F) {
	seed, _ := AppendFDB(nil, testFDB)
	f.Add(seed)
	f.Add([]byte{})
	f.Add([]byte{2, 0, 0, 0, 0, 1, 15})
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := ParseFDB(b)
		if err != nil {
			return
		}
		again, err := AppendFDB(nil, entries)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("re-encodes to %x (%v), read %x", again, err, b)
		}
	})
}

// A primary that serves its database is read; a primary of a build
// without OpFDB (it closes the connection at the unknown request, as this
// server does) gives an error, nothing else: the subordinate keeps what
// it had.
func TestFetchFDB(t *testing.T) {
	key, err := seal.ParseKeys([]byte(strings.Repeat("ab", 32) + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lo := netip.MustParseAddr("127.0.0.1")
	cli := testPeer(t, "gw2", key)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := testPeer(t, "gw1", key)
	go srv.Serve(ctx, ln, func(_ context.Context, op Op, part checksum.Part) ([]byte, uint64, error) {
		if op != OpFDB || part != 0 {
			return nil, 0, errors.New("unexpected request")
		}
		b, err := AppendFDB(nil, testFDB)
		return b, checksum.Of(b), err
	})
	cli.Port = ln.Addr().(*net.TCPAddr).Port
	got, err := cli.FetchFDB(ctx, lo)
	if err != nil || !reflect.DeepEqual(got, testFDB) {
		t.Fatalf("FetchFDB: %v, %v", got, err)
	}

	old, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	go func() {
		for {
			c, err := old.Accept()
			if err != nil {
				return
			}
			// What Peer.answer of a build without OpFDB does: the
			// request parses as malformed (unknown op) and the
			// connection closes without an answer.
			fc := &conn{c: c, sealer: srv.Sealer, opener: srv.Opener}
			fc.read(requestLen, time.Now().Add(time.Second))
			c.Close()
		}
	}()
	cli.Port = old.Addr().(*net.TCPAddr).Port
	if got, err := cli.FetchFDB(ctx, lo); err == nil {
		t.Fatalf("a primary of an older build answered %v", got)
	}
}
