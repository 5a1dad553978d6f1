package conntrack

import (
	"os"
	"testing"
)

func TestHashBuckets(t *testing.T) {
	if _, err := os.Stat("/proc/sys/net/netfilter/nf_conntrack_buckets"); err != nil {
		t.Skip("no conntrack on this kernel")
	}
	n, err := (&Kernel{}).HashBuckets()
	if err != nil || n <= 0 {
		t.Fatalf("HashBuckets() = %d, %v", n, err)
	}
	t.Logf("%d buckets", n)
}
