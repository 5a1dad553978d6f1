package cluster

import (
	"bufio"
	"flag"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hagate/hagate/internal/checksum"
)

// The scripted tests drive one Node through a script of events and compare
// every action it returns with the expected text, as etcd raft's
// datadriven tests do. A script is a list of blocks:
//
//	command args...
//	----
//	expected output (one line per action, or nothing)
//
// separated by blank lines; lines starting with # are comments. Commands:
//
//	node id=gw1 priority=200 links=ha,ha2 [monitored=lan,wan] [pickup] [override]
//	     [interval=1s] [threshold=3] [holddown=5s] [hold=0s] [sync=ha:ADDR,ADDR]
//	     [pings=N] [pingthreshold=N] [flip=DURATION] [forcereset]
//	     [checks=NAME:WEIGHT,..] [sends] [fence] [link-failed-signal]
//	     [configsync]            (configsync: the ruleset is synced)
//	                             the node under test, created at time 0
//	link NAME up|down            a heartbeat or monitored link changes
//	peer ID [role=..] [priority=..] [uptime=..] [elected=..] [links=ha:ADDR,..]
//	     [monitored=N/M] [ping=N] [pending] [leaving] [failover] [epoch=N]
//	     [sums=PART:N,..] [configpending]
//	                             a member that heartbeats every interval
//	                             during tick (again: update it)
//	silence ID [link=NAME]       it stops (on one link only, with link=)
//	unreadable ID REASON...      a heartbeat of ID this build cannot read
//	tick DURATION                advance the clock, ticking every interval/4
//	ready gen=N | bulk | synclost PEER REASON...
//	command failover-set|failover-unset|reset-uptime|shutdown
//	reload priority=N [override] [monitored=a,b] [configsync]   a live reconfiguration
//	ping UP [down=N]             N ping servers answer (down: summed priority down)
//	check NAME fail|pass         a check command starts or stops failing
//	checksums PART=N ...         this member's configuration checksums now
//	state                        role, primary, holding, sync pending
//	warnings                     the warnings hagate status shows
//	heartbeat                    priority, remote-link score and uptime it sends
//	changekind                   why the acting primary last changed, as the
//	                             daemon counts it (ChangeKind)
//
// Sends are left out unless the node has `sends`. Regenerate the expected
// output with: go test ./internal/cluster -run TestScripts -rewrite
var rewrite = flag.Bool("rewrite", false, "rewrite the expected output of the scripted tests")

func TestScripts(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) { runScript(t, f) })
	}
}

type block struct {
	line     int
	comments []string // the comment lines before the command, kept by -rewrite
	cmd      string
	expected string
}

func parseScript(t *testing.T, path string) []block {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var blocks []block
	var comments []string
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	lineNo := 0
	for sc.Scan() {
		lineNo++
		l := sc.Text()
		if strings.HasPrefix(l, "#") {
			comments = append(comments, l)
		}
		if strings.TrimSpace(l) == "" || strings.HasPrefix(l, "#") {
			continue
		}
		b := block{line: lineNo, comments: comments, cmd: l}
		comments = nil
		if !sc.Scan() || sc.Text() != "----" {
			t.Fatalf("%s:%d: want ---- after the command", path, lineNo)
		}
		lineNo++
		var exp []string
		for sc.Scan() {
			lineNo++
			if sc.Text() == "" {
				break
			}
			exp = append(exp, sc.Text())
		}
		b.expected = strings.Join(exp, "\n")
		blocks = append(blocks, b)
	}
	return blocks
}

func runScript(t *testing.T, path string) {
	blocks := parseScript(t, path)
	r := &scriptRun{peers: map[string]*scriptPeer{}}
	var out strings.Builder
	failed := false
	for i, b := range blocks {
		got, err := r.do(b.cmd)
		if err != nil {
			t.Fatalf("%s:%d: %s: %v", path, b.line, b.cmd, err)
		}
		got = strings.TrimRight(got, "\n")
		if got != b.expected && !*rewrite {
			t.Errorf("%s:%d: %s\ngot:\n%s\nwant:\n%s", path, b.line, b.cmd, got, b.expected)
			failed = true
		}
		if i > 0 {
			out.WriteString("\n")
		}
		for _, c := range b.comments {
			out.WriteString(c + "\n")
		}
		fmt.Fprintf(&out, "%s\n----\n", b.cmd)
		if got != "" {
			out.WriteString(got + "\n")
		}
	}
	if *rewrite {
		if err := os.WriteFile(path, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	} else if failed {
		t.Log("rerun with -rewrite if the new output is right")
	}
}

// scriptRun is one script's state: the node under test, the clock, the
// peers that heartbeat on their own.
type scriptRun struct {
	n      *Node
	cfg    Config
	t0     time.Time
	now    time.Time
	sends  bool
	peers  map[string]*scriptPeer
	events int
}

type scriptPeer struct {
	id     string
	hb     Heartbeat
	links  map[string]netip.Addr // link -> address; silent links removed
	seq    map[string]uint64
	silent bool
	next   time.Time
	since  time.Time // the start of its HA uptime
	epoch  uint64    // its boot id
}

func args(fields []string) map[string]string {
	m := map[string]string{}
	for _, f := range fields {
		k, v, _ := strings.Cut(f, "=")
		m[k] = v
	}
	return m
}

func (r *scriptRun) do(line string) (string, error) {
	f := strings.Fields(line)
	a := args(f[1:])
	if f[0] != "node" && r.n == nil {
		return "", fmt.Errorf("no node yet")
	}
	switch f[0] {
	case "node":
		return "", r.newNode(a)
	case "link":
		if len(f) != 3 {
			return "", fmt.Errorf("want: link NAME up|down")
		}
		return r.step(LinkChange{Now: r.now, Interface: f[1], Up: f[2] == "up"}), nil
	case "peer":
		return "", r.setPeer(f[1], args(f[2:]))
	case "silence":
		p := r.peers[f[1]]
		if p == nil {
			return "", fmt.Errorf("no peer %s", f[1])
		}
		if l, ok := args(f[2:])["link"]; ok {
			delete(p.links, l)
		} else {
			p.silent = true
		}
		return "", nil
	case "unreadable":
		// One authenticated heartbeat of a format this build cannot read.
		return r.step(Received{Now: r.now, From: f[1], Link: r.cfg.Links[0].Interface, Epoch: 1, Unreadable: strings.Join(f[2:], " ")}), nil
	case "tick":
		d, err := time.ParseDuration(f[1])
		if err != nil {
			return "", err
		}
		return r.tick(d), nil
	case "ping":
		up, err := strconv.Atoi(f[1])
		if err != nil {
			return "", fmt.Errorf("ping: %w", err)
		}
		down, _ := strconv.Atoi(a["down"])
		return r.step(PingChange{Now: r.now, Up: up, DownPriority: down}), nil
	case "check":
		return r.step(CheckChange{Now: r.now, Name: f[1], Failing: f[2] == "fail"}), nil
	case "heartbeat":
		hb := r.n.heartbeat(r.now)
		return fmt.Sprintf("priority=%d ping=%d uptime=%s", hb.Priority, hb.PingUp, hb.Uptime), nil
	case "ready":
		g, err := strconv.ParseUint(a["gen"], 10, 64)
		if err != nil {
			return "", fmt.Errorf("gen: %w", err)
		}
		return r.step(SessionsReady{Now: r.now, Gen: g}), nil
	case "bulk":
		return r.step(BulkReceived{Now: r.now}), nil
	case "synclost":
		return r.step(SyncLost{Now: r.now, Peer: f[1], Reason: strings.Join(f[2:], " ")}), nil
	case "reload":
		c := r.cfg
		c.Priority, _ = strconv.Atoi(a["priority"])
		c.Override = has(a, "override")
		c.Monitored = nil
		if v := a["monitored"]; v != "" {
			c.Monitored = strings.Split(v, ",")
		}
		c.SyncedParts = nil
		if has(a, "configsync") {
			c.SyncedParts = []checksum.Part{checksum.Ruleset}
		}
		return r.step(Reconfigure{Now: r.now, Config: c}), nil
	case "command":
		k, ok := map[string]CommandKind{"failover-set": FailoverSet, "failover-unset": FailoverUnset, "reset-uptime": ResetUptime, "shutdown": Shutdown}[f[1]]
		if !ok {
			return "", fmt.Errorf("unknown command %q", f[1])
		}
		return r.step(Command{Now: r.now, Kind: k}), nil
	case "checksums":
		sums, err := parseSums(f[1:], "=")
		if err != nil {
			return "", err
		}
		return r.step(ChecksumsChange{Now: r.now, Sums: sums}), nil
	case "warnings":
		return strings.Join(r.n.Status(r.now).Warnings, "\n"), nil
	case "changekind":
		prev := r.n.PreviousPrimary()
		return fmt.Sprintf("previous=%q primary=%q kind=%s", prev, r.n.primary, r.n.ChangeKind(prev)), nil
	case "state":
		n := r.n
		s := fmt.Sprintf("role=%s primary=%q holding=%v sync_pending=%v uptime=%s", n.role, n.primary, n.holding, n.syncPending, n.uptime(r.now))
		if n.cfg.Fence {
			s += fmt.Sprintf(" fenced=%v", n.fenced)
		}
		if len(n.cfg.SyncedParts) > 0 {
			s += fmt.Sprintf(" config_pending=%v", n.conf.pending)
		}
		return s, nil
	}
	return "", fmt.Errorf("unknown command %q", f[0])
}

func (r *scriptRun) newNode(a map[string]string) error {
	dur := func(k string, def time.Duration) time.Duration {
		if v, ok := a[k]; ok {
			d, err := time.ParseDuration(v)
			if err == nil {
				return d
			}
		}
		return def
	}
	prio, _ := strconv.Atoi(a["priority"])
	c := Config{
		NodeID: a["id"], Priority: prio, Override: has(a, "override"), UptimeMargin: dur("margin", 300*time.Second),
		Interval: dur("interval", time.Second), HelloHolddown: dur("holddown", 5*time.Second),
		FailoverHoldTime: dur("hold", 0), SessionPickup: has(a, "pickup"), ClusterSize: 2,
		Fence: has(a, "fence"), LinkFailedSignal: has(a, "link-failed-signal"),
	}
	if has(a, "configsync") {
		c.SyncedParts = []checksum.Part{checksum.Ruleset}
	}
	c.LostThreshold = 3
	c.PingServers, _ = strconv.Atoi(a["pings"])
	c.PingThreshold, _ = strconv.Atoi(a["pingthreshold"])
	c.PingFlipTimeout, c.PingForceReset = dur("flip", 0), has(a, "forcereset")
	for ck := range strings.SplitSeq(a["checks"], ",") {
		if name, w, ok := strings.Cut(ck, ":"); ok {
			weight, _ := strconv.Atoi(w)
			c.Checks = append(c.Checks, CheckConfig{Name: name, Weight: weight})
		}
	}
	if v, ok := a["threshold"]; ok {
		c.LostThreshold, _ = strconv.Atoi(v)
	}
	for l := range strings.SplitSeq(a["links"], ",") {
		if l != "" {
			c.Links = append(c.Links, Link{Interface: l, Priority: 100 - len(c.Links)})
		}
	}
	if v := a["monitored"]; v != "" {
		c.Monitored = strings.Split(v, ",")
	}
	if v := a["sync"]; v != "" {
		for part := range strings.SplitSeq(v, ";") {
			name, addrs, _ := strings.Cut(part, ":")
			sl := SyncLink{Interface: name}
			for s := range strings.SplitSeq(addrs, ",") {
				if s != "" {
					sl.Peers = append(sl.Peers, netip.MustParseAddr(s))
				}
			}
			c.SyncLinks = append(c.SyncLinks, sl)
		}
	}
	r.cfg, r.sends = c, has(a, "sends")
	r.t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r.now = r.t0
	r.n = New(c, r.now)
	return nil
}

// parseSums reads checksums written PART<sep>N (ruleset=1 or ruleset:1).
func parseSums(fields []string, sep string) (checksum.Sums, error) {
	var sums checksum.Sums
	for _, f := range fields {
		name, v, _ := strings.Cut(f, sep)
		part, err := checksum.ParsePart(name)
		if err != nil {
			return sums, err
		}
		if sums[part], err = strconv.ParseUint(v, 10, 64); err != nil {
			return sums, fmt.Errorf("checksum of %s: %w", name, err)
		}
	}
	return sums, nil
}

func has(a map[string]string, k string) bool { _, ok := a[k]; return ok }

func (r *scriptRun) setPeer(id string, a map[string]string) error {
	p := r.peers[id]
	if p == nil {
		p = &scriptPeer{id: id, links: map[string]netip.Addr{}, seq: map[string]uint64{}, next: r.now, since: r.now, epoch: 1,
			hb: Heartbeat{Role: Subordinate, MonitoredTotal: len(r.cfg.Monitored), MonitoredUp: len(r.cfg.Monitored)}}
		r.peers[id] = p
	}
	if p.silent || p.next.Before(r.now) {
		p.next = r.now // speaking again: from now on
	}
	p.silent = false
	for k, v := range a {
		var err error
		switch k {
		case "role":
			p.hb.Role = map[string]Role{"hello": Hello, "subordinate": Subordinate, "primary": Primary}[v]
		case "priority":
			p.hb.Priority, err = strconv.Atoi(v)
		case "uptime":
			var up time.Duration
			up, err = time.ParseDuration(v)
			p.since = r.now.Add(-up)
		case "elected":
			p.hb.Elected = v
		case "monitored":
			up, total, _ := strings.Cut(v, "/")
			p.hb.MonitoredUp, _ = strconv.Atoi(up)
			p.hb.MonitoredTotal, err = strconv.Atoi(total)
		case "ping":
			p.hb.PingUp, err = strconv.Atoi(v)
		case "pending":
			p.hb.SyncPending = v != "false"
		case "leaving":
			p.hb.Leaving = v != "false"
		case "failover":
			p.hb.FailoverSet = v != "false"
		case "epoch":
			p.epoch, err = strconv.ParseUint(v, 10, 64)
			p.hb.Count = 0 // a new boot counts from the start
		case "sums":
			p.hb.Checksums, err = parseSums(strings.Split(v, ","), ":")
		case "configpending":
			p.hb.ConfigPending = v != "false"
		case "links":
			for _, la := range strings.Split(v, ",") {
				l, addr, _ := strings.Cut(la, ":")
				p.links[l] = netip.Addr{}
				if addr != "" {
					p.links[l] = netip.MustParseAddr(addr)
				}
			}
		default:
			return fmt.Errorf("unknown peer key %q", k)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
	}
	return nil
}

// tick advances the clock by d: the node ticks every interval/4 and every
// speaking peer heartbeats every interval, in time order.
func (r *scriptRun) tick(d time.Duration) string {
	var out strings.Builder
	end := r.now.Add(d)
	step := r.cfg.Interval / 4
	for next := r.now.Add(step); !next.After(end); next = next.Add(step) {
		for _, id := range slices.Sorted(maps.Keys(r.peers)) {
			p := r.peers[id]
			for !p.silent && !p.next.After(next) {
				r.now = p.next
				out.WriteString(r.hear(p))
				p.next = p.next.Add(r.cfg.Interval)
			}
		}
		r.now = next
		out.WriteString(r.step(Tick{Now: r.now}))
	}
	r.now = end
	return out.String()
}

func (r *scriptRun) hear(p *scriptPeer) string {
	var out strings.Builder
	p.hb.Count++
	for _, l := range slices.Sorted(maps.Keys(p.links)) {
		p.seq[l]++
		hb := p.hb
		hb.Uptime = r.now.Sub(p.since)
		out.WriteString(r.step(Received{Now: r.now, From: p.id, Link: l, Addr: p.links[l], Seq: p.seq[l], Epoch: p.epoch, HB: hb}))
	}
	return out.String()
}

// step feeds ev and prints the actions, stamped with the time since start.
func (r *scriptRun) step(ev Event) string {
	var out strings.Builder
	for _, a := range r.n.Step(ev) {
		s := describe(a)
		if _, ok := a.(Send); ok && !r.sends {
			continue
		}
		fmt.Fprintf(&out, "%s %s\n", r.now.Sub(r.t0), s)
	}
	return out.String()
}

func describe(a Action) string {
	switch a := a.(type) {
	case Send:
		s := fmt.Sprintf("send role=%s elected=%q pending=%v", a.HB.Role, a.HB.Elected, a.HB.SyncPending)
		if a.HB.Leaving {
			s += " leaving"
		}
		return s
	case RoleChange:
		return fmt.Sprintf("role %s -> %s (%s: %s)", a.From, a.To, a.Kind, a.Reason)
	case PrimaryChange:
		return fmt.Sprintf("primary %q (%s)", a.Primary, a.Reason)
	case Notice:
		return "notice: " + a.Msg
	case AcceptSessions:
		return fmt.Sprintf("accept-sessions from=%q", a.From)
	case PromoteSessions:
		return fmt.Sprintf("promote-sessions gen=%d", a.Gen)
	case ClaimAddresses:
		return "claim-addresses"
	case ReleaseAddresses:
		return fmt.Sprintf("release-addresses (%s)", a.Reason)
	case SyncRoutes:
		if len(a.Absent) > 0 {
			return fmt.Sprintf("sync-routes %v absent %v", a.Peers, a.Absent)
		}
		return fmt.Sprintf("sync-routes %v", a.Peers)
	case Notify:
		return fmt.Sprintf("notify %s -> %s (%s)", a.Previous, a.Role, a.Kind)
	case Fence:
		return "fence"
	case Unfence:
		return "unfence"
	case SignalLinkFailure:
		return "signal-link-failure"
	case ConfigMismatch:
		return fmt.Sprintf("config-mismatch member=%s part=%s primary=%s differs=%v", a.Member, a.Part, a.Primary, a.Differs)
	case SyncConfig:
		return fmt.Sprintf("sync-config from=%s addr=%s parts=%v", a.From, a.Addr, a.Parts)
	}
	return fmt.Sprintf("%T", a)
}
