package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hagate/hagate/internal/checks"
	"github.com/hagate/hagate/internal/daemon"
	"github.com/hagate/hagate/internal/history"
	"github.com/hagate/hagate/internal/pinger"
	"github.com/hagate/hagate/internal/sessions"
)

// printStatus renders `hagate status` in the spirit of FortiOS's
// `get system ha status`.
func printStatus(w io.Writer, data json.RawMessage) error {
	st, err := decode[daemon.Status](data)
	if err != nil {
		return err
	}
	health := "OK"
	if len(st.Warnings) > 0 {
		health = "WARNING"
	}
	fmt.Fprintf(w, "HA Health Status: %s\n", health)
	for _, warn := range st.Warnings {
		fmt.Fprintf(w, "    %s\n", warn)
	}
	fmt.Fprintf(w, "Group ID:         %d\n", st.GroupID)
	fmt.Fprintf(w, "This member:      %s, %s since %s (%s)\n", st.NodeID, st.Role, stamp(st.RoleSince), ago(time.Since(st.RoleSince)))
	if st.HolddownLeft > 0 {
		fmt.Fprintf(w, "Hello holddown:   %.1fs left\n", st.HolddownLeft)
	}
	primary := st.PrimaryID
	if primary == "" {
		primary = "none"
	}
	fmt.Fprintf(w, "Primary:          %s\n", primary)
	if st.ElectedBecause != "" {
		fmt.Fprintf(w, "Elected because:  %s\n", st.ElectedBecause)
	}
	fmt.Fprintf(w, "Override:         %v\n", st.Override)
	fmt.Fprintf(w, "Heartbeat:        every %s, lost after %d (%s), %s\n",
		secs(st.HeartbeatInterval), st.LostThreshold, secs(st.HeartbeatInterval*float64(st.LostThreshold)), st.Security)
	vips := "none held"
	if st.HoldingVIPs {
		vips = "held by this member"
	}
	fmt.Fprintf(w, "Virtual IPs:      %s (%s)\n", strings.Join(st.VirtualIPs, ", "), vips)
	switch {
	case len(st.FenceInterfaces) == 0:
		fmt.Fprintf(w, "Fence:            off (fence.enabled: false)\n")
	case st.Fenced:
		fmt.Fprintf(w, "Fence:            raised: not forwarding on %s\n", strings.Join(st.FenceInterfaces, ", "))
	default:
		fmt.Fprintf(w, "Fence:            lowered: forwarding on %s\n", strings.Join(st.FenceInterfaces, ", "))
	}
	if !st.LastFailover.IsZero() {
		fmt.Fprintf(w, "Last takeover:    %s\n", stamp(st.LastFailover))
	}
	fmt.Fprintf(w, "Primary selected using:\n")
	for i := len(st.Selections) - 1; i >= 0; i-- {
		s := st.Selections[i]
		fmt.Fprintf(w, "    <%s> %s\n", stamp(s.Time), s.Reason)
	}
	fmt.Fprintln(w)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tROLE\tVERSION\tPRIORITY\tMONITORED\tHA UPTIME\tLAST HEARD\tHB LINK\tHEARTBEATS LOST")
	for _, m := range st.Members {
		id, heard := m.NodeID, ago(time.Duration(m.LastHeardSecond*float64(time.Second)))
		if m.Self {
			id, heard = id+" (this)", "-"
		}
		role := m.Role
		if m.FailoverSet {
			role += " (failover set)"
		}
		// An upgrade runs two builds side by side for a while: the
		// version says which members are done (0.1.0's heartbeats do
		// not carry one; the daemon names that release for them).
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d/%d\t%s\t%s\t%s\t%s\n", id, role, dash(m.Version), m.Priority, m.MonitoredUp, m.MonitoredTotal,
			ago(time.Duration(m.UptimeSeconds*float64(time.Second))), heard, dash(m.LinkInUse), lostList(m.Lost))
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HEARTBEAT LINK\tPRIORITY\tSTATE\tIN USE\tPEERS HEARD\tLOST")
	for _, l := range st.Links {
		state := "down"
		if l.Up {
			state = "up"
		}
		use := ""
		if l.InUse {
			use = "yes"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\t%d\n", l.Interface, l.Priority, state, use, l.PeersHeard, l.Lost)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, group := range []struct {
		title string
		ts    []pinger.TargetStatus
	}{{"PING SERVER", st.PingServers}, {"WITNESS", st.Witness}} {
		if len(group.ts) == 0 {
			continue
		}
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "%s\tINTERFACE\tSTATE\tLAST RTT\tFAILURES IN A ROW\tFLIPS\n", group.title)
		for _, p := range group.ts {
			state := fmt.Sprint(p.State)
			if p.FlipLeft > 0 {
				state += fmt.Sprintf(" (up in %s)", p.FlipLeft.Round(time.Second))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\n", p.Target, dash(p.Interface), state, p.LastRTT.Round(time.Microsecond), p.ConsecutiveFailures, p.Flips)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return printChecks(w, st.Checks)
}

// printChecks shows each check command: its state, last exit code and the
// last line of its output.
func printChecks(w io.Writer, cs []checks.Status) error {
	if len(cs) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tSTATE\tRUNS\tLAST EXIT\tLAST OUTPUT")
	for _, c := range cs {
		state, exit := "passing", fmt.Sprint(c.ExitCode)
		if c.Failing {
			state = "failing"
		}
		if c.Error != "" {
			exit = c.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", c.Name, state, c.Runs, exit, dash(c.LastLine))
	}
	return tw.Flush()
}

func printHistory(w io.Writer, data json.RawMessage) error {
	entries, err := decode[[]history.Entry](data)
	if err != nil {
		return err
	}
	if len(entries) == 0 {
		fmt.Fprintln(w, "no history yet")
		return nil
	}
	for i := len(entries) - 1; i >= 0; i-- {
		e := entries[i]
		detail := e.Reason
		switch {
		case e.Event == "role":
			detail = fmt.Sprintf("became %s: %s", e.Role, e.Reason)
		case e.Event == "election" && e.Primary != "":
			detail = fmt.Sprintf("primary %s: %s", e.Primary, e.Reason)
		}
		fmt.Fprintf(w, "<%s> %s %s\n", stamp(e.Time), e.Node, detail)
	}
	return nil
}

func printSessions(w io.Writer, data json.RawMessage) error {
	st, err := decode[sessions.Stats](data)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "Session pickup:   %s", st.Role)
	if st.Primary != "" {
		fmt.Fprintf(w, " (primary %s)", st.Primary)
	}
	fmt.Fprintf(w, "\nSessions synced:  %d", st.Sessions)
	if st.Pending > 0 {
		fmt.Fprintf(w, " (%d younger than session_pickup.delay, not sent yet)", st.Pending)
	}
	if st.HeldBack > 0 {
		fmt.Fprintf(w, " (%d held back by session_pickup.install_delay, not in the kernel yet)", st.HeldBack)
	}
	if st.NotInstalled > 0 {
		fmt.Fprintf(w, "\nNot installed:    %d refused by the kernel (anti-entropy resends them)", st.NotInstalled)
	}
	if st.InstalledEarly > 0 {
		fmt.Fprintf(w, "\nInstalled early:  %d held back past session_pickup.max_held_back, installed before their install_delay", st.InstalledEarly)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "By protocol:      %s\n", countList(st.ByProtocol))
	if len(st.TCPStates) > 0 {
		fmt.Fprintf(w, "TCP states:       %s\n", countList(st.TCPStates))
	}
	if !st.LastBulk.At.IsZero() {
		fmt.Fprintf(w, "Last bulk sync:   %d sessions in %s at %s (%d stale removed)\n",
			st.LastBulk.Sessions, st.LastBulk.Duration.Round(time.Microsecond), stamp(st.LastBulk.At), st.LastBulk.Removed)
	}
	if x := st.Expectations; x != nil {
		fmt.Fprintf(w, "Expectations:     %d held", x.Held)
		if x.Unsent > 0 {
			fmt.Fprintf(w, " (%d waiting for their master)", x.Unsent)
		}
		fmt.Fprintf(w, ", %d sent, %d installed, %d removed", x.Sent, x.Installed, x.Removed)
		if len(x.Dropped) > 0 {
			dropped := map[string]int{}
			for r, n := range x.Dropped {
				dropped[r] = int(n)
			}
			fmt.Fprintf(w, ", dropped: %s", countList(dropped))
		}
		fmt.Fprintln(w)
	}
	if st.Lag.Batches > 0 {
		fmt.Fprintf(w, "Lag per change:   p50 %s, p99 %s, max %s (%d batches)\n", st.Lag.P50.Round(time.Microsecond),
			st.Lag.P99.Round(time.Microsecond), st.Lag.Max.Round(time.Microsecond), st.Lag.Batches)
	}
	fmt.Fprintf(w, "Resyncs %d, event overflows %d, queue overflows %d, frame errors %d, install errors %d, max_sessions hits %d\n",
		st.Resyncs, st.EventOverflows, st.QueueOverflows, st.FrameErrors, st.ApplyErrors, st.TableFull)
	if st.DivergentRanges > 0 || st.Repaired > 0 {
		fmt.Fprintf(w, "Anti-entropy:     %d divergent ranges found, %d sessions repaired\n", st.DivergentRanges, st.Repaired)
	}
	if len(st.Peers) == 0 || st.Role != "primary" {
		return nil // a subordinate's peers are only dialled once it is primary
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SUBORDINATE\tADDRESS\tCONNECTED\tQUEUED\tSENT\tACKED\tSYNC LAG\tBULKS\tLAST BULK\tRESYNCS")
	for _, p := range st.Peers {
		fmt.Fprintf(tw, "%s\t%s\t%v\t%d\t%d\t%d\t%s\t%d\t%s\t%d\n", dash(p.Node), p.Addr, p.Connected, p.Queued,
			p.SentSeq, p.AckedSeq, p.Lag.Round(time.Microsecond), p.Bulks, p.LastBulk.Round(time.Microsecond), p.Resyncs)
	}
	return tw.Flush()
}

func countList(m map[string]int) string {
	if len(m) == 0 {
		return "-"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func stamp(t time.Time) string { return t.Local().Format("2006/01/02 15:04:05") }

func secs(s float64) string {
	return (time.Duration(s * float64(time.Second))).String()
}

// ago renders a duration the way operators read uptimes: 3d4h, 5m2s, 0.12s.
func ago(d time.Duration) string {
	switch {
	case d < 0:
		return "-"
	case d < time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d < time.Hour:
		return d.Round(time.Second).String()
	case d < 24*time.Hour:
		return d.Round(time.Minute).String()
	}
	days := int(d / (24 * time.Hour))
	return fmt.Sprintf("%dd%dh", days, int((d%(24*time.Hour))/time.Hour))
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func lostList(m map[string]uint64) string {
	if len(m) == 0 {
		return "-"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s:%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

func printReload(w io.Writer, data json.RawMessage) error {
	res, err := decode[daemon.ReloadResult](data)
	if err != nil {
		return err
	}
	if len(res.Changed) == 0 {
		_, err = fmt.Fprintln(w, "configuration reloaded: nothing changed")
		return err
	}
	_, err = fmt.Fprintf(w, "configuration reloaded: %s\n", strings.Join(res.Changed, ", "))
	return err
}
