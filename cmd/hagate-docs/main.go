// Command hagate-docs writes the man pages and the shell completions of the
// hagate command line, from the same command tree the binary runs, so that
// they cannot drift from it. make deb packages what it writes:
//
//	go run ./cmd/hagate-docs -out DIR
//
// writes DIR/man/hagate.1, DIR/man/hagate-status.1, ..., DIR/bash/hagate and
// DIR/zsh/_hagate.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra/doc"

	"github.com/hagate/hagate/internal/cli"
)

func main() {
	out := flag.String("out", "", "output directory")
	flag.Parse()
	if *out == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: hagate-docs -out DIR")
		os.Exit(2)
	}
	if err := write(*out); err != nil {
		fmt.Fprintf(os.Stderr, "hagate-docs: %v\n", err)
		os.Exit(1)
	}
}

func write(out string) error {
	for _, d := range []string{"man", "bash", "zsh"} {
		if err := os.MkdirAll(filepath.Join(out, d), 0o755); err != nil {
			return err
		}
	}
	root := cli.NewCommand()
	root.DisableAutoGenTag = true // no generation date: the same tree gives the same pages
	// SOURCE_DATE_EPOCH, when set, dates the pages reproducibly.
	date := time.Unix(0, 0)
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		var sec int64
		if _, err := fmt.Sscan(s, &sec); err != nil {
			return fmt.Errorf("SOURCE_DATE_EPOCH %q: %w", s, err)
		}
		date = time.Unix(sec, 0)
	}
	header := &doc.GenManHeader{Title: "HAGATE", Section: "1", Source: "hagate", Manual: "hagate manual", Date: &date}
	if err := doc.GenManTree(root, header, filepath.Join(out, "man")); err != nil {
		return fmt.Errorf("man pages: %w", err)
	}
	if err := root.GenBashCompletionFileV2(filepath.Join(out, "bash", "hagate"), true); err != nil {
		return fmt.Errorf("bash completion: %w", err)
	}
	if err := root.GenZshCompletionFile(filepath.Join(out, "zsh", "_hagate")); err != nil {
		return fmt.Errorf("zsh completion: %w", err)
	}
	return nil
}
