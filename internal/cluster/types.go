// Package cluster owns a member's view of the cluster and its role in it: the
// FGCP state machine. A Node is a plain value driven by Step(event) with time
// as an input; it returns every effect the member must have, as actions, in
// order: send a heartbeat, take the primary's sessions, make the synced
// sessions usable, claim or release the virtual addresses, dial the
// subordinates' session sync over a given link, run the notify hook. It does
// no I/O, so the daemon and the many-node simulation carry out the very same
// actions.
//
// The rule the order of those actions keeps: with session pickup, a new
// primary's sessions are usable before its addresses come up (a client's
// retransmission that reaches it must find its session), and the addresses
// go down only when the member leaves the primary role.
package cluster

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/hagate/hagate/internal/checksum"
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
	// PingThreshold: the remote link fails once the summed priority of the
	// failed ping servers reaches it; 0: at the first server down.
	PingThreshold int
	// PingFlipTimeout: after a remote-link failover, the new primary's
	// remote link does not fail it over again for this long.
	PingFlipTimeout time.Duration
	// PingForceReset: a member that lost the primary role through its
	// remote link may take it back (by override) after PingFlipTimeout;
	// off, it never takes it back by preemption.
	PingForceReset bool
	// Checks are the check commands (see CheckConfig).
	Checks []CheckConfig
	// FailoverHoldTime: a new primary is not preempted (by uptime, priority or
	// node id) for this long after it took over. Failures still fail over.
	FailoverHoldTime time.Duration
	// Quorum: be primary only while seeing a strict majority of ClusterSize
	// members (plus the witness, if configured, as one vote).
	Quorum      bool
	ClusterSize int
	Witness     bool
	// SessionPickup: a member that becomes subordinate has not synced the
	// sessions until the primary's bulk arrives (BulkReceived), and may not
	// preempt a primary until then; a new primary claims the addresses only
	// once its sessions are usable (PromoteSessions, then SessionsReady).
	SessionPickup bool
	// Build is this member's build version, sent in its heartbeats.
	Build string
	// SyncLinks are the heartbeat links the session sync may run on,
	// highest priority first (session pickup only).
	SyncLinks []SyncLink
	// SyncedParts are the configuration parts the primary syncs to the
	// subordinates (config_sync; none: checksums are only compared).
	SyncedParts []checksum.Part
	// Fence: a member that is not primary drops forwarded traffic of the
	// data interfaces (see fence.go).
	Fence bool
	// LinkFailedSignal: a primary that steps down through a link failure
	// asks for its other data interfaces to go down for a moment.
	LinkFailedSignal bool
}

// SyncLink is a heartbeat link that carries the session sync.
type SyncLink struct {
	Interface string
	// Peers are the members' configured addresses on this link; those of
	// the first link are dialled for members never heard.
	Peers []netip.Addr
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
	// Build is the sender's build version ("" from release 0.1.0, whose
	// heartbeats do not say).
	Build string
	// Checksums are the sender's configuration checksums, per part (none
	// from release 0.1.0 or before the member has computed them).
	Checksums checksum.Sums
	// ConfigPending: a part the cluster syncs differs on the sender from
	// the primary's, so it ranks below members in sync (see checksums.go).
	ConfigPending bool
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
	// Unreadable, when set, says why the heartbeat could not be read
	// although it was authenticated (a later release's format): the
	// member is there, but HB is empty.
	Unreadable string
}

// LinkChange reports a monitored or heartbeat interface going up or down.
type LinkChange struct {
	Now       time.Time
	Interface string
	Up        bool
}

// PingChange reports how many ping servers answer, and the summed
// priority of those counted down (read against PingThreshold).
type PingChange struct {
	Now          time.Time
	Up           int
	DownPriority int
}

// WitnessChange reports whether the split-brain witness answers.
type WitnessChange struct {
	Now time.Time
	Up  bool
}

// BulkReceived reports that the primary's bulk sync of the sessions has
// arrived: this member now has the sessions.
type BulkReceived struct{ Now time.Time }

// SessionsReady reports that the sessions a PromoteSessions of the same
// generation asked for are usable in the kernel table.
type SessionsReady struct {
	Now time.Time
	Gen uint64
}

// SyncLost reports that a session-sync connection ended (Peer is the other
// member's address or id, as far as known).
type SyncLost struct {
	Now    time.Time
	Peer   string
	Reason string
}

// Reconfigure applies the settings a member may change while it runs (see
// Node.reconfigure); the others in Config are kept.
type Reconfigure struct {
	Now    time.Time
	Config Config
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
func (e BulkReceived) at() time.Time  { return e.Now }
func (e SessionsReady) at() time.Time { return e.Now }
func (e SyncLost) at() time.Time      { return e.Now }
func (e Reconfigure) at() time.Time   { return e.Now }

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

// RoleChange: this member's role changed (for logs, metrics and history;
// the effects of the change come as actions of their own).
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

// AcceptSessions: be a subordinate of the session sync and accept the
// sessions of the member From ("": of whichever primary sends, until one is
// known). A member that was primary first drops the sessions it forwarded.
type AcceptSessions struct{ From string }

// PromoteSessions: this member became primary; make the synced sessions
// usable, then report SessionsReady with the same generation.
type PromoteSessions struct{ Gen uint64 }

// ClaimAddresses: add the virtual IPs (and virtual MACs) and announce them.
type ClaimAddresses struct{}

// ReleaseAddresses: remove the virtual IPs and restore the MACs.
type ReleaseAddresses struct{ Reason string }

// SyncRoutes: the addresses at which a primary dials the members' session
// sync, one per member: its address on the highest-priority sync link on
// which its heartbeats still arrive. Absent lists those of Peers whose
// member is not heard now (never yet, or lost): a primary dials a member
// the moment it leaves Absent instead of waiting out a redial backoff.
type SyncRoutes struct{ Peers, Absent []netip.Addr }

// Notify: run the notify hook for a role change.
type Notify struct {
	Role, Previous Role
	Kind           Kind
	Reason         string
}

func (Send) isAction()             {}
func (RoleChange) isAction()       {}
func (PrimaryChange) isAction()    {}
func (Notice) isAction()           {}
func (AcceptSessions) isAction()   {}
func (PromoteSessions) isAction()  {}
func (ClaimAddresses) isAction()   {}
func (ReleaseAddresses) isAction() {}
func (SyncRoutes) isAction()       {}
func (Notify) isAction()           {}
