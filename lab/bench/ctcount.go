package bench

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/hagate/hagate/internal/nstest"
)

// ctCounter reads one namespace's conntrack entry count from the kernel's
// per-namespace statistics (the first column of net/stat/nf_conntrack, the
// count conntrack -C prints): a read of an open file, against the fork and
// exec of conntrack -C, so a bulk can be sampled every few milliseconds.
type ctCounter struct {
	f   *os.File
	buf []byte
}

// openCounter opens the statistics of namespace ns: the file, opened from
// inside it, keeps reporting that namespace's count.
func openCounter(ns string) (*ctCounter, error) {
	var f *os.File
	err := nstest.Do(ns, func() error {
		var err error
		f, err = os.Open("/proc/thread-self/net/stat/nf_conntrack")
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("conntrack count in %s: %w", ns, err)
	}
	return &ctCounter{f: f, buf: make([]byte, 64<<10)}, nil
}

// count returns the namespace's entries now.
func (c *ctCounter) count() (int, error) {
	n, err := c.f.ReadAt(c.buf, 0)
	if n == 0 && err != nil {
		return 0, fmt.Errorf("conntrack count: %w", err)
	}
	// A header line, then one line per CPU, each starting with the count.
	lines := strings.SplitN(string(c.buf[:n]), "\n", 3)
	if len(lines) < 2 {
		return 0, fmt.Errorf("conntrack count: %q", c.buf[:n])
	}
	first, _, _ := strings.Cut(strings.TrimSpace(lines[1]), " ")
	v, err := strconv.ParseUint(first, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("conntrack count: %q: %w", first, err)
	}
	return int(v), nil
}

func (c *ctCounter) Close() { c.f.Close() }
