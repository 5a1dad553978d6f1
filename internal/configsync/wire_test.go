package configsync

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/hagate/hagate/internal/checksum"
	"github.com/hagate/hagate/internal/seal"
)

func TestRoundTrip(t *testing.T) {
	req := Request{Op: OpText, Part: checksum.Ruleset, Nonce: [16]byte{1, 2, 3}}
	got, err := ParseRequest(req.Append(nil))
	if err != nil || got != req {
		t.Fatalf("request: %+v, %v", got, err)
	}
	resp := Response{Status: OK, Op: OpApply, Part: checksum.Ruleset, Nonce: [16]byte{9}, Sum: 42, Body: []byte("table ip t {\n}\n")}
	r, err := ParseResponse(resp.Append(nil))
	if err != nil || r.Sum != 42 || !bytes.Equal(r.Body, resp.Body) || r.Nonce != resp.Nonce {
		t.Fatalf("response: %+v, %v", r, err)
	}
	for _, bad := range [][]byte{nil, {1, 1, 1}, append([]byte{2, 1, 1}, make([]byte, 16)...), append([]byte{1, 9, 1}, make([]byte, 16)...), append([]byte{1, 1, 99}, make([]byte, 16)...)} {
		if _, err := ParseRequest(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("request %x: %v", bad, err)
		}
	}
	if _, err := ParseResponse(append([]byte{1, 7, 1, 1}, make([]byte, 24)...)); !errors.Is(err, ErrMalformed) {
		t.Error("bad status accepted")
	}
}

func FuzzParse(f *testing.F) {
	f.Add(Request{Op: OpApply, Part: checksum.Ruleset}.Append(nil))
	f.Add(Response{Op: OpText, Part: checksum.Routes, Sum: 5, Body: []byte("x")}.Append(nil))
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := ParseRequest(b); err == nil && !bytes.Equal(r.Append(nil), b) {
			t.Fatalf("request re-encodes differently")
		}
		if r, err := ParseResponse(b); err == nil && !bytes.Equal(r.Append(nil), b) {
			t.Fatalf("response re-encodes differently")
		}
	})
}

func testPeer(t *testing.T, id string, key *seal.Keyring) *Peer {
	s, err := seal.NewSealer(key, seal.Encrypt, seal.ConfigSync, 1, id, uint64(time.Now().UnixNano()))
	if err != nil {
		t.Fatal(err)
	}
	return &Peer{Sealer: s, Opener: seal.NewOpener(key, seal.Encrypt, seal.ConfigSync, 1, id, time.Minute), MaxSize: 1 << 10, Log: slog.Default()}
}

// A fetch over loopback gets the content, a content over max_size is
// refused, and a member with another key gets nothing.
func TestFetch(t *testing.T) {
	key, err := seal.ParseKeys([]byte(strings.Repeat("ab", 32) + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	other, _ := seal.ParseKeys([]byte(strings.Repeat("cd", 32) + "\n"))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := testPeer(t, "gw1", key)
	body := []byte("table ip t {\n}\n")
	go srv.Serve(ctx, ln, func(_ context.Context, op Op, part checksum.Part) ([]byte, uint64, error) {
		if part == checksum.Routes {
			return bytes.Repeat([]byte("x"), 2<<10), 1, nil
		}
		return body, checksum.Of(body), nil
	})
	cli := testPeer(t, "gw2", key)
	cli.Port = ln.Addr().(*net.TCPAddr).Port
	lo := netip.MustParseAddr("127.0.0.1")
	resp, err := cli.Fetch(ctx, lo, OpApply, checksum.Ruleset)
	if err != nil || !bytes.Equal(resp.Body, body) || resp.Sum != checksum.Of(body) {
		t.Fatalf("fetch: %+v, %v", resp, err)
	}
	if _, err := cli.Fetch(ctx, lo, OpApply, checksum.Routes); !errors.Is(err, ErrRefused) {
		t.Fatalf("oversized content: %v", err)
	}
	stranger := testPeer(t, "gw3", other)
	stranger.Port = cli.Port
	if _, err := stranger.Fetch(ctx, lo, OpApply, checksum.Ruleset); err == nil {
		t.Fatal("a member with another key got the ruleset")
	}
}
