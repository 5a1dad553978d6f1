// Command hagate-demo builds a three-gateway cluster in network namespaces,
// runs hagate on it, kills the primary and shows the takeover. Run it as
// root (make demo); it removes everything it made when it ends.
package main

import (
	"os"

	"github.com/hagate/hagate/lab/demo"
)

func main() {
	os.Exit(demo.Main(os.Stdout))
}
