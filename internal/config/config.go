package config

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// MaxSize is the largest configuration file accepted. A real file is a few
// kilobytes; the cap keeps a wrong path (a log, a disk image) from being read
// whole.
const MaxSize = 1 << 20

// maxErrors caps how many problems one Parse reports, so a garbage file gives
// a readable answer rather than thousands of lines.
const maxErrors = 50

// Error is one problem in a configuration, tied to the key that has it.
// Parse and Load return every problem found, joined with errors.Join; use
// errors.As for the first one, or the Unwrap() []error method for all.
type Error struct {
	// Key is the key path, e.g. "heartbeat.links[0].priority". Empty when the
	// problem concerns the document as a whole (a YAML syntax error).
	Key string
	// Line is the 1-based line in the file, 0 when unknown: a required key that
	// is missing, or a Config built in code and checked with Validate.
	Line int
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	if e.Line > 0 {
		fmt.Fprintf(&b, " (line %d)", e.Line)
	}
	return b.String()
}

// Load reads and parses the configuration file at path. It does not read the
// files the configuration names (key_file, notify): the daemon checks those
// when it uses them.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("load config %s: %w", path, err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Parse decodes one YAML document, applies the defaults and validates the
// result. On failure it returns every problem found, each an *Error naming
// its key, and a nil Config.
func Parse(data []byte) (*Config, error) {
	if len(data) > MaxSize {
		return nil, &Error{Msg: fmt.Sprintf("configuration larger than %d bytes", MaxSize)}
	}
	root, err := readDocument(data)
	if err != nil {
		return nil, err
	}
	d := newDecoder()
	var c Config
	d.decodeRoot(root, &c)
	applyDefaults(&c, d.isSet)
	errs := d.errs
	for _, e := range validate(&c) {
		// A value that failed to decode was left at its default; problems
		// found under it would only repeat the decoding error.
		if d.failedUnder(e.Key) {
			continue
		}
		e.Line = d.lineOf(e.Key)
		errs = append(errs, e)
	}
	if len(errs) > 0 {
		return nil, joinErrors(errs)
	}
	return &c, nil
}

// readDocument returns the single YAML document in data, or nil for an empty
// input. A second document is refused: a stray "---" usually means two files
// were concatenated, and silently ignoring half of them would be worse.
func readDocument(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, syntaxError(err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, syntaxError(err)
	default:
		return nil, &Error{Line: next.Line, Msg: "more than one YAML document (a second \"---\"); want exactly one"}
	}
	if doc.Kind == yaml.DocumentNode {
		if len(doc.Content) == 0 {
			return nil, nil
		}
		return doc.Content[0], nil
	}
	return &doc, nil
}

// syntaxError turns a yaml parse error ("yaml: line 3: did not find ...")
// into an *Error carrying the line.
func syntaxError(err error) *Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, after, ok := strings.Cut(rest, ": "); ok {
			if n, err := strconv.Atoi(num); err == nil && n > 0 {
				line, msg = n, after
			}
		}
	}
	return &Error{Line: line, Msg: "invalid YAML: " + msg}
}

// joinErrors orders problems as they appear in the file (those without a
// line last), caps their number and joins them.
func joinErrors(errs []*Error) error {
	slices.SortStableFunc(errs, func(a, b *Error) int {
		if (a.Line == 0) != (b.Line == 0) {
			if a.Line == 0 {
				return 1
			}
			return -1
		}
		return cmp.Compare(a.Line, b.Line)
	})
	out := make([]error, 0, min(len(errs), maxErrors+1))
	for i, e := range errs {
		if i == maxErrors {
			out = append(out, &Error{Msg: fmt.Sprintf("and %d more problems", len(errs)-maxErrors)})
			break
		}
		out = append(out, e)
	}
	return errors.Join(out...)
}

// Validate checks c as Parse does, without applying defaults: every field
// must hold its final value. It is for configurations built in code; Parse
// already validates what it returns.
func (c *Config) Validate() error {
	errs := validate(c)
	if len(errs) == 0 {
		return nil
	}
	return joinErrors(errs)
}

// AuthEnabled reports whether HA traffic is authenticated (the default).
func (c *Config) AuthEnabled() bool {
	return c.Security.Authentication == nil || *c.Security.Authentication
}

// EncryptionEnabled reports whether HA payloads are encrypted. Encryption
// needs the authentication key, so it is off whenever authentication is.
func (c *Config) EncryptionEnabled() bool {
	return c.AuthEnabled() && (c.Security.Encryption == nil || *c.Security.Encryption)
}

// PickupNAT reports whether NATed sessions are synchronised (the default).
func (c *Config) PickupNAT() bool {
	return c.SessionPickup.NAT == nil || *c.SessionPickup.NAT
}

// DeadInterval is how long a peer may stay silent on a link before it is
// declared lost there: heartbeat.interval x heartbeat.lost_threshold.
func (c *Config) DeadInterval() time.Duration {
	return c.Heartbeat.Interval * time.Duration(c.Heartbeat.LostThreshold)
}

// ClusterSize is the number of members this node expects, itself included:
// 1 + the largest number of distinct peers on any one heartbeat link.
// Addresses cannot be matched to members across links (a peer has one
// address per link), so counting distinct addresses over all links would
// count a member once per link; every member is expected to be reachable on
// its best-connected link, which is what this counts.
func (c *Config) ClusterSize() int {
	most := 0
	for _, l := range c.Heartbeat.Links {
		seen := make(map[netip.Addr]bool, len(l.Peers))
		for _, p := range l.Peers {
			seen[p] = true
		}
		most = max(most, len(seen))
	}
	return 1 + most
}
