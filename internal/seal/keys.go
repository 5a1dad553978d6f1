// Package seal owns the cryptographic framing of hagate's HA traffic:
// per-purpose, per-sender, per-boot keys derived with HKDF from the cluster
// key file, AEAD sealing (AES-256-GCM) of heartbeats and session-sync frames,
// and the replay and freshness checks on the receiving side.
package seal

import (
	"bufio"
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"strings"
)

// MinKeyLen is the shortest secret accepted in a key file.
const MinKeyLen = 16

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

// LoadKeyFile reads a key file: one secret per line, blank lines and lines
// starting with '#' ignored. It refuses a file that others may read.
func LoadKeyFile(path string) (*Keyring, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("key_file: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("key_file %s: readable by group or others (mode %#o); run chmod 600 %s", path, st.Mode().Perm(), path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("key_file: %w", err)
	}
	kr, err := ParseKeys(data)
	if err != nil {
		return nil, fmt.Errorf("key_file %s: %w", path, err)
	}
	return kr, nil
}

// ParseKeys parses the contents of a key file.
func ParseKeys(data []byte) (*Keyring, error) {
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
