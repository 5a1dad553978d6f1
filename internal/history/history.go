// Package history owns the election history that survives restarts: a small
// append-only JSON-lines file of role changes, elections and membership
// events, trimmed to a fixed number of entries, which operators read the way
// FortiOS users read `diagnose sys ha history read`.
package history

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// FileName is the history file inside the directory given to Open.
const FileName = "history.jsonl"

// maxLine bounds one entry on disk. A longer line is not one this package
// wrote whole; it is skipped as corrupt.
const maxLine = 64 << 10

// Entry is one event in the history.
type Entry struct {
	Time    time.Time `json:"time"`
	Node    string    `json:"node"`
	Event   string    `json:"event"` // "role", "election", "member", ...
	Role    string    `json:"role,omitempty"`
	Primary string    `json:"primary,omitempty"`
	Reason  string    `json:"reason"`
}

// Log is the history file and the newest entries in memory. Safe for
// concurrent use.
type Log struct {
	dir  string
	path string
	max  int

	mu      sync.Mutex // the memory: every field below but f
	entries []Entry    // the newest max entries, oldest first
	pending [][]byte   // lines of entries not yet written (see Queue)
	lines   int        // lines in the file, corrupt ones included
	corrupt int        // corrupt lines skipped since Open
	closed  bool
	w       *writer // Queue's writer; nil until the first Queue

	fileMu sync.Mutex // the file: writes, syncs, trims; taken before mu
	f      *os.File   // opened for append
}

// Open opens (creating if needed) the history in dir, keeping at most max
// entries. Corrupt lines, such as one torn by a crash mid-write, are skipped
// and counted, never fatal.
func Open(dir string, max int) (*Log, error) {
	if max <= 0 {
		return nil, fmt.Errorf("history: max entries must be positive, not %d", max)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	path := filepath.Join(dir, FileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	r, err := Read(f, max)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("history %s: %w", path, err)
	}
	if r.Torn {
		// Terminate the torn line so the next entry starts on a line of its
		// own; the torn one stays skipped until the next trim drops it.
		if _, err := f.Write([]byte{'\n'}); err != nil {
			f.Close()
			return nil, fmt.Errorf("history %s: %w", path, err)
		}
	}
	return &Log{
		dir: dir, path: path, max: max, f: f,
		lines: r.Lines, entries: r.Entries, corrupt: r.Corrupt,
	}, nil
}

// Append adds e to the history and syncs it to disk, after the entries
// queued before it. When the file has grown past twice max lines it is
// rewritten with the newest max entries.
func (l *Log) Append(e Entry) error {
	if err := l.add(e); err != nil {
		return err
	}
	return l.flush()
}

// add checks e and adds it to the memory and the lines to write.
func (l *Log) add(e Entry) error {
	if e.Event == "" {
		return errors.New("history: entry without event")
	}
	if e.Time.IsZero() {
		return errors.New("history: entry without time")
	}
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("history: encode entry: %w", err)
	}
	b = append(b, '\n')
	if len(b) > maxLine {
		return fmt.Errorf("history: entry of %d bytes is over the %d byte limit", len(b), maxLine)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errors.New("history: log is closed")
	}
	l.pending = append(l.pending, b)
	l.entries = append(l.entries, e)
	if n := len(l.entries) - l.max; n > 0 {
		// Shift in place rather than reslice, so the backing array does not
		// creep forward and grow without bound.
		l.entries = append(l.entries[:0], l.entries[n:]...)
	}
	return nil
}

// flush writes and syncs the lines not yet written, in the order they were
// added, and trims the file when it has grown past twice max lines.
func (l *Log) flush() error {
	l.fileMu.Lock()
	defer l.fileMu.Unlock()
	l.mu.Lock()
	batch := l.pending
	l.pending = nil
	l.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	if l.f == nil {
		return errors.New("history: log is closed")
	}
	if _, err := l.f.Write(bytes.Join(batch, nil)); err != nil {
		return fmt.Errorf("history %s: %w", l.path, err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("history %s: %w", l.path, err)
	}
	l.mu.Lock()
	l.lines += len(batch)
	var keep []Entry
	trim := l.lines > 2*l.max
	if trim {
		// The entries written so far: the newest, still pending, follow
		// in the next flush.
		keep = slices.Clone(l.entries[:max(len(l.entries)-len(l.pending), 0)])
	}
	l.mu.Unlock()
	if trim {
		return l.rewrite(keep)
	}
	return nil
}

// rewrite replaces the file with entries: written to a temporary file,
// synced, renamed over the old one, and the directory synced, so a crash
// leaves either the old file or the new one. The caller holds fileMu.
func (l *Log) rewrite(entries []Entry) error {
	tmp, err := os.CreateTemp(l.dir, FileName+".tmp-*")
	if err != nil {
		return fmt.Errorf("history: trim: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op once renamed
	w := bufio.NewWriter(tmp)
	for _, e := range entries {
		b, err := json.Marshal(e)
		if err != nil {
			tmp.Close()
			return fmt.Errorf("history: trim: %w", err)
		}
		w.Write(b)
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		tmp.Close()
		return fmt.Errorf("history: trim: %w", err)
	}
	if err := tmp.Chmod(0o640); err != nil {
		tmp.Close()
		return fmt.Errorf("history: trim: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("history: trim: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("history: trim: %w", err)
	}
	if err := os.Rename(tmp.Name(), l.path); err != nil {
		return fmt.Errorf("history: trim: %w", err)
	}
	if d, err := os.Open(l.dir); err == nil {
		d.Sync()
		d.Close()
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("history: reopen after trim: %w", err)
	}
	l.f.Close()
	l.f = f
	l.mu.Lock()
	l.lines = len(entries)
	l.mu.Unlock()
	return nil
}

// Last returns up to n of the newest entries, newest last; n <= 0 means all
// that are kept.
func (l *Log) Last(n int) []Entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n <= 0 || n > len(l.entries) {
		n = len(l.entries)
	}
	out := make([]Entry, n)
	copy(out, l.entries[len(l.entries)-n:])
	return out
}

// Corrupt returns how many corrupt lines were skipped when the file was read.
func (l *Log) Corrupt() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.corrupt
}

// Path returns the history file's path.
func (l *Log) Path() string { return l.path }

// Close writes what Queue left and closes the file. Append and Queue fail
// after Close; Last still answers.
func (l *Log) Close() error {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.stopWriter()
	err := l.flush()
	l.fileMu.Lock()
	defer l.fileMu.Unlock()
	if l.f == nil {
		return err
	}
	if cerr := l.f.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("history %s: %w", l.path, cerr)
	}
	l.f = nil
	return err
}

// ReadResult is what Read found in a history file.
type ReadResult struct {
	Entries []Entry // the newest entries (at most max), oldest first
	Lines   int     // lines read, corrupt and blank ones included
	Corrupt int     // lines skipped
	// Torn: the last line has no newline, as when a crash cut a write short.
	Torn bool
}

// Read parses a history file, keeping the newest max entries. Lines that do
// not decode to an entry are skipped and counted; only a read error fails.
func Read(r io.Reader, max int) (ReadResult, error) {
	var res ReadResult
	br := bufio.NewReaderSize(r, 4096)
	for {
		line, ok, terminated, err := readLine(br)
		if err != nil {
			return ReadResult{}, err
		}
		if !terminated && ok && len(line) == 0 {
			break // the end, after a newline
		}
		res.Lines++
		res.Torn = !terminated
		switch e, valid := parseLine(line, ok); {
		case valid:
			res.Entries = append(res.Entries, e)
			// Trim now and then, not on every line, to stay linear.
			if len(res.Entries) > 2*max {
				res.Entries = append(res.Entries[:0], res.Entries[len(res.Entries)-max:]...)
			}
		case len(bytes.TrimSpace(line)) > 0 || !ok:
			res.Corrupt++
		}
		if !terminated {
			break
		}
	}
	if n := len(res.Entries) - max; n > 0 {
		res.Entries = append(res.Entries[:0], res.Entries[n:]...)
	}
	return res, nil
}

// readLine returns the next line without its newline. ok is false for a line
// over maxLine, which is consumed and dropped. terminated is false at the end
// of the input: line then holds what came after the last newline.
func readLine(br *bufio.Reader) (line []byte, ok, terminated bool, err error) {
	ok = true
	for {
		chunk, err := br.ReadSlice('\n')
		if ok && len(line)+len(chunk) <= maxLine+1 { // +1: the newline
			line = append(line, chunk...)
		} else {
			ok, line = false, nil
		}
		switch {
		case err == nil:
			return bytes.TrimSuffix(line, []byte{'\n'}), ok, true, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			return line, ok, false, nil
		default:
			return nil, false, false, err
		}
	}
}

// parseLine decodes one line; a line that is not a whole entry is corrupt.
func parseLine(line []byte, ok bool) (Entry, bool) {
	if !ok {
		return Entry{}, false
	}
	var e Entry
	if err := json.Unmarshal(line, &e); err != nil {
		return Entry{}, false
	}
	if e.Event == "" || e.Time.IsZero() {
		return Entry{}, false
	}
	return e, true
}

// Clear deletes every entry, on disk and in memory (FGCP's `diagnose sys
// ha history delete`). The file is replaced the way a trim replaces it, so
// a crash leaves either the old history or none.
func (l *Log) Clear() error {
	l.fileMu.Lock()
	defer l.fileMu.Unlock()
	l.mu.Lock()
	closed := l.closed || l.f == nil
	if !closed {
		l.entries, l.pending = l.entries[:0], nil
	}
	l.mu.Unlock()
	if closed {
		return errors.New("history: log is closed")
	}
	if err := l.rewrite(nil); err != nil {
		return fmt.Errorf("history: clear: %w", err)
	}
	return nil
}
