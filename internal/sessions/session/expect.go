package session

import (
	"errors"
	"fmt"
)

// Name is the name of a conntrack helper ("ftp", "sip"). The kernel bounds
// it to 15 bytes (NF_CT_HELPER_NAME_LEN less the NUL); a fixed array keeps
// Session pointer-free. The zero Name means none.
type Name [15]byte

// FnName names an expectation function ("nat-follow-master"), which the
// kernel does not bound as tightly.
type FnName [31]byte

// MakeName returns s as a Name; ok is false when s does not fit or contains
// a NUL.
func MakeName(s string) (n Name, ok bool) { return n, setName(n[:], s) }

// MakeFnName returns s as an FnName; ok is false when s does not fit or
// contains a NUL.
func MakeFnName(s string) (n FnName, ok bool) { return n, setName(n[:], s) }

func setName(dst []byte, s string) bool {
	if len(s) > len(dst) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return false
		}
	}
	copy(dst, s)
	return true
}

func nameLen(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return len(b)
}

func (n Name) String() string   { return string(n[:nameLen(n[:])]) }
func (n FnName) String() string { return string(n[:nameLen(n[:])]) }

// IsZero reports whether n names nothing.
func (n Name) IsZero() bool { return n[0] == 0 }

// IsZero reports whether n names nothing.
func (n FnName) IsZero() bool { return n[0] == 0 }

// ExpectKey identifies an expectation: the kernel looks expectations up by
// zone and expected tuple.
type ExpectKey struct {
	Family uint8
	Proto  uint8 // of the expected connection
	Zone   uint16
	Tuple  Tuple // the expected connection's original direction
}

// Expect is one conntrack expectation: a connection that a helper announced
// on its master connection (an FTP data channel seen in a PASV reply, the
// media of a SIP call), which the kernel will recognise as RELATED, and NAT
// like its master, when it arrives. Expectations are short-lived: seconds to
// minutes.
type Expect struct {
	ExpectKey
	// MaskSrc and MaskSrcPort are the significant bits of Tuple.Src and
	// Tuple.SrcPort (a zero port mask: any source port). The destination
	// always matches exactly.
	MaskSrc     [16]byte
	MaskSrcPort uint16
	// Master is the key of the connection whose helper created the
	// expectation; it must exist before the expectation can.
	Master  Key
	Timeout uint32 // seconds left
	Flags   uint32 // NF_CT_EXPECT_* (PERMANENT, INACTIVE, USERSPACE)
	Class   uint32 // the helper's expectation class
	Helper  Name   // the master's helper
	Fn      FnName // the function run when it matches ("nat-follow-master")
	// NAT is set when the related connection is to be translated like its
	// master (NAT helpers set it): NATDir is the master's direction the
	// connection comes from (0 original, 1 reply), NATAddr and NATPort the
	// address and port saved for the translation (often only the port).
	NAT     bool
	NATDir  uint8
	NATAddr [16]byte
	NATPort uint16
}

// Expectation flags (NF_CT_EXPECT_*).
const (
	ExpectPermanent uint32 = 1 << 0
	ExpectInactive  uint32 = 1 << 1
	ExpectUserspace uint32 = 1 << 2
)

func (k ExpectKey) String() string {
	return fmt.Sprintf("expect %s zone=%d %s", ProtoName(k.Proto), k.Zone, k.Tuple.format(k.Proto))
}

func (x Expect) String() string {
	s := fmt.Sprintf("%s master %s timeout=%d helper=%s", x.ExpectKey, x.Master, x.Timeout, x.Helper)
	if x.NAT {
		s += fmt.Sprintf(" nat dir=%d port=%d", x.NATDir, x.NATPort)
	}
	return s
}

// ExpectChange installs (Upsert) or removes (Delete, which uses only the
// key) one expectation.
type ExpectChange struct {
	Op     Op
	Expect Expect
}

// ExpectEvent is one notification from a backend's expectation table:
// EventNew, EventDestroy or EventOverflow (Expect unset).
type ExpectEvent struct {
	Kind   EventKind
	Expect Expect
}

// ErrNoMaster: an expectation could not be installed because its master
// connection is not in the table. Backends wrap it per refused change.
var ErrNoMaster = errors.New("master connection not in the table")
