package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
)

// logHandler is the daemon's log output: JSON lines for log shippers
// (log_format: json); under systemd (JOURNAL_STREAM set) text lines with
// their syslog priority and without a timestamp, which journald adds, so
// that `journalctl -p err -u hagate` finds the errors; plain text lines
// otherwise.
func logHandler(w io.Writer, format string, journal bool, level slog.Leveler) slog.Handler {
	opts := &slog.HandlerOptions{Level: level}
	switch {
	case format == "json":
		return slog.NewJSONHandler(w, opts)
	case journal:
		opts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{} // journald stamps each line itself
			}
			return a
		}
		j := &journalHandler{out: w, mu: new(sync.Mutex), buf: new(bytes.Buffer)}
		j.h = slog.NewTextHandler(j.buf, opts)
		return j
	}
	return slog.NewTextHandler(w, opts)
}

// journalHandler prefixes each text line with its syslog priority (the
// "<N>" convention journald reads on a service's stream; sd-daemon(3)).
type journalHandler struct {
	h   slog.Handler  // writes into buf
	out io.Writer     // the journal stream
	mu  *sync.Mutex   // guards buf, shared with the handlers derived
	buf *bytes.Buffer // one record at a time
}

// priority is the syslog priority of a level: err, warning, info, debug.
func priority(l slog.Level) int {
	switch {
	case l >= slog.LevelError:
		return 3
	case l >= slog.LevelWarn:
		return 4
	case l >= slog.LevelInfo:
		return 6
	}
	return 7
}

func (j *journalHandler) Enabled(ctx context.Context, l slog.Level) bool { return j.h.Enabled(ctx, l) }

func (j *journalHandler) Handle(ctx context.Context, r slog.Record) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.buf.Reset()
	fmt.Fprintf(j.buf, "<%d>", priority(r.Level))
	if err := j.h.Handle(ctx, r); err != nil {
		return err
	}
	_, err := j.out.Write(j.buf.Bytes())
	return err
}

func (j *journalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *j
	c.h = j.h.WithAttrs(as)
	return &c
}

func (j *journalHandler) WithGroup(name string) slog.Handler {
	c := *j
	c.h = j.h.WithGroup(name)
	return &c
}
