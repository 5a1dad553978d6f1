package bench

import (
	"fmt"
	"math/bits"
	"os"
	"strconv"
	"strings"
)

// hashsizePath is the kernel's count of conntrack hash buckets. It is
// host-wide (it can only be written from the host's namespace) and fixed
// at boot to a size for a small table: a million sessions in it make
// chains of dozens of entries, and every create walks one, so the kernel,
// not the sync daemon, sets the pace of a 1M bulk.
const hashsizePath = "/sys/module/nf_conntrack/parameters/hashsize"

// raiseHashsize raises the bucket count to the power of two at or above
// twice n for the run, and returns what restores the previous value. The
// caller defers the restore; SIGINT and SIGTERM cancel the run's context
// (main.go), so an interrupted run returns through it as well.
func raiseHashsize(n int) (restore func() error, err error) {
	nop := func() error { return nil }
	b, err := os.ReadFile(hashsizePath)
	if err != nil {
		return nop, fmt.Errorf("read conntrack hash size: %w", err)
	}
	prev, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return nop, fmt.Errorf("read conntrack hash size: %q: %w", b, err)
	}
	want := 1 << bits.Len(uint(2*n-1))
	if want <= prev {
		return nop, nil
	}
	if err := writeHashsize(want); err != nil {
		return nop, err
	}
	return func() error { return writeHashsize(prev) }, nil
}

func writeHashsize(n int) error {
	if err := os.WriteFile(hashsizePath, []byte(strconv.Itoa(n)), 0o600); err != nil {
		return fmt.Errorf("set conntrack hash size to %d: %w", n, err)
	}
	return nil
}
