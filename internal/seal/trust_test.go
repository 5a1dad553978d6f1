package seal

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"math"
	"strings"
	"testing"
	"time"
)

// A key from `hagate genkey`: 32 random bytes in hex.
const randomKey = "9f3c1d6e2b7a40c58e1f9a3d7c2b6e0415a8d3f7c9e1b2a4068d5f3e7c1a9b2d"

func cheapStretch(t *testing.T) {
	t.Helper()
	saved := stretchCost
	stretchCost.time, stretchCost.memoryKiB, stretchCost.threads = 1, 64, 1
	t.Cleanup(func() { stretchCost = saved })
}

// Finding 3: a key file line that is not 32 random bytes is refused unless
// passphrases are allowed.
func TestKeyPolicyRefusesPassphrase(t *testing.T) {
	cheapStretch(t)
	weak := []string{
		"correct horse battery staple",
		strings.Repeat("0", 64),                    // hex, but no randomness
		strings.Repeat("ab", 32),                   // a typed pattern
		"9f3c1d6e2b7a40c58e1f9a3d7c2b6e0415a8d3f7", // 20 random bytes
	}
	for _, w := range weak {
		if _, err := ParseKeyFile([]byte(w), KeyPolicy{}); err == nil || !strings.Contains(err.Error(), "security.passphrase") {
			t.Errorf("%q accepted without security.passphrase: %v", w, err)
		}
		if _, err := ParseKeyFile([]byte(w), KeyPolicy{Passphrase: true}); err != nil {
			t.Errorf("%q refused with security.passphrase: %v", w, err)
		}
	}
	gen, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	for _, good := range []string{randomKey, gen, "n8v0Qm2x9K4hT7cWq1sYb5Lr3Zp6Jd8Fa0Ue2Gi4Xk8=" /* openssl rand -base64 32 */} {
		if _, err := ParseKeyFile([]byte(good), KeyPolicy{}); err != nil {
			t.Errorf("random key %q refused: %v", good, err)
		}
	}
}

// A random key keeps release 0.1.0's derivation: same key id and traffic
// keys as ParseKeys (the 0.1.0 parser), so old and new members interoperate
// both ways, with or without security.passphrase.
func TestRandomKeyInteroperatesWithOldRelease(t *testing.T) {
	old := mustKeys(t, randomKey) // how 0.1.0 reads the file
	want, _ := hkdf.Key(sha256.New, []byte(randomKey), []byte("hagate key id"), "", 4)
	if !bytes.Equal(old.keys[0].id[:], want) {
		t.Fatalf("0.1.0 key id derivation changed: %x, want %x", old.keys[0].id, want)
	}
	for _, pass := range []bool{false, true} {
		kr, err := ParseKeyFile([]byte(randomKey), KeyPolicy{Passphrase: pass, Group: 7})
		if err != nil {
			t.Fatal(err)
		}
		if kr.keys[0].id != old.keys[0].id {
			t.Fatalf("passphrase %v: key id %x, 0.1.0 has %x", pass, kr.keys[0].id, old.keys[0].id)
		}
		for _, dir := range []struct{ send, recv *Keyring }{{old, kr}, {kr, old}} {
			s, _ := NewSealer(dir.send, Encrypt, Heartbeat, 7, "gw1", 100)
			o := NewOpener(dir.recv, Encrypt, Heartbeat, 7, "gw2", 0)
			if _, _, err := o.Open(s.Seal(nil, 0, t0, []byte("hi")), t0); err != nil {
				t.Fatalf("passphrase %v: %v", pass, err)
			}
		}
	}
}

// A stretched passphrase has its own key id, salted by the group: the id
// sent in clear no longer confirms a guess at the cost of one HKDF.
func TestPassphraseStretched(t *testing.T) {
	cheapStretch(t)
	const pass = "correct horse battery staple"
	plain := mustKeys(t, pass)
	g7, err := ParseKeyFile([]byte(pass), KeyPolicy{Passphrase: true, Group: 7})
	if err != nil {
		t.Fatal(err)
	}
	g8, _ := ParseKeyFile([]byte(pass), KeyPolicy{Passphrase: true, Group: 8})
	again, _ := ParseKeyFile([]byte(pass), KeyPolicy{Passphrase: true, Group: 7})
	switch {
	case g7.keys[0].id == plain.keys[0].id || bytes.Equal(g7.keys[0].secret, plain.keys[0].secret):
		t.Fatal("passphrase used without stretching")
	case g7.keys[0].id == g8.keys[0].id:
		t.Fatal("same key id in two groups: the salt is not per cluster")
	case g7.keys[0].id != again.keys[0].id:
		t.Fatal("stretching is not deterministic: members would not agree")
	}
	want, _ := hkdf.Key(sha256.New, stretch(pass, 7), []byte("hagate key id"), "", 4)
	if !bytes.Equal(g7.keys[0].id[:], want) {
		t.Fatal("key id not derived from the stretched key")
	}
}

// Finding 4, first trigger: a member restarts with its clock set back, so
// its new boot id is lower than the one its peers stored. It is refused as
// a replay while the old boot could still be speaking, heard once the old
// boot has been silent for the reboot silence.
func TestClockSteppedBackAcrossRestart(t *testing.T) {
	kr := mustKeys(t, randomKey)
	o := NewOpener(kr, Encrypt, Heartbeat, 7, "gw2", time.Minute)
	o.SetRebootSilence(2 * time.Second)
	before, _ := NewSealer(kr, Encrypt, Heartbeat, 7, "gw1", uint64(t0.UnixNano()))
	if _, _, err := o.Open(before.Seal(nil, 0, t0.Add(time.Second), nil), t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	// Restarted at t0+1.5s real time, with its clock 30 s behind.
	clock := func(real time.Duration) time.Time { return t0.Add(real - 30*time.Second) }
	after, _ := NewSealer(kr, Encrypt, Heartbeat, 7, "gw1", uint64(clock(1500*time.Millisecond).UnixNano()))
	if _, _, err := o.Open(after.Seal(nil, 0, clock(1600*time.Millisecond), nil), t0.Add(1600*time.Millisecond)); reason(err) != "stale" {
		t.Fatalf("lower boot id while the old boot may still speak: %v", err)
	}
	h, _, err := o.Open(after.Seal(nil, 0, clock(3100*time.Millisecond), nil), t0.Add(3100*time.Millisecond))
	if err != nil || h.Epoch != after.Epoch() {
		t.Fatalf("restarted member still refused after the old boot's silence: %v", err)
	}
	// From then on the old boot is the one refused: its frames captured
	// before the restart, replayed, do not bring it back.
	if _, _, err := o.Open(before.Seal(nil, 0, t0.Add(1200*time.Millisecond), nil), t0.Add(3200*time.Millisecond)); reason(err) != "stale" {
		t.Fatalf("old boot's capture after the restart was heard: %v", err)
	}
}

// Finding 4, second trigger: a key holder forges one frame in gw1's name
// with boot id 2^64-1. With the freshness check on it is refused outright;
// with it off it is accepted, but the real boot is heard again once the
// forged one has been silent for the reboot silence.
func TestForgedFutureEpoch(t *testing.T) {
	kr := mustKeys(t, randomKey)
	real, _ := NewSealer(kr, Encrypt, Heartbeat, 7, "gw1", uint64(t0.UnixNano()))
	forger, _ := NewSealer(kr, Encrypt, Heartbeat, 7, "gw1", math.MaxUint64)
	at := func(d time.Duration) time.Time { return t0.Add(d) }

	o := NewOpener(kr, Encrypt, Heartbeat, 7, "gw2", time.Minute)
	if _, _, err := o.Open(forger.Seal(nil, 0, at(time.Second), nil), at(time.Second)); reason(err) != "epoch" {
		t.Fatalf("forged boot id 2^64-1: %v", err)
	}
	if _, _, err := o.Open(real.Seal(nil, 0, at(2*time.Second), nil), at(2*time.Second)); err != nil {
		t.Fatalf("real boot after the forged frame: %v", err)
	}

	loose := NewOpener(kr, Encrypt, Heartbeat, 7, "gw2", 0) // max_clock_skew: 0
	loose.SetRebootSilence(2 * time.Second)
	if _, _, err := loose.Open(forger.Seal(nil, 0, at(time.Second), nil), at(time.Second)); err != nil {
		t.Fatalf("without the freshness check the forged frame authenticates: %v", err)
	}
	if _, _, err := loose.Open(real.Seal(nil, 0, at(2*time.Second), nil), at(2*time.Second)); reason(err) != "stale" {
		t.Fatalf("real boot right after the forged one: %v", err)
	}
	if _, _, err := loose.Open(real.Seal(nil, 0, at(3500*time.Millisecond), nil), at(3500*time.Millisecond)); err != nil {
		t.Fatalf("real boot still refused after the forged boot's silence: %v", err)
	}
	if _, _, err := loose.Open(forger.Seal(nil, 0, at(4*time.Second), nil), at(4*time.Second)); reason(err) != "stale" {
		t.Fatalf("the forged boot came back: %v", err)
	}
}

// Item 9: a sealer used for a new stream per sync connection keeps a
// bounded count, and a stream it forgot never repeats a sequence number
// (a repeated number would repeat a GCM nonce under the boot's key).
func TestSealerForgetsOldStreams(t *testing.T) {
	s, _ := NewSealer(mustKeys(t, randomKey), Encrypt, Sync, 7, "gw1", 100)
	used := map[[2]uint64]bool{}
	seal := func(stream uint32) {
		h, _, err := ParseHeader(s.Seal(nil, stream, t0, nil))
		if err != nil {
			t.Fatal(err)
		}
		k := [2]uint64{uint64(h.Stream), h.Seq}
		if used[k] {
			t.Fatalf("stream %d seq %d sealed twice", h.Stream, h.Seq)
		}
		used[k] = true
	}
	for stream := range uint32(10000) {
		seal(stream)
		seal(stream)
		seal(0) // one long-lived stream, used throughout
	}
	for stream := range uint32(300) { // streams forgotten long ago, used again
		seal(stream)
	}
	if n := len(s.seqs); n > maxSealStreams {
		t.Fatalf("sealer counts %d streams, bound %d", n, maxSealStreams)
	}
}
