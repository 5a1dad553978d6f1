package checksum

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Route is one route as the checksum sees it.
type Route struct {
	Table    int
	Dst      string // "default" for the default route
	Gateways []string
	Dev      string
	Protocol int
	Metric   int
	Type     int
}

// NormaliseRoutes turns routes into the text the routes checksum is
// computed over, one route a line, sorted. Left out, because they differ
// between members that forward the same way:
//
//   - routes the kernel made from the member's own addresses (protocol
//     kernel: connected routes, which the primary's virtual IPs add to);
//   - routes through an excluded interface;
//   - the preferred source address (each member's own).
func NormaliseRoutes(routes []Route, ex Exclude) []byte {
	var lines []string
	for _, r := range routes {
		if r.Protocol == unix.RTPROT_KERNEL || slices.Contains(ex.Interfaces, r.Dev) {
			continue
		}
		gws := slices.Clone(r.Gateways)
		slices.Sort(gws)
		lines = append(lines, fmt.Sprintf("table %d %s via %v dev %s proto %d metric %d type %d", r.Table, r.Dst, gws, r.Dev, r.Protocol, r.Metric, r.Type))
	}
	slices.Sort(lines)
	var b bytes.Buffer
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// readRoutes lists the routes of the main table and of tables, IPv4 and
// IPv6, through netlink.
func readRoutes(tables []int) ([]Route, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	names := map[int]string{}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	var out []Route
	for _, t := range append([]int{unix.RT_TABLE_MAIN}, tables...) {
		rs, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: t}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return nil, fmt.Errorf("list routes of table %d: %w", t, err)
		}
		for _, r := range rs {
			rt := Route{Table: r.Table, Dst: "default", Dev: names[r.LinkIndex], Protocol: int(r.Protocol), Metric: r.Priority, Type: r.Type}
			if r.Dst != nil {
				rt.Dst = r.Dst.String()
			}
			if r.Gw != nil {
				rt.Gateways = append(rt.Gateways, r.Gw.String())
			}
			for _, nh := range r.MultiPath {
				rt.Gateways = append(rt.Gateways, fmt.Sprintf("%s@%s", nh.Gw, names[nh.LinkIndex]))
			}
			out = append(out, rt)
		}
	}
	return out, nil
}
