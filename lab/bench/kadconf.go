package bench

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/hagate/hagate/lab/netlab"
)

// keepalivedConf renders gateway idx's keepalived.conf: two VRRPv3
// instances (LAN and WAN virtual IPs) in one sync group so they move
// together, unicast adverts to the other gateway on the same link, and the
// notify script on every transition of the group. Gateway 1 has the
// higher priority, so it is the first master.
func keepalivedConf(dir string, idx, other int, advert string) string {
	prio := 250 - 50*idx
	addr := func(k int, link string) string {
		p, _ := netlab.GatewayAddr(k, link)
		return p.Addr().String()
	}
	notify := filepath.Join(dir, "notify.sh")
	var b strings.Builder
	fmt.Fprintf(&b, "global_defs {\n  router_id gw%d\n  vrrp_version 3\n  script_user root\n  enable_script_security\n}\n", idx)
	fmt.Fprintf(&b, "vrrp_sync_group G1 {\n  group {\n    LAN\n    WAN\n  }\n")
	fmt.Fprintf(&b, "  notify_master \"%s primary\"\n  notify_backup \"%s backup\"\n  notify_fault \"%s fault\"\n}\n", notify, notify, notify)
	for i, inst := range []struct{ name, link, vip string }{
		{"LAN", netlab.LAN, netlab.LANVIP.String()},
		{"WAN", netlab.WAN, netlab.WANVIP.String()},
	} {
		fmt.Fprintf(&b, "vrrp_instance %s {\n  interface %s\n  state BACKUP\n  virtual_router_id %d\n  priority %d\n  advert_int %s\n",
			inst.name, inst.link, 51+i, prio, advert)
		fmt.Fprintf(&b, "  unicast_src_ip %s\n  unicast_peer {\n    %s\n  }\n", addr(idx, inst.link), addr(other, inst.link))
		fmt.Fprintf(&b, "  virtual_ipaddress {\n    %s dev %s\n  }\n}\n", inst.vip, inst.link)
	}
	return b.String()
}

// conntrackdConf renders gateway idx's conntrackd.conf: FTFW over UDP
// unicast on the HA link, the external cache on (committed at takeover),
// TCP only (UDP too if udp), the gateway's own and the virtual addresses
// ignored (as the FTFW example does), and tables big enough for the
// benchmark's millions.
func conntrackdConf(dir string, idx, other int, udp bool) string {
	protocols := "TCP"
	if udp {
		protocols = "TCP\n\t\t\tUDP"
	}
	ha := func(k int) string {
		p, _ := netlab.GatewayAddr(k, netlab.HA)
		return p.Addr().String()
	}
	own := func(link string) string {
		p, _ := netlab.GatewayAddr(idx, link)
		return p.Addr().String()
	}
	return fmt.Sprintf(`Sync {
	Mode FTFW {
		DisableExternalCache Off
	}
	UDP {
		IPv4_address %s
		IPv4_Destination_Address %s
		Port 3780
		Interface %s
		SndSocketBuffer 24985600
		RcvSocketBuffer 24985600
		Checksum on
	}
}
General {
	Systemd off
	HashSize 1048576
	HashLimit 8388608
	LogFile %s
	Syslog off
	LockFile %s
	UNIX {
		Path %s
	}
	NetlinkBufferSize 2097152
	NetlinkBufferSizeMaxGrowth 134217728
	NetlinkOverrunResync on
	Filter From Userspace {
		Protocol Accept {
			%s
		}
		Address Ignore {
			IPv4_address 127.0.0.1
			IPv4_address %s
			IPv4_address %s
			IPv4_address %s
			IPv4_address %s
			IPv4_address %s
		}
	}
}
`, ha(idx), ha(other), netlab.HA,
		filepath.Join(dir, "conntrackd.log"), filepath.Join(dir, "conntrackd.lock"), filepath.Join(dir, "conntrackd.ctl"), protocols,
		netlab.LANVIP.Addr(), netlab.WANVIP.Addr(), own(netlab.LAN), own(netlab.WAN), ha(idx))
}

// notifyScript is conntrack-tools' doc/sync/primary-backup.sh for this
// gateway's conntrackd, with each transition's start and end logged.
func notifyScript(conf, logFile string) string {
	return fmt.Sprintf(`#!/bin/sh
# conntrack-tools doc/sync/primary-backup.sh, for one lab gateway.
C="/usr/sbin/conntrackd -C %s"
echo "$(date +%%s.%%N) $1 start" >> %s
case "$1" in
primary)
	$C -c   # commit the external cache into the kernel table
	$C -f   # flush the internal and the external caches
	$C -R   # resynchronise the internal cache with the kernel table
	$C -B   # send a bulk update to the backups
	;;
backup)
	$C -s >/dev/null || $C -d
	$C -t   # shorten kernel timers to remove zombie entries
	$C -n   # request a resync with the master
	;;
fault)
	$C -t
	;;
esac
echo "$(date +%%s.%%N) $1 done" >> %s
`, conf, logFile, logFile)
}
