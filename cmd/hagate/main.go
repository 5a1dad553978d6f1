// Command hagate turns two to four Linux gateways into one active-passive
// cluster. `hagate help` lists its commands.
package main

import (
	"os"

	"github.com/hagate/hagate/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
