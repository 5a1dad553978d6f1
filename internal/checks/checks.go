// Package checks runs hagate's check commands (keepalived's track_script):
// each command is run every interval without a shell, killed with its
// whole process group at its timeout, its output cut at MaxOutput. A check
// turns failing after Fall failures in a row and passing again after Rise
// successes in a row; it passes until then. The state machine decides what
// a failing check means (remote-link failure or priority change): this
// package only reports the transitions.
package checks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// MaxOutput is how much of a command's output (stdout and stderr together)
// is kept; the rest is discarded as it arrives.
const MaxOutput = 4096

// Check is one command and its timing.
type Check struct {
	Name     string
	Command  []string // argv; Command[0] is an absolute path
	Interval time.Duration
	Timeout  time.Duration
	Fall     int
	Rise     int
}

// Change is a check that started or stopped failing.
type Change struct {
	Name    string
	Failing bool
}

// Status is what `hagate status` shows of one check.
type Status struct {
	Name     string    `json:"name"`
	Failing  bool      `json:"failing"`
	Runs     uint64    `json:"runs"`
	ExitCode int       `json:"exit_code"`           // of the last run; -1: killed, timed out or not started
	LastLine string    `json:"last_line,omitempty"` // the last line of its output
	LastRun  time.Time `json:"last_run,omitzero"`
	Error    string    `json:"error,omitempty"` // why the last run failed beyond its exit code
}

// Runner runs a fixed set of checks. Create it with New, start it with
// Run; Changes and Status are safe from any goroutine.
type Runner struct {
	changes chan Change

	mu     sync.Mutex
	checks []*check
}

type check struct {
	cfg        Check
	st         Status
	fails, oks int // consecutive
}

// New returns a Runner for checks.
func New(checks []Check) (*Runner, error) {
	r := &Runner{changes: make(chan Change, len(checks)+1)}
	for i, c := range checks {
		if c.Name == "" || len(c.Command) == 0 || c.Interval <= 0 || c.Timeout <= 0 {
			return nil, fmt.Errorf("check %d (%q): name, command, interval and timeout are required", i, c.Name)
		}
		c.Fall, c.Rise = max(c.Fall, 1), max(c.Rise, 1)
		r.checks = append(r.checks, &check{cfg: c, st: Status{Name: c.Name, ExitCode: -1}})
	}
	return r, nil
}

// Changes delivers every transition, in order. The channel is buffered;
// a reader that falls behind blocks the check that changed, not the others.
func (r *Runner) Changes() <-chan Change { return r.changes }

// Status returns each check's status, in the order given to New.
func (r *Runner) Status() []Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Status, len(r.checks))
	for i, c := range r.checks {
		out[i] = c.st
	}
	return out
}

// Run runs every check until ctx ends, one goroutine each.
func (r *Runner) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, c := range r.checks {
		wg.Go(func() { r.loop(ctx, c) })
	}
	wg.Wait()
	return nil
}

func (r *Runner) loop(ctx context.Context, c *check) {
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for {
		res := Exec(ctx, c.cfg.Command, c.cfg.Timeout)
		if ctx.Err() != nil {
			return // cancelled under the run: not an outcome
		}
		if ch, ok := r.record(c, res); ok {
			select {
			case r.changes <- ch:
			case <-ctx.Done():
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// record applies one run's outcome; it reports a transition.
func (r *Runner) record(c *check, res Result) (Change, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c.st.Runs++
	c.st.ExitCode, c.st.LastLine, c.st.LastRun = res.ExitCode, lastLine(res.Output), time.Now()
	c.st.Error = ""
	if res.Err != nil {
		c.st.Error = res.Err.Error()
	}
	if res.OK() {
		c.oks, c.fails = c.oks+1, 0
		if c.st.Failing && c.oks >= c.cfg.Rise {
			c.st.Failing = false
			return Change{Name: c.cfg.Name, Failing: false}, true
		}
		return Change{}, false
	}
	c.fails, c.oks = c.fails+1, 0
	if !c.st.Failing && c.fails >= c.cfg.Fall {
		c.st.Failing = true
		return Change{Name: c.cfg.Name, Failing: true}, true
	}
	return Change{}, false
}

// Result is the outcome of one run.
type Result struct {
	ExitCode  int    // -1 when killed, timed out or not started
	Output    []byte // at most MaxOutput bytes
	Truncated bool
	Err       error // timeout, start failure, signal
}

// OK reports whether the run passed.
func (r Result) OK() bool { return r.Err == nil && r.ExitCode == 0 }

// ErrTimeout is a run killed at its timeout.
var ErrTimeout = errors.New("timed out: killed with its process group")

// Exec runs argv once, without a shell, in a process group of its own, with
// only PATH in its environment and / as its directory. At the timeout (or
// when ctx ends) the whole group is killed, so a command's children do not
// outlive it.
func Exec(ctx context.Context, argv []string, timeout time.Duration) Result {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// A child that keeps the output pipe open must not hold Wait up.
	cmd.WaitDelay = 100 * time.Millisecond
	out := &capped{max: MaxOutput}
	cmd.Stdout, cmd.Stderr = out, out
	err := cmd.Run()
	res := Result{ExitCode: -1, Output: out.buf.Bytes(), Truncated: out.cut}
	var exit *exec.ExitError
	switch {
	case ctx.Err() == context.DeadlineExceeded:
		res.Err = ErrTimeout
	case errors.As(err, &exit) && exit.Exited():
		res.ExitCode = exit.ExitCode()
	case err != nil && !errors.Is(err, exec.ErrWaitDelay):
		res.Err = err
	default:
		res.ExitCode = cmd.ProcessState.ExitCode()
	}
	return res
}

// capped keeps the first max bytes written and discards the rest, so a
// command that floods its output costs no memory.
type capped struct {
	mu  sync.Mutex
	max int
	buf bytes.Buffer
	cut bool
}

func (c *capped) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(p) // all of it is taken: the command keeps writing, unblocked
	if room := c.max - c.buf.Len(); room < len(p) {
		c.cut = true
		p = p[:max(room, 0)]
	}
	c.buf.Write(p)
	return n, nil
}

func lastLine(out []byte) string {
	s := strings.TrimRight(string(out), "\r\n \t")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return strings.ToValidUTF8(s, "?")
}
