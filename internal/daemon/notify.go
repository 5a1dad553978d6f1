package daemon

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/hagate/hagate/internal/metrics"
)

// notification is one role change for the notify command. It names the
// command in force when the role changed, so a reload never races a run.
type notification struct {
	Command string
	// Event is the command's first argument when the notification is not
	// a role change ("checksum"); empty, the first argument is Role.
	Event                        string
	Role, Previous, Kind, Reason string
}

// notifier runs the notify command once per role change, in order, one at a
// time, each bounded in time, without ever holding up the cluster loop.
type notifier struct {
	node string
	log  *slog.Logger
	met  *metrics.Metrics
	q    chan notification
}

// notifyTimeout bounds one run of the command; notifyWaitDelay bounds the
// wait for its output once it has exited: a background child it started
// may hold the output open for ever. Variables for the tests.
var (
	notifyTimeout   = 30 * time.Second
	notifyWaitDelay = 2 * time.Second
)

func newNotifier(node string, log *slog.Logger, met *metrics.Metrics) *notifier {
	return &notifier{node: node, log: log, met: met, q: make(chan notification, 64)}
}

func (n *notifier) send(m notification) {
	if n == nil || m.Command == "" {
		return
	}
	select {
	case n.q <- m:
	default:
		n.log.Error("notify: queue full, role change not reported to the notify command", "role", m.Role)
	}
}

func (n *notifier) run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			// The last role change (shutting down) is still reported.
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			for {
				select {
				case m := <-n.q:
					n.exec(dctx, m)
				default:
					return nil
				}
			}
		case m := <-n.q:
			n.exec(ctx, m)
		}
	}
}

// exec runs `notify ROLE REASON` with the details also in the environment,
// as keepalived users expect of notify scripts.
func (n *notifier) exec(ctx context.Context, m notification) {
	// Not cancelled with the daemon: the last role change is reported too.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), notifyTimeout)
	defer cancel()
	reason := printable(m.Reason)
	first := m.Role
	if m.Event != "" {
		first = m.Event
	}
	cmd := exec.CommandContext(ctx, m.Command, first, reason)
	cmd.Env = append(os.Environ(),
		"HAGATE_NODE="+n.node, "HAGATE_ROLE="+m.Role, "HAGATE_PREVIOUS_ROLE="+m.Previous,
		"HAGATE_KIND="+m.Kind, "HAGATE_EVENT="+cmp.Or(m.Event, "role"), "HAGATE_REASON="+reason)
	// Its own process group, so that at the timeout the command and every
	// child it started are killed, not the command alone.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = notifyWaitDelay
	out, err := cmd.CombinedOutput()
	n.met.NotifyRuns.Inc()
	if err != nil && !errors.Is(err, exec.ErrWaitDelay) {
		n.met.NotifyFailed.Inc()
	}
	if errors.Is(err, exec.ErrWaitDelay) {
		n.log.Warn("notify command ran but left a background process holding its output; not waiting for it",
			"command", m.Command, "role", m.Role, "output", string(out))
		return
	}
	if err != nil {
		n.log.Error("notify command failed", "command", m.Command, "role", m.Role, "err", err, "output", string(out))
		return
	}
	n.log.Info("notify command ran", "command", m.Command, "role", m.Role)
}

// printable replaces control characters (a NUL makes the exec fail, a
// newline forges log lines) in text that may carry names from the wire.
// The heartbeat decoder already refuses such node ids; this is the last
// guard before the environment.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}
