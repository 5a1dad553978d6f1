package daemon

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/hagate/hagate/internal/cluster"
)

// sdNotifier speaks systemd's notify protocol (sd_notify(3)): one datagram
// of NAME=value lines to the socket in NOTIFY_SOCKET. With the unit's
// Type=notify, `systemctl start` returns once the member has joined a
// cluster or finished its hello holddown (READY=1), not when the process
// has merely started; STATUS= puts the role in `systemctl status`; and with
// WatchdogSec= the daemon's loop pets the watchdog (WATCHDOG=1), so that a
// wedged loop, which no longer sends heartbeats either, is restarted by
// systemd. Without NOTIFY_SOCKET (not under systemd) it does nothing.
//
// A dozen lines of the standard library rather than go-systemd: the
// protocol is one unixgram write.
type sdNotifier struct {
	conn     *net.UnixConn
	watchdog time.Duration // pet interval: half of WATCHDOG_USEC, 0 for none
	lastPet  time.Time
	ready    bool
	status   string // the last STATUS= sent
}

// newSDNotifier reads the environment systemd sets for the service. An
// error means NOTIFY_SOCKET is set but unusable: the daemon logs it and
// runs on (systemd then times the start out, which says why).
func newSDNotifier() (*sdNotifier, error) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return &sdNotifier{}, nil
	}
	if path[0] == '@' { // an abstract socket
		path = "\x00" + path[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return &sdNotifier{}, fmt.Errorf("NOTIFY_SOCKET: %w", err)
	}
	s := &sdNotifier{conn: conn}
	// WATCHDOG_PID, when set, names the process meant: not a child.
	if pid := os.Getenv("WATCHDOG_PID"); pid == "" || pid == strconv.Itoa(os.Getpid()) {
		if us, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64); err == nil && us > 0 {
			s.watchdog = time.Duration(us) * time.Microsecond / 2
		}
	}
	return s, nil
}

// send writes one notification; without a socket it does nothing.
func (s *sdNotifier) send(state string) error {
	if s.conn == nil {
		return nil
	}
	if _, err := s.conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify %q: %w", state, err)
	}
	return nil
}

// tick is called on every turn of the daemon's loop timer: it says READY=1
// once the member has left its hello state, keeps STATUS= on the role and
// pets the watchdog.
func (s *sdNotifier) tick(now time.Time, role cluster.Role, primary string) error {
	if s.conn == nil {
		return nil
	}
	var msg string
	status := "STATUS=" + role.String()
	if primary != "" && role != cluster.Primary {
		status += " of primary " + primary
	}
	if status != s.status {
		msg += status + "\n"
	}
	if !s.ready && role != cluster.Hello {
		msg += "READY=1\n"
	}
	if s.watchdog > 0 && now.Sub(s.lastPet) >= s.watchdog {
		msg += "WATCHDOG=1\n"
	}
	if msg == "" {
		return nil
	}
	if err := s.send(msg); err != nil {
		return err
	}
	s.status = status
	s.ready = s.ready || role != cluster.Hello
	if s.watchdog > 0 && now.Sub(s.lastPet) >= s.watchdog {
		s.lastPet = now
	}
	return nil
}

// close ends the notifications.
func (s *sdNotifier) close() {
	if s.conn != nil {
		s.conn.Close()
	}
}

// sdNotify sends state to systemd, logging a failure: systemd then acts on
// what it did not hear (a start timeout, a watchdog restart), and the log
// says why.
func (d *Daemon) sdNotify(state string) {
	if err := d.sd.send(state); err != nil {
		d.log.Warn(err.Error())
	}
}

// sdTick is sdNotifier.tick for the daemon's loop.
func (d *Daemon) sdTick(now time.Time) {
	if err := d.sd.tick(now, d.node.Role(), d.node.Primary()); err != nil {
		d.log.Warn(err.Error())
	}
}

// reloading tells systemd a reload runs until the returned func is called.
// A member still in its hello state says READY=1 when it leaves it (tick).
func (d *Daemon) reloading() (done func()) {
	d.sdNotify("RELOADING=1")
	return func() {
		if d.sd.ready {
			d.sdNotify("READY=1")
		}
	}
}
