package checksum

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ForwardingSysctls are the settings under /proc/sys that decide how a
// member forwards and how the sessions it picks up behave: forwarding
// itself, reverse-path filtering, and the conntrack settings that decide
// whether a synced session is accepted and how long it lives.
var ForwardingSysctls = []string{
	"net/ipv4/ip_forward",
	"net/ipv6/conf/all/forwarding",
	"net/ipv4/conf/all/rp_filter",
	"net/netfilter/nf_conntrack_tcp_loose",
	"net/netfilter/nf_conntrack_tcp_be_liberal",
	"net/netfilter/nf_conntrack_tcp_timeout_established",
	"net/netfilter/nf_conntrack_udp_timeout",
	"net/netfilter/nf_conntrack_udp_timeout_stream",
	"net/netfilter/nf_conntrack_icmp_timeout",
	"net/netfilter/nf_conntrack_max",
}

// readSysctls returns the text the sysctls checksum is computed over: one
// "name = value" line per setting, in ForwardingSysctls' order ("absent"
// where the kernel lacks it, e.g. conntrack not loaded).
func readSysctls(root string) ([]byte, error) {
	var b bytes.Buffer
	for _, name := range ForwardingSysctls {
		v, err := os.ReadFile(filepath.Join(root, name))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			v = []byte("absent")
		case err != nil:
			return nil, fmt.Errorf("sysctl %s: %w", name, err)
		}
		fmt.Fprintf(&b, "%s = %s\n", strings.ReplaceAll(name, "/", "."), strings.Join(strings.Fields(string(v)), " "))
	}
	return b.Bytes(), nil
}
