// Package dist holds what installs hagate on a host: the systemd unit, the
// Debian package description and its maintainer scripts. Its tests check
// that what ships works together: the unit can start the daemon with the
// configuration we ship, and the package installs and removes cleanly.
package dist

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hagate/hagate/internal/control"
	"github.com/hagate/hagate/internal/daemon"
)

// unitSettings reads the [Service] settings of a systemd unit file: key to
// value, the last assignment winning (as systemd does for these keys).
func unitSettings(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		case section == "Service":
			if k, v, ok := strings.Cut(line, "="); ok {
				out[k] = v
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// setprivCaps turns "CAP_NET_ADMIN CAP_CHOWN" into setpriv's
// "-all,+net_admin,+chown", leaving out the capabilities in drop.
func setprivCaps(unitValue string, drop ...string) string {
	caps := []string{"-all"}
	for _, c := range strings.Fields(unitValue) {
		name := strings.ToLower(strings.TrimPrefix(c, "CAP_"))
		skip := false
		for _, d := range drop {
			skip = skip || d == name
		}
		if !skip {
			caps = append(caps, "+"+name)
		}
	}
	return strings.Join(caps, ",")
}

// needRoot skips a test that needs root and the tools it runs.
func needRoot(t *testing.T, tools ...string) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
}

// buildHagate builds the hagate command into dir.
func buildHagate(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "hagate")
	cmd := exec.Command("go", "build", "-o", bin, "../cmd/hagate")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// otherGroup returns a group root is not a member of, as the hagate group
// of the package is not: handing the socket to it needs CAP_CHOWN.
func otherGroup() string {
	if _, err := user.LookupGroup("nogroup"); err == nil {
		return "nogroup"
	}
	return "65534" // a numeric gid is accepted as well
}

// The systemd unit starts the daemon with the configuration we ship: run
// with the unit's exact capability bounding set, ambient set and
// no_new_privs (systemd itself is not needed), the daemon creates its
// control socket for control_group, answers on it and stops cleanly on
// SIGTERM. Without CAP_CHOWN, as the unit was before, it cannot start.
func TestUnitCapabilities(t *testing.T) {
	needRoot(t, "setpriv", "unshare", "ip", "go")
	unit := unitSettings(t, "hagate.service")
	bounding, ambient := unit["CapabilityBoundingSet"], unit["AmbientCapabilities"]
	if bounding == "" {
		t.Fatal("hagate.service sets no CapabilityBoundingSet")
	}
	dir := t.TempDir()
	bin := buildHagate(t, dir)
	key := filepath.Join(dir, "cluster.key")
	if out, err := exec.Command(bin, "genkey", "--output", key).CombinedOutput(); err != nil {
		t.Fatalf("genkey: %v\n%s", err, out)
	}
	group := otherGroup()
	sock := filepath.Join(dir, "run", "hagate.sock")
	cfg := filepath.Join(dir, "hagate.yaml")
	body := fmt.Sprintf(`node_id: gw1
key_file: %s
control_socket: %s
control_group: %s
state_dir: %s
hello_holddown: 2s
heartbeat:
  links:
    - interface: ha
      peers: [198.51.100.2]
virtual_ips:
  - interface: lan
    address: 192.0.2.1/24
`, key, sock, group, filepath.Join(dir, "state"))
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}

	// setpriv runs a command with the unit's capabilities, in a network
	// namespace of its own holding the interfaces the configuration names.
	setpriv := func(drop ...string) []string {
		args := []string{"setpriv", "--bounding-set=" + setprivCaps(bounding, drop...)}
		if ambient != "" {
			args = append(args, "--inh-caps="+setprivCaps(ambient, drop...), "--ambient-caps="+setprivCaps(ambient, drop...))
		}
		if unit["NoNewPrivileges"] == "yes" {
			args = append(args, "--no-new-privs")
		}
		return args
	}
	inNetns := func(args ...string) *exec.Cmd {
		script := `set -e
ip link set lo up
ip link add ha type veth peer name ha-peer && ip addr add 198.51.100.1/24 dev ha && ip link set ha up && ip link set ha-peer up
ip link add lan type veth peer name lan-peer && ip addr add 192.0.2.2/24 dev lan && ip link set lan up && ip link set lan-peer up
exec "$@"`
		return exec.Command("unshare", append([]string{"--net", "--", "sh", "-c", script, "sh"}, args...)...)
	}

	t.Run("check-config", func(t *testing.T) {
		out, err := inNetns(append(setpriv(), bin, "check-config", "--config", cfg)...).CombinedOutput()
		if err != nil {
			t.Fatalf("check-config under the unit's capabilities: %v\n%s", err, out)
		}
	})

	t.Run("run", func(t *testing.T) {
		var log strings.Builder
		cmd := inNetns(append(setpriv(), bin, "run", "--config", cfg)...)
		cmd.Stdout, cmd.Stderr = &log, &log
		// systemd's side of Type=notify and WatchdogSec: a socket the
		// daemon is told of, and a watchdog of 1s (petted every 0.5s).
		notes := listenNotify(t, filepath.Join(dir, "notify.sock"))
		cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+notes.path, "WATCHDOG_USEC=1000000")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		stopped := false
		defer func() {
			if !stopped {
				cmd.Process.Kill()
				<-done
			}
		}()
		// Alone, the member becomes primary after its hello holddown and
		// takes the virtual IP: addresses, gratuitous ARP and the control
		// socket all work with these capabilities.
		deadline := time.Now().Add(20 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			resp, err := control.Call(ctx, sock, control.Request{Command: "status"})
			cancel()
			var st daemon.Status
			if err == nil && resp.OK && resp.Decode(&st) == nil && st.HoldingVIPs {
				break
			}
			select {
			case err := <-done:
				stopped = true
				t.Fatalf("the daemon exited under the unit's capabilities: %v\n%s", err, log.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("not primary holding the virtual IP after 20s: %v\n%s", err, log.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
		st, err := os.Stat(sock)
		if err != nil {
			t.Fatal(err)
		}
		g, err := user.LookupGroup(group)
		gid := group
		if err == nil {
			gid = g.Gid
		}
		if got := fmt.Sprint(st.Sys().(*syscall.Stat_t).Gid); got != gid {
			t.Errorf("control socket group %s, want %s (%s)", got, gid, group)
		}
		// Ready once out of hello (the first READY=1 comes with or after a
		// role that is not hello), and the watchdog petted more than once.
		notes.waitFor(t, "WATCHDOG=1", 2)
		if ready := notes.first("READY=1"); ready < 0 || strings.Contains(notes.lastBefore(ready, "STATUS="), "STATUS=hello") {
			t.Errorf("READY=1 missing or sent in hello: %q", notes.all())
		}
		// systemctl stop: SIGTERM, and a clean exit.
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			stopped = true
			if err != nil {
				t.Fatalf("exit after SIGTERM: %v\n%s", err, log.String())
			}
			notes.waitFor(t, "STOPPING=1", 1)
			t.Logf("sd_notify: %q", notes.all())
		case <-time.After(15 * time.Second): // TimeoutStopSec
			t.Fatalf("still running 15s after SIGTERM\n%s", log.String())
		}
	})

	// The counterpart: the unit as it was, without CAP_CHOWN, cannot start
	// the shipped configuration's control_group.
	t.Run("without CAP_CHOWN", func(t *testing.T) {
		if !strings.Contains(bounding, "CAP_CHOWN") {
			t.Skip("the unit grants no CAP_CHOWN to take away")
		}
		os.Remove(sock)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := inNetns(append(setpriv("chown"), bin, "run", "--config", cfg)...)
		cmd = exec.CommandContext(ctx, cmd.Args[0], cmd.Args[1:]...)
		out, err := cmd.CombinedOutput()
		if err == nil || ctx.Err() != nil {
			t.Fatalf("the daemon started without CAP_CHOWN (err %v)\n%s", err, out)
		}
		if !strings.Contains(string(out), "operation not permitted") || !strings.Contains(string(out), "chown") {
			t.Fatalf("want a chown refused with operation not permitted:\n%s", out)
		}
		t.Logf("without CAP_CHOWN: %s", lastLine(string(out)))
	})
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// notifySocket is systemd's end of sd_notify: it collects what the daemon
// sends, one line a field.
type notifySocket struct {
	path string
	mu   sync.Mutex
	got  []string
}

func listenNotify(t *testing.T, path string) *notifySocket {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	n := &notifySocket{path: path}
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			n.got = append(n.got, strings.Split(strings.TrimSpace(string(buf[:k])), "\n")...)
			n.mu.Unlock()
		}
	}()
	return n
}

func (n *notifySocket) all() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.got...)
}

// first is the index of the first line equal to line, -1 if none.
func (n *notifySocket) first(line string) int {
	return slices.Index(n.all(), line)
}

// lastBefore is the last line before index i that starts with prefix.
func (n *notifySocket) lastBefore(i int, prefix string) string {
	got := n.all()
	for j := min(i, len(got)) - 1; j >= 0; j-- {
		if strings.HasPrefix(got[j], prefix) {
			return got[j]
		}
	}
	return ""
}

// waitFor waits up to 10s until line has been received count times.
func (n *notifySocket) waitFor(t *testing.T, line string, count int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		seen := 0
		for _, l := range n.all() {
			if l == line {
				seen++
			}
		}
		if seen >= count {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q received %d times, want %d: %q", line, seen, count, n.all())
		}
	}
}

// The unit is a notify service with a watchdog and a live reload, which
// the daemon serves (TestUnitCapabilities' run checks the notifications).
func TestUnitNotify(t *testing.T) {
	unit := unitSettings(t, "hagate.service")
	for k, want := range map[string]string{"Type": "notify", "NotifyAccess": "main", "ExecReload": "/bin/kill -HUP $MAINPID"} {
		if unit[k] != want {
			t.Errorf("%s=%q, want %q", k, unit[k], want)
		}
	}
	if d, err := time.ParseDuration(unit["WatchdogSec"]); err != nil || d <= 0 {
		t.Errorf("WatchdogSec=%q: want a duration", unit["WatchdogSec"])
	}
}
