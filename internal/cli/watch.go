package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hagate/hagate/internal/control"
	"github.com/hagate/hagate/internal/history"
)

// Terminal control for a redraw without flicker: the cursor goes home and
// each line overwrites the last screen's, clearing what is left of it,
// instead of clearing the whole screen first.
const (
	home       = "\x1b[H"
	clearLine  = "\x1b[K"
	clearBelow = "\x1b[J"
)

// watchEvents is how many history entries status --watch shows.
const watchEvents = 10

// untilInterrupted is a context that ends on SIGINT or SIGTERM.
func untilInterrupted() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
}

// every runs f now and then at each interval until ctx ends.
func every(ctx context.Context, interval time.Duration, f func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		f()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// watchStatus redraws the status screen with the last events below it at
// each interval, like watch(1), until ctx ends.
func watchStatus(ctx context.Context, w io.Writer, dc *daemonClient, interval time.Duration) {
	every(ctx, interval, func() {
		io.WriteString(w, statusScreen(time.Now(), interval, dc.fetchStatus, dc.fetchHistory))
	})
}

func (dc *daemonClient) fetchStatus() (json.RawMessage, error) {
	return dc.call(control.Request{Command: "status"})
}

func (dc *daemonClient) fetchHistory() (json.RawMessage, error) {
	return dc.call(control.Request{Command: "history", Args: map[string]string{"count": strconv.Itoa(watchEvents)}})
}

// statusScreen is one frame: a title, the status, the last events, each
// line ending with a clear to its end and the frame with a clear below. A
// daemon that does not answer is said on the screen, which keeps watching.
func statusScreen(now time.Time, interval time.Duration, status, events func() (json.RawMessage, error)) string {
	var body bytes.Buffer
	fmt.Fprintf(&body, "Every %s: hagate status    %s\n\n", interval, now.Format("2006-01-02 15:04:05"))
	if data, err := status(); err != nil {
		fmt.Fprintf(&body, "%v\n", err)
	} else if err := printStatus(&body, data); err != nil {
		fmt.Fprintf(&body, "status: %v\n", err)
	}
	fmt.Fprintf(&body, "\nLast events (newest first):\n")
	if data, err := events(); err != nil {
		fmt.Fprintf(&body, "%v\n", err)
	} else if err := printHistory(&body, data); err != nil {
		fmt.Fprintf(&body, "history: %v\n", err)
	}
	var out strings.Builder
	out.WriteString(home)
	for line := range strings.Lines(body.String()) {
		out.WriteString(strings.TrimSuffix(line, "\n") + clearLine + "\n")
	}
	out.WriteString(clearBelow)
	return out.String()
}

// followHistory prints the history, oldest first, then each new event as
// it is recorded, like tail -f, until ctx ends.
func followHistory(ctx context.Context, w io.Writer, dc *daemonClient, count int, interval time.Duration) error {
	var f follower
	var err error
	every(ctx, interval, func() {
		var data json.RawMessage
		data, err = dc.call(control.Request{Command: "history", Args: map[string]string{"count": strconv.Itoa(count)}})
		if err != nil {
			return
		}
		var entries []history.Entry
		if err = json.Unmarshal(data, &entries); err != nil {
			return
		}
		err = f.print(w, entries)
	})
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// follower remembers what followHistory printed: the newest time, and the
// entries printed at that time (several may share it).
type follower struct {
	last time.Time
	seen map[history.Entry]bool
}

// print prints the entries (oldest first, as the daemon answers: the last
// count of its log) not printed before.
func (f *follower) print(w io.Writer, entries []history.Entry) error {
	var fresh []history.Entry
	for _, e := range entries {
		if e.Time.Before(f.last) || f.seen[e] {
			continue
		}
		if e.Time.After(f.last) {
			f.last, f.seen = e.Time, map[history.Entry]bool{}
		}
		f.seen[e] = true
		fresh = append(fresh, e)
	}
	if len(fresh) == 0 {
		return nil
	}
	// printHistory prints newest first: hand it the fresh ones reversed,
	// one at a time, so that the output reads oldest first.
	for _, e := range fresh {
		data, err := json.Marshal([]history.Entry{e})
		if err != nil {
			return err
		}
		if err := printHistory(w, data); err != nil {
			return err
		}
	}
	return nil
}
