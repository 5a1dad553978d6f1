package netlab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"github.com/hagate/hagate/internal/nstest"
)

// ErrClosed is returned by the operations of a lab that has been closed.
var ErrClosed = errors.New("lab: closed")

// run runs a host command (ip, nft, ...) and returns its combined output.
// The error names the command and carries its output, which is where ip and
// nft explain themselves.
func run(name string, args ...string) (string, error) {
	return runInput(context.Background(), "", name, args...)
}

// runInput is run with the given text on standard input (nft -f -) and a
// context that kills the command when done.
func runInput(ctx context.Context, stdin, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// NS returns the full namespace name of a lab node ("gw1", "client", "sw",
// ...). A name that already is a full name of this lab is returned as is.
func (l *Lab) NS(node string) string {
	if strings.HasPrefix(node, l.id+"-") {
		return node
	}
	return l.id + "-" + node
}

// ip runs `ip -n <ns> args...`, which is cheaper than going through
// `ip netns exec` (no mount namespace is set up).
func (l *Lab) ip(node string, args ...string) error {
	_, err := run("ip", append([]string{"-n", l.NS(node)}, args...)...)
	return err
}

// Exec runs a command inside a lab node's namespace (`ip netns exec`) and
// returns its combined output. The error names the node, the command and
// carries the output.
func (l *Lab) Exec(node string, args ...string) (string, error) {
	return l.ExecContext(context.Background(), node, args...)
}

// ExecContext is [Lab.Exec] with a context that kills the command when it
// is done, to bound commands that might hang.
func (l *Lab) ExecContext(ctx context.Context, node string, args ...string) (string, error) {
	if len(args) == 0 {
		return "", fmt.Errorf("lab: exec in %s: no command", node)
	}
	full := append([]string{"netns", "exec", l.NS(node)}, args...)
	out, err := runInput(ctx, "", "ip", full...)
	if err != nil {
		return out, fmt.Errorf("lab: %s: %w", node, err)
	}
	return out, nil
}

// Command returns an unstarted command that runs args inside a lab node's
// namespace, for callers that want to wire standard input and output
// themselves. It is killed if the thread that starts it exits (the test
// process dying), so nothing outlives the run. The lab does not track it:
// prefer [Lab.Start], whose processes Close kills. Close kills whatever is
// left in the namespaces anyway.
func (l *Lab) Command(node string, args ...string) *exec.Cmd {
	cmd := exec.Command("ip", append([]string{"netns", "exec", l.NS(node)}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// Start starts a background process inside a lab node's namespace with its
// standard output and error going to out (discarded if nil). The caller
// owns the returned command and should Wait for it; [Lab.Close] kills it if
// it is still running.
func (l *Lab) Start(node string, out io.Writer, args ...string) (*exec.Cmd, error) {
	if len(args) == 0 {
		return nil, fmt.Errorf("lab: start in %s: no command", node)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, ErrClosed
	}
	cmd := l.Command(node, args...)
	cmd.Stdout = out
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("lab: start %s in %s: %w", strings.Join(args, " "), node, err)
	}
	l.procs = append(l.procs, cmd.Process)
	return cmd, nil
}

// Close kills the processes started with [Lab.Start] and deletes every
// namespace of the lab, with every link, bridge and rule in it. It is
// idempotent; if a namespace could not be removed, a later Close tries
// again.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	procs, created := l.procs, l.created
	l.procs, l.created = nil, nil
	l.mu.Unlock()

	for _, p := range procs {
		// Already exited and reaped is fine: os.Process knows, via pidfd.
		if err := p.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
			l.logf("lab: kill %d: %v", p.Pid, err)
		}
	}
	var errs []error
	var left []string
	for _, name := range created {
		if err := nstest.Remove(name); err != nil {
			errs = append(errs, err)
			left = append(left, name)
		}
	}
	if len(left) > 0 {
		l.mu.Lock()
		l.closed = false
		l.created = left
		l.mu.Unlock()
	}
	return errors.Join(errs...)
}
