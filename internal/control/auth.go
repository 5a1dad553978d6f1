package control

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// Peer is the process at the other end of a control connection, as the
// kernel reported it when it connected (SO_PEERCRED).
type Peer struct {
	PID int32
	UID uint32
	GID uint32
}

func (p Peer) String() string { return fmt.Sprintf("pid %d uid %d gid %d", p.PID, p.UID, p.GID) }

type peerKey struct{}

// PeerFromContext returns the caller of the request being handled, for the
// handler to log who asked for what.
func PeerFromContext(ctx context.Context) (Peer, bool) {
	p, ok := ctx.Value(peerKey{}).(Peer)
	return p, ok
}

// peerCred reads the credentials of a unix socket's peer.
func peerCred(c net.Conn) (Peer, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return Peer{}, fmt.Errorf("peer credentials: %T is not a unix connection", c)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return Peer{}, fmt.Errorf("peer credentials: %w", err)
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return Peer{}, fmt.Errorf("peer credentials: %w", err)
	}
	if credErr != nil {
		return Peer{}, fmt.Errorf("peer credentials: %w", credErr)
	}
	return Peer{PID: cred.Pid, UID: cred.Uid, GID: cred.Gid}, nil
}

// authorizer decides who may use the socket: root, the daemon's own user
// (who could ptrace the daemon anyway, so gains nothing), and members of the
// configured group.
type authorizer struct {
	selfUID  uint32
	group    bool   // a group is configured
	gid      uint32 // the configured group
	procRoot string // "/proc", or a fake tree in tests
	// userGroups lists the group ids of a uid from the user database, the
	// last resort when /proc cannot tell (the caller already exited).
	userGroups func(uid uint32) ([]uint32, error)
}

var errDenied = errors.New("permission denied")

// allow returns nil when p may use the socket, or why not.
func (a *authorizer) allow(p Peer) error {
	if p.UID == 0 || p.UID == a.selfUID {
		return nil
	}
	if !a.group {
		return fmt.Errorf("%w: uid %d is not root", errDenied, p.UID)
	}
	if p.GID == a.gid {
		return nil
	}
	// The supplementary groups of the process itself are what counts (the
	// same rule the kernel applies to the socket file), so read them first.
	if p.PID > 0 {
		if f, err := os.Open(filepath.Join(a.procRoot, strconv.Itoa(int(p.PID)), "status")); err == nil {
			groups, err := parseStatusGroups(f)
			f.Close()
			if err == nil {
				if containsGID(groups, a.gid) {
					return nil
				}
				return fmt.Errorf("%w: uid %d is not in group %d", errDenied, p.UID, a.gid)
			}
		}
	}
	if a.userGroups != nil {
		if groups, err := a.userGroups(p.UID); err == nil && containsGID(groups, a.gid) {
			return nil
		}
	}
	return fmt.Errorf("%w: uid %d is not in group %d", errDenied, p.UID, a.gid)
}

func containsGID(groups []uint32, gid uint32) bool {
	for _, g := range groups {
		if g == gid {
			return true
		}
	}
	return false
}

// maxStatusSize bounds how much of /proc/PID/status is read; the file is a
// few KiB.
const maxStatusSize = 64 << 10

// parseStatusGroups returns the ids on the "Groups:" line of a
// /proc/PID/status file.
func parseStatusGroups(r io.Reader) ([]uint32, error) {
	sc := bufio.NewScanner(io.LimitReader(r, maxStatusSize))
	sc.Buffer(make([]byte, 0, 4096), maxStatusSize)
	for sc.Scan() {
		rest, ok := bytes.CutPrefix(sc.Bytes(), []byte("Groups:"))
		if !ok {
			continue
		}
		fields := bytes.Fields(rest)
		groups := make([]uint32, 0, len(fields))
		for _, f := range fields {
			g, err := strconv.ParseUint(string(f), 10, 32)
			if err != nil {
				return nil, fmt.Errorf("status Groups: bad id %q: %w", f, err)
			}
			groups = append(groups, uint32(g))
		}
		return groups, nil
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read status: %w", err)
	}
	return nil, errors.New("status has no Groups line")
}

// lookupUserGroups lists a uid's groups from the user database.
func lookupUserGroups(uid uint32) ([]uint32, error) {
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		return nil, fmt.Errorf("look up uid %d: %w", uid, err)
	}
	ids, err := u.GroupIds()
	if err != nil {
		return nil, fmt.Errorf("groups of %s: %w", u.Username, err)
	}
	groups := make([]uint32, 0, len(ids))
	for _, id := range ids {
		if g, err := strconv.ParseUint(id, 10, 32); err == nil {
			groups = append(groups, uint32(g))
		}
	}
	return groups, nil
}

// lookupGroup resolves a group name (or a numeric id) to its gid.
func lookupGroup(name string) (uint32, error) {
	g, err := user.LookupGroup(name)
	if err != nil {
		var unknown user.UnknownGroupError
		if errors.As(err, &unknown) {
			if id, perr := strconv.ParseUint(name, 10, 32); perr == nil {
				return uint32(id), nil
			}
		}
		return 0, fmt.Errorf("control socket group %q: %w", name, err)
	}
	id, err := strconv.ParseUint(g.Gid, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("control socket group %q: bad gid %q: %w", name, g.Gid, err)
	}
	return uint32(id), nil
}
