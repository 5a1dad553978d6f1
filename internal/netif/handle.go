package netif

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ErrNoInterface reports that the named interface does not exist in the
// handle's namespace.
var ErrNoInterface = errors.New("no such interface")

// netlinkTimeout bounds every request to the kernel, so that a wedged
// rtnetlink socket turns into an error instead of a stuck daemon.
const netlinkTimeout = 5 * time.Second

// A Handle acts on the links and addresses of one network namespace, the one
// it was made for, whatever thread its methods run on.
//
// A Handle is safe for concurrent use. Close releases it.
type Handle struct {
	nl *netlink.Handle
	ns netns.NsHandle // owned: a duplicate of the caller's descriptor
	// home: ns is the namespace the process runs in, so sockets are opened
	// without entering it. Entering a namespace (setns) needs CAP_SYS_ADMIN,
	// which the systemd unit does not grant, even to enter the one the daemon
	// is already in.
	home bool
}

// New returns a Handle for the network namespace of the calling thread (for
// the daemon, the gateway's namespace it was started in).
func New() (*Handle, error) {
	ns, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("current network namespace: %w", err)
	}
	defer ns.Close()
	return NewAt(ns)
}

// NewAt returns a Handle for the network namespace ns. The Handle keeps its
// own duplicate of the descriptor: the caller may close ns afterwards.
func NewAt(ns netns.NsHandle) (*Handle, error) {
	fd, err := unix.FcntlInt(uintptr(ns), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("duplicate namespace handle: %w", err)
	}
	own := netns.NsHandle(fd)
	home := isProcessNamespace(own)
	var nh *netlink.Handle
	if home {
		nh, err = netlink.NewHandle(unix.NETLINK_ROUTE)
	} else {
		nh, err = netlink.NewHandleAt(own, unix.NETLINK_ROUTE)
	}
	if err != nil {
		own.Close()
		return nil, fmt.Errorf("rtnetlink socket: %w", err)
	}
	if err := nh.SetSocketTimeout(netlinkTimeout); err != nil {
		nh.Close()
		own.Close()
		return nil, fmt.Errorf("rtnetlink socket timeout: %w", err)
	}
	return &Handle{nl: nh, ns: own, home: home}, nil
}

// isProcessNamespace reports whether ns is the network namespace of the
// process (its threads that never entered another one).
func isProcessNamespace(ns netns.NsHandle) bool {
	self, err := netns.GetFromPath("/proc/self/ns/net")
	if err != nil {
		return false // enter ns explicitly, as for any other namespace
	}
	defer self.Close()
	return ns.Equal(self)
}

// Close releases the Handle's sockets and namespace descriptor. Watches
// already running keep their own subscription until their context ends,
// but can no longer replace it if it fails: close the Handle after them.
func (h *Handle) Close() error {
	h.nl.Close()
	return h.ns.Close()
}

// link looks an interface up by name, mapping "not found" to ErrNoInterface.
func (h *Handle) link(ifname string) (netlink.Link, error) {
	l, err := h.nl.LinkByName(ifname)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) || errors.Is(err, unix.ENODEV) {
			return nil, fmt.Errorf("%w %q", ErrNoInterface, ifname)
		}
		return nil, fmt.Errorf("look up %q: %w", ifname, err)
	}
	return l, nil
}

// do runs fn on a thread switched into the handle's namespace. Sockets are
// bound to the namespace of the thread that creates them, and the standard
// library's interface look-ups read the thread's namespace, so everything
// that opens a socket other than rtnetlink runs inside do.
func (h *Handle) do(fn func() error) error {
	if h.home {
		return fn()
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("current network namespace: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(h.ns); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter network namespace: %w", err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		// The thread stays locked: the runtime discards it when the
		// goroutine exits instead of reusing it in the wrong namespace.
		return errors.Join(ferr, fmt.Errorf("return to network namespace: %w", err))
	}
	runtime.UnlockOSThread()
	return ferr
}

// stdInterface converts a link to the standard library's interface type that
// the packet socket libraries take. Methods such as Addrs read the namespace
// of the calling thread, so they must be used inside h.do.
func stdInterface(l netlink.Link) *net.Interface {
	a := l.Attrs()
	return &net.Interface{
		Index:        a.Index,
		MTU:          a.MTU,
		Name:         a.Name,
		HardwareAddr: a.HardwareAddr,
		Flags:        a.Flags,
	}
}
