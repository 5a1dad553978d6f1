package seal

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func mustKeys(t testing.TB, s string) *Keyring {
	t.Helper()
	kr, err := ParseKeys([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

func reason(err error) string {
	var d *DropError
	if errors.As(err, &d) {
		return d.Reason
	}
	if err == nil {
		return ""
	}
	return "not a DropError: " + err.Error()
}

func TestRoundTrip(t *testing.T) {
	kr := mustKeys(t, "# cluster key\ncorrect horse battery staple\n")
	for _, mode := range []Mode{Plain, Authenticate, Encrypt} {
		t.Run(mode.String(), func(t *testing.T) {
			s, err := NewSealer(kr, mode, Heartbeat, 7, "gw1", 100)
			if err != nil {
				t.Fatal(err)
			}
			o := NewOpener(kr, mode, Heartbeat, 7, "gw2", time.Minute)
			msg := []byte("hello cluster")
			f := s.Seal(nil, 3, t0, msg)
			if mode == Encrypt && bytes.Contains(f, msg) {
				t.Fatal("payload visible in an encrypted frame")
			}
			if mode != Encrypt && !bytes.Contains(f, msg) {
				t.Fatal("payload not in clear")
			}
			h, p, err := o.Open(f, t0.Add(time.Second))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(p, msg) || h.Sender != "gw1" || h.Stream != 3 || h.Seq != 0 || h.Epoch != 100 {
				t.Fatalf("got %+v %q", h, p)
			}
			if _, _, err := o.Open(f, t0); reason(err) != "replay" {
				t.Fatalf("replayed frame: %v", err)
			}
			// A second frame on the same stream is fresh.
			if _, _, err := o.Open(s.Seal(nil, 3, t0, msg), t0); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	kr := mustKeys(t, "correct horse battery staple")
	other := mustKeys(t, "another cluster's secret key")
	s, _ := NewSealer(kr, Encrypt, Heartbeat, 7, "gw1", 100)
	frame := s.Seal(nil, 0, t0, []byte("payload"))

	cases := []struct {
		name   string
		o      *Opener
		frame  []byte
		now    time.Time
		reason string
	}{
		{"wrong key", NewOpener(other, Encrypt, Heartbeat, 7, "gw2", 0), frame, t0, "key"},
		{"other group", NewOpener(kr, Encrypt, Heartbeat, 8, "gw2", 0), frame, t0, "group"},
		{"other purpose", NewOpener(kr, Encrypt, Sync, 7, "gw2", 0), frame, t0, "purpose"},
		{"plaintext receiver", NewOpener(kr, Plain, Heartbeat, 7, "gw2", 0), frame, t0, "mode"},
		{"own id", NewOpener(kr, Encrypt, Heartbeat, 7, "gw1", 0), frame, t0, "self"},
		{"old capture", NewOpener(kr, Encrypt, Heartbeat, 7, "gw2", time.Minute), frame, t0.Add(2 * time.Minute), "stale"},
		{"from the future", NewOpener(kr, Encrypt, Heartbeat, 7, "gw2", time.Minute), frame, t0.Add(-2 * time.Minute), "stale"},
		{"truncated", NewOpener(kr, Encrypt, Heartbeat, 7, "gw2", 0), frame[:len(frame)-1], t0, "auth"},
		{"short", NewOpener(kr, Encrypt, Heartbeat, 7, "gw2", 0), frame[:10], t0, "short"},
		{"garbage", NewOpener(kr, Encrypt, Heartbeat, 7, "gw2", 0), bytes.Repeat([]byte{0xff}, 80), t0, "magic"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, _, err := c.o.Open(c.frame, c.now); reason(err) != c.reason {
				t.Fatalf("got %v, want reason %q", err, c.reason)
			}
		})
	}
}

// TestEveryByteAuthenticated flips each byte of a frame in turn.
func TestEveryByteAuthenticated(t *testing.T) {
	kr := mustKeys(t, "correct horse battery staple")
	for _, mode := range []Mode{Authenticate, Encrypt} {
		s, _ := NewSealer(kr, mode, Sync, 1, "gw1", 5)
		frame := s.Seal(nil, 0, t0, []byte("a sync batch"))
		for i := range frame {
			o := NewOpener(kr, mode, Sync, 1, "gw2", 0)
			bad := bytes.Clone(frame)
			bad[i] ^= 0x01
			if _, _, err := o.Open(bad, t0); err == nil {
				t.Fatalf("%s: flipping byte %d went unnoticed", mode, i)
			}
		}
	}
}

func TestRebootAndRollover(t *testing.T) {
	oldKey := "the old cluster secret"
	newKey := "the new cluster secret"
	// The receiver accepts both keys during a rollover.
	recv := NewOpener(mustKeys(t, oldKey+"\n"+newKey), Encrypt, Heartbeat, 7, "gw2", 0)
	boot1, _ := NewSealer(mustKeys(t, oldKey), Encrypt, Heartbeat, 7, "gw1", 100)
	boot2, _ := NewSealer(mustKeys(t, newKey+"\n"+oldKey), Encrypt, Heartbeat, 7, "gw1", 200)
	early := boot1.Seal(nil, 0, t0, []byte("x"))
	if _, _, err := recv.Open(early, t0); err != nil {
		t.Fatalf("old key: %v", err)
	}
	// gw1 reboots with the new key first: its sequence numbers restart.
	if _, _, err := recv.Open(boot2.Seal(nil, 0, t0, []byte("y")), t0); err != nil {
		t.Fatalf("new key after reboot: %v", err)
	}
	// A frame of the earlier boot is now refused even though its seq was never seen.
	late := boot1.Seal(nil, 0, t0, []byte("z"))
	if _, _, err := recv.Open(late, t0); reason(err) != "stale" {
		t.Fatalf("frame from earlier boot: %v", err)
	}
}

func TestParseKeys(t *testing.T) {
	for _, bad := range []string{"", "# only a comment\n", "short", "same key here!!!\nsame key here!!!"} {
		if _, err := ParseKeys([]byte(bad)); err == nil {
			t.Errorf("ParseKeys(%q) accepted", bad)
		}
	}
}

func FuzzOpen(f *testing.F) {
	kr, _ := ParseKeys([]byte("correct horse battery staple"))
	s, _ := NewSealer(kr, Encrypt, Heartbeat, 7, "gw1", 100)
	f.Add(s.Seal(nil, 0, t0, []byte("seed")))
	f.Add([]byte("HG"))
	f.Fuzz(func(t *testing.T, frame []byte) {
		for _, mode := range []Mode{Plain, Authenticate, Encrypt} {
			o := NewOpener(kr, mode, Heartbeat, 7, "gw2", time.Minute)
			h, p, err := o.Open(frame, t0)
			if err == nil && mode != Plain && h.Sender != "gw1" {
				t.Fatalf("forged frame accepted: %+v %q", h, p)
			}
		}
	})
}

func BenchmarkSealOpen(b *testing.B) {
	kr, _ := ParseKeys([]byte("correct horse battery staple"))
	s, _ := NewSealer(kr, Encrypt, Heartbeat, 7, "gw1", 100)
	o := NewOpener(kr, Encrypt, Heartbeat, 7, "gw2", 0)
	payload := make([]byte, 64)
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		f := s.Seal(buf[:0], 0, t0, payload)
		if _, _, err := o.Open(f, t0); err != nil {
			b.Fatal(err)
		}
	}
}

// A rollover while running: the sender rekeys, sequence numbers go on, the
// receiver accepts both keys, then only the new one.
func TestRekeyKeepsSequence(t *testing.T) {
	oldKey, newKey := "the old cluster secret", "the new cluster secret"
	s, _ := NewSealer(mustKeys(t, oldKey), Encrypt, Heartbeat, 7, "gw1", 100)
	o := NewOpener(mustKeys(t, oldKey+"\n"+newKey), Encrypt, Heartbeat, 7, "gw2", 0)
	if _, _, err := o.Open(s.Seal(nil, 0, t0, []byte("a")), t0); err != nil {
		t.Fatal(err)
	}
	if err := s.Rekey(mustKeys(t, newKey)); err != nil {
		t.Fatal(err)
	}
	h, _, err := o.Open(s.Seal(nil, 0, t0, []byte("b")), t0)
	if err != nil || h.Seq != 1 {
		t.Fatalf("after rekey: seq %d, %v", h.Seq, err)
	}
	old, _ := NewSealer(mustKeys(t, oldKey), Encrypt, Heartbeat, 7, "gw1", 100)
	old.Seal(nil, 0, t0, nil)
	old.Seal(nil, 0, t0, nil)
	o.SetKeyring(mustKeys(t, newKey))
	if _, _, err := o.Open(old.Seal(nil, 0, t0, []byte("c")), t0); reason(err) != "key" {
		t.Fatalf("old key after it was removed: %v", err)
	}
}

// A receiver that restarted refuses what was sent before it started, even
// within max_clock_skew: it has no replay window for those frames.
func TestRefuseBeforeStart(t *testing.T) {
	kr := mustKeys(t, "correct horse battery staple")
	s, _ := NewSealer(kr, Encrypt, Heartbeat, 7, "gw1", 100)
	captured := s.Seal(nil, 0, t0, []byte("old"))
	o := NewOpener(kr, Encrypt, Heartbeat, 7, "gw2", time.Minute)
	o.RefuseBefore(t0.Add(10 * time.Second))
	if _, _, err := o.Open(captured, t0.Add(12*time.Second)); reason(err) != "stale" {
		t.Fatalf("capture from before the start: %v", err)
	}
	if _, _, err := o.Open(s.Seal(nil, 0, t0.Add(11*time.Second), []byte("new")), t0.Add(12*time.Second)); err != nil {
		t.Fatalf("frame sent after the start: %v", err)
	}
}

// The transport takes a member's boot id from its sealer.
func TestSealerEpoch(t *testing.T) {
	s, err := NewSealer(mustKeys(t, "correct horse battery staple"), Encrypt, Heartbeat, 7, "gw1", 1795466378453636955)
	if err != nil {
		t.Fatal(err)
	}
	h, _, err := ParseHeader(s.Seal(nil, 0, t0, nil))
	if err != nil || s.Epoch() != 1795466378453636955 || h.Epoch != s.Epoch() {
		t.Fatalf("Epoch() %d, header epoch %d, %v", s.Epoch(), h.Epoch, err)
	}
}

// A sealer forgets the streams of ended connections: a node that redials
// for months does not hold a sequence number for each connection it had.
func TestSealerForgetsStreams(t *testing.T) {
	s, err := NewSealer(mustKeys(t, "correct horse battery staple"), Encrypt, Sync, 7, "gw1", 100)
	if err != nil {
		t.Fatal(err)
	}
	for stream := range uint32(1000) {
		s.Seal(nil, stream, t0, []byte("hello"))
		s.Forget(stream)
	}
	s.Seal(nil, 1000, t0, nil)
	if n := s.Streams(); n != 1 {
		t.Fatalf("after 1000 ended streams and one open: %d streams held, want 1", n)
	}
}
