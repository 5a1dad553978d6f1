// Command hagate-bench runs the benchmark suite (make bench, as root): hagate
// and keepalived + conntrackd side by side on the same namespace lab. It
// writes docs/benchmarks.md and the plots under docs/bench/.
package main

import (
	"os"

	"github.com/hagate/hagate/lab/bench"
)

func main() {
	os.Exit(bench.Main(os.Args[1:], os.Stdout))
}
