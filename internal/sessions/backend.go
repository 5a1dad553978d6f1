// Package sessions owns session pickup: the engine that keeps every
// subordinate's connection-tracking table a warm copy of the primary's. The
// primary mirrors its kernel table (a dump, then events), filters it, and
// streams it to each subordinate over an authenticated TCP connection: a bulk
// copy when a subordinate connects, then batched changes. Subordinates install
// what they receive into their own kernel table as it arrives, so sessions are
// usable the moment a subordinate is promoted, before it claims the virtual
// addresses.
package sessions

import (
	"context"

	"github.com/hagate/hagate/internal/sessions/session"
)

// Backend is a connection-tracking table: the kernel's (package conntrack) or
// an in-memory one (Memory).
type Backend interface {
	// Dump calls fn for every entry; an error from fn stops the dump.
	Dump(ctx context.Context, fn func(session.Session) error) error
	// Watch streams the table's changes until ctx ends. Lost events are
	// reported as an EventOverflow and the stream goes on.
	Watch(ctx context.Context) (<-chan session.Event, error)
	// Apply installs, updates and deletes entries; it is idempotent.
	Apply(ctx context.Context, changes []session.Change) error
	// Flush empties the table.
	Flush(ctx context.Context) error
	Close() error
}

// Looker is a Backend that can also look entries up by key (the kernel's
// and Memory). With it, the primary's periodic refresh looks up only the
// sessions whose copies near expiry instead of dumping the whole table.
type Looker interface {
	// Lookup calls fn for each of keys the table holds; the others are
	// skipped.
	Lookup(ctx context.Context, keys []session.Key, fn func(session.Session) error) error
}

// Counter is a Backend that can say how many entries it holds without
// walking them (the kernel's). A dump walks the kernel's whole hash table,
// shared by every network namespace, however few entries are this one's:
// tens of milliseconds that a member starting with an empty table skips.
type Counter interface {
	Count(ctx context.Context) (int, error)
}

// ExpectBackend is a Backend that also holds expectations (the kernel's and
// Memory). With another backend, expectations are not synced.
type ExpectBackend interface {
	// DumpExpect calls fn for every expectation.
	DumpExpect(ctx context.Context, fn func(session.Expect) error) error
	// WatchExpect streams EventNew and EventDestroy until ctx ends; lost
	// events are reported as an EventOverflow.
	WatchExpect(ctx context.Context) (<-chan session.ExpectEvent, error)
	// ApplyExpect installs (or refreshes the timeout of) and deletes
	// expectations, in order. Its error joins one error per refused change,
	// wrapping session.ErrNoMaster when the master is missing.
	ApplyExpect(ctx context.Context, changes []session.ExpectChange) error
}
