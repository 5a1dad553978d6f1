// Package cluster owns a member's view of the cluster and its role in it: the
// FGCP state machine. A Node is a plain value driven by Step(event) with time
// as an input; it returns the actions the daemon must perform (send a
// heartbeat, take over the virtual addresses, step down). It does no I/O, so
// the same code runs in the daemon and in the many-node simulation.
package cluster

import (
	"fmt"
	"net/netip"
	"time"
)

// Role is a member's role.
type Role uint8

const (
	// Hello: starting; listening for hello_holddown before it may become primary.
	Hello Role = iota
	Subordinate
	Primary
)

func (r Role) String() string {
	switch r {
	case Hello:
		return "hello"
	case Subordinate:
		return "subordinate"
	case Primary:
		return "primary"
	}
	return fmt.Sprintf("role(%d)", uint8(r))
}

// Link is one heartbeat link.
type Link struct {
	Interface string
	Priority  int
}

// Config holds what the state machine needs of the configuration.
type Config struct {
	NodeID        string
	Priority      int
	Override      bool
	UptimeMargin  time.Duration
	Interval      time.Duration
	LostThreshold int
	HelloHolddown time.Duration
	Links         []Link   // heartbeat links
	Monitored     []string // monitored interfaces
	PingServers   int      // number of ping servers configured
	// FailoverHoldTime: a new primary is not preempted (by uptime, priority or
	// node id) for this long after it took over. Failures still fail over.
	FailoverHoldTime time.Duration
	// Quorum: be primary only while seeing a strict majority of ClusterSize
	// members (plus the witness, if configured, as one vote).
	Quorum      bool
	ClusterSize int
	Witness     bool
	// SessionPickup: a member that becomes subordinate has not synced the
	// sessions until the daemon says so (SyncChange), and may not preempt
	// a primary until then.
	SessionPickup bool
}

// DeadInterval is how long a member may be silent before it counts as gone.
func (c Config) DeadInterval() time.Duration { return c.Interval * time.Duration(c.LostThreshold) }

// Heartbeat is what a member says of itself in every heartbeat.
type Heartbeat struct {
	Role           Role
	Priority       int
	Override       bool
	MonitoredUp    int
	MonitoredTotal int
	PingUp         int
	Uptime         time.Duration
	FailoverSet    bool
	Elected        string // the primary by the sender's election ("" if none)
	Leaving        bool   // the sender is shutting down: elect again now
	// HelloLeft is what remains of the sender's hello_holddown while it is
	// in the Hello role, so members that start together wait for each other.
	HelloLeft time.Duration
	// SyncPending: the sender has not yet received the primary's sessions,
	// so it must not preempt the primary (it would drop the sessions).
	SyncPending bool
	// Count numbers the sender's heartbeats; every link carries the same
	// count, so copies arriving out of order across links are recognised.
	Count uint64
}

// Event is an input to Step.
type Event interface{ at() time.Time }

// Tick advances time. The daemon ticks four times per heartbeat interval, so
// that a silent member is noticed within a quarter interval of its deadline.
type Tick struct{ Now time.Time }

// Received is an authenticated heartbeat from another member.
type Received struct {
	Now  time.Time
	From string
	Link string     // the interface it arrived on
	Addr netip.Addr // the sender's address on that link
	Seq  uint64     // the sender's sequence number on that link
	// Epoch identifies the sender's boot: a larger epoch is a restart.
	Epoch uint64
	HB    Heartbeat
}

// LinkChange reports a monitored or heartbeat interface going up or down.
type LinkChange struct {
	Now       time.Time
	Interface string
	Up        bool
}

// PingChange reports how many ping servers answer.
type PingChange struct {
	Now time.Time
	Up  int
}

// WitnessChange reports whether the split-brain witness answers.
type WitnessChange struct {
	Now time.Time
	Up  bool
}

// SyncChange reports whether this member still waits for the primary's
// session bulk sync.
type SyncChange struct {
	Now     time.Time
	Pending bool
}

// CommandKind is an operator command.
type CommandKind uint8

const (
	FailoverSet   CommandKind = iota + 1 // step down and stay ranked last
	FailoverUnset                        // rank normally again
	ResetUptime                          // HA uptime to zero
	Shutdown                             // leaving: tell the others, step down
)

// Command is an operator command or the daemon stopping.
type Command struct {
	Now  time.Time
	Kind CommandKind
}

func (e Tick) at() time.Time          { return e.Now }
func (e Received) at() time.Time      { return e.Now }
func (e LinkChange) at() time.Time    { return e.Now }
func (e PingChange) at() time.Time    { return e.Now }
func (e WitnessChange) at() time.Time { return e.Now }
func (e Command) at() time.Time       { return e.Now }
func (e SyncChange) at() time.Time    { return e.Now }

// Action is an output of Step for the daemon to perform.
type Action interface{ isAction() }

// Send: send HB to every peer on every heartbeat link that is up.
type Send struct{ HB Heartbeat }

// Kind classifies role changes for logs and metrics.
type Kind string

const (
	KindStartup  Kind = "startup"  // first election
	KindDevice   Kind = "device"   // the primary went silent
	KindLink     Kind = "link"     // a monitored link or ping server failed
	KindManual   Kind = "manual"   // hagate failover
	KindShutdown Kind = "shutdown" // the primary left cleanly
	KindPreempt  Kind = "preempt"  // a better member took over (uptime, priority, override)
	KindQuorum   Kind = "quorum"   // quorum lost or regained
)

// RoleChange: this member's role changed. On To == Primary the daemon makes
// the synced sessions usable, then adds the virtual addresses and announces
// them; on leaving Primary it removes them.
type RoleChange struct {
	From, To Role
	Kind     Kind
	Reason   string
}

// PrimaryChange: the member acting as primary changed ("" while there is none).
type PrimaryChange struct {
	Primary string
	Reason  string
}

// Notice is something worth logging (and keeping in history when History).
type Notice struct {
	Warn    bool
	History bool
	Msg     string
}

func (Send) isAction()          {}
func (RoleChange) isAction()    {}
func (PrimaryChange) isAction() {}
func (Notice) isAction()        {}
