// Package seal owns the cryptographic framing of hagate's HA traffic:
// per-purpose, per-sender, per-boot keys derived with HKDF from the cluster
// key file, AEAD sealing (AES-256-GCM) of heartbeats and session-sync frames,
// and the replay and freshness checks on the receiving side.
package seal

import (
	"bufio"
	"bytes"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"

	"golang.org/x/crypto/argon2"
)

// MinKeyLen is the shortest secret accepted in a key file.
const MinKeyLen = 16

// RandomKeyBytes is how many random bytes a key must carry to be used as it
// is: 256 bits, beyond any offline guessing.
const RandomKeyBytes = 32

// KeyPolicy is what a key file must hold.
type KeyPolicy struct {
	// Passphrase allows secrets that are not RandomKeyBytes random bytes
	// (security.passphrase): they are stretched with Argon2id first, so
	// that each guess of an attacker holding captured traffic costs as much.
	Passphrase bool
	// Group is the cluster's group id: it salts the stretching, so one
	// precomputed table does not serve every cluster.
	Group uint16
}

// Argon2id cost of stretching a passphrase (RFC 9106's second recommended
// setting): about 0.1-0.3 s and 64 MiB once per key at start and at every
// reload. A variable so that tests can make it cheap.
var stretchCost = struct {
	time, memoryKiB uint32
	threads         uint8
}{3, 64 * 1024, 4}

// GenerateKey returns a new random key for a key file: RandomKeyBytes bytes
// in hex (what `hagate genkey` prints).
func GenerateKey() (string, error) {
	b := make([]byte, RandomKeyBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate key: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// isRandomKey reports whether a key file line is RandomKeyBytes or more
// random bytes written in hex or base64, as GenerateKey or
// `openssl rand -hex 32` / `-base64 32` write them. "Random" is checked
// coarsely: fewer than 16 distinct byte values in 32 random bytes has a
// probability below 2^-60, while a typed pattern ("0000...", "abab...") has
// far fewer.
func isRandomKey(s string) bool {
	b, err := hex.DecodeString(s)
	if err != nil {
		if b, err = base64.StdEncoding.DecodeString(s); err != nil {
			if b, err = base64.RawStdEncoding.DecodeString(s); err != nil {
				return false
			}
		}
	}
	if len(b) < RandomKeyBytes {
		return false
	}
	seen := map[byte]bool{}
	for _, c := range b {
		seen[c] = true
	}
	return len(seen) >= 16
}

// stretch turns a passphrase into a 32-byte secret with Argon2id, salted
// with the group id: "hagate passphrase v1" followed by the group id (two
// bytes, big-endian).
func stretch(passphrase string, group uint16) []byte {
	salt := binary.BigEndian.AppendUint16([]byte("hagate passphrase v1"), group)
	c := stretchCost
	return argon2.IDKey([]byte(passphrase), salt, c.time, c.memoryKiB, c.threads, 32)
}

// Keyring holds the cluster secrets. The first key seals what this node sends;
// every key is accepted on receipt, so a key can be rolled over cluster-wide
// without downtime: add the new key second everywhere, then move it first,
// then remove the old one.
type Keyring struct {
	keys []key
}

type key struct {
	id     [4]byte
	secret []byte
}

// LoadKeyFile reads a key file of random keys only: LoadKeys with the
// default policy (no passphrase).
func LoadKeyFile(path string) (*Keyring, error) { return LoadKeys(path, KeyPolicy{}) }

// LoadKeys reads a key file: one secret per line, blank lines and lines
// starting with '#' ignored. It refuses a file that others may read, and a
// secret that is not RandomKeyBytes random bytes unless p.Passphrase.
func LoadKeys(path string, p KeyPolicy) (*Keyring, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("key_file: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("key_file %s: readable by group or others (mode %#o); run chmod 600 %s", path, st.Mode().Perm(), path)
	}
	// Owned by another user, the file is that user's to rewrite: whoever
	// controls the key controls the cluster.
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != os.Geteuid() && sys.Uid != 0 {
		return nil, fmt.Errorf("key_file %s: owned by uid %d, not by root or this user (uid %d); run chown root %s", path, sys.Uid, os.Geteuid(), path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("key_file: %w", err)
	}
	kr, err := ParseKeyFile(data, p)
	if err != nil {
		return nil, fmt.Errorf("key_file %s: %w", path, err)
	}
	return kr, nil
}

// ParseKeyFile parses the contents of a key file under policy p. A random
// key is used as it is, as release 0.1.0 used every key, so members of
// both releases with the same key file understand each other; a passphrase
// (allowed by p.Passphrase) is stretched first.
func ParseKeyFile(data []byte, p KeyPolicy) (*Keyring, error) {
	return parseKeys(data, &p)
}

// ParseKeys parses the contents of a key file without a strength policy,
// every secret used as it is (release 0.1.0's rule): for tests and tools
// that make frames, never for a daemon's key file.
func ParseKeys(data []byte) (*Keyring, error) {
	return parseKeys(data, nil)
}

func parseKeys(data []byte, p *KeyPolicy) (*Keyring, error) {
	kr := &Keyring{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		if len(s) < MinKeyLen {
			return nil, fmt.Errorf("line %d: key is %d characters, want at least %d", line, len(s), MinKeyLen)
		}
		k := key{secret: []byte(s)}
		if p != nil && !isRandomKey(s) {
			if !p.Passphrase {
				return nil, fmt.Errorf("line %d: not %d random bytes in hex or base64, so guessable offline from captured traffic: "+
					"replace it with the output of `hagate genkey` (or `openssl rand -hex 32`), or set security.passphrase: true to have it stretched (Argon2id)", line, RandomKeyBytes)
			}
			k.secret = stretch(s, p.Group)
		}
		id, err := hkdf.Key(sha256.New, k.secret, []byte("hagate key id"), "", len(k.id))
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		copy(k.id[:], id)
		for _, o := range kr.keys {
			if o.id == k.id {
				return nil, fmt.Errorf("line %d: duplicate key", line)
			}
		}
		kr.keys = append(kr.keys, k)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(kr.keys) == 0 {
		return nil, errors.New("no key (want one secret of at least 16 characters per line)")
	}
	if len(kr.keys) > 4 {
		return nil, fmt.Errorf("%d keys, at most 4 (one in use, the rest being rolled over)", len(kr.keys))
	}
	return kr, nil
}

// IDs returns the short identifiers of the keys, sending key first, for logs.
func (kr *Keyring) IDs() []string {
	var out []string
	for _, k := range kr.keys {
		out = append(out, fmt.Sprintf("%x", k.id))
	}
	return out
}

func (kr *Keyring) find(id [4]byte) *key {
	for i := range kr.keys {
		if kr.keys[i].id == id {
			return &kr.keys[i]
		}
	}
	return nil
}

// trafficKey derives the AES-256 key for one sender's traffic of one purpose
// in one boot (epoch). Keys differ per direction (sender), per purpose, per
// group and per boot, so a nonce is never reused under one key even though
// sequence numbers restart at every boot.
func trafficKey(secret []byte, p Purpose, group uint16, epoch uint64, sender string) ([]byte, error) {
	info := make([]byte, 0, 16+len(sender))
	info = append(info, byte(p), byte(group>>8), byte(group))
	for i := 7; i >= 0; i-- {
		info = append(info, byte(epoch>>(8*i)))
	}
	info = append(info, sender...)
	return hkdf.Key(sha256.New, secret, []byte("hagate traffic v1"), string(info), 32)
}
