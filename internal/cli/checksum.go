package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/hagate/hagate/internal/checksum"
	"github.com/hagate/hagate/internal/control"
	"github.com/hagate/hagate/internal/daemon"
)

func checksumCommand(o *options) *cobra.Command {
	var diff string
	cmd := &cobra.Command{
		Use:   "checksum",
		Short: "Show every member's configuration checksums and which differ from the primary's (diagnose sys ha checksum cluster)",
		Long: `Show every member's configuration checksums per part (ruleset, routes,
sysctls, config) as this member knows them from the heartbeats, and which
parts differ from the primary's, like FortiOS's diagnose sys ha checksum
cluster. With --diff PART, fetch the primary's normalised text of the part
and show how this member's differs, as a unified diff (- primary, + this member).`,
		Args: cobra.NoArgs,
	}
	dc := newDaemonClient(o, cmd, true)
	cmd.Flags().StringVar(&diff, "diff", "", "show how this member's part differs from the primary's: "+strings.Join(checksum.PartNames(), ", "))
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		req := control.Request{Command: "checksum"}
		if diff != "" {
			if _, err := checksum.ParsePart(diff); err != nil {
				return configError(err)
			}
			req.Args = map[string]string{"diff": diff}
		}
		return dc.ask(cmd.OutOrStdout(), req, printChecksums)
	}
	return cmd
}

func synchronizeCommand(o *options) *cobra.Command {
	var rollback bool
	cmd := &cobra.Command{
		Use:   "synchronize",
		Short: "Fetch and apply the primary's synced configuration now (execute ha synchronize start)",
		Args:  cobra.NoArgs,
	}
	dc := newDaemonClient(o, cmd, true)
	cmd.Flags().BoolVar(&rollback, "rollback", false, "apply the ruleset kept from before the last sync instead")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		req := control.Request{Command: "synchronize"}
		if rollback {
			req.Args = map[string]string{"rollback": "true"}
		}
		return dc.ask(cmd.OutOrStdout(), req, func(w io.Writer, data json.RawMessage) error {
			_, err := fmt.Fprintf(w, "%s\n", data)
			return err
		})
	}
	return cmd
}

func printChecksums(w io.Writer, data json.RawMessage) error {
	rep, err := decode[daemon.ChecksumReport](data)
	if err != nil {
		return err
	}
	if rep.Diff != nil {
		fmt.Fprintf(w, "--- %s on the primary %s\n+++ %s on this member\n", rep.Diff.Part, rep.Diff.Primary, rep.Diff.Part)
		for _, l := range unifiedLines(lines(rep.Diff.Remote), lines(rep.Diff.Local)) {
			fmt.Fprintln(w, l)
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "member\t%s\tdiffers from the primary\n", strings.Join(checksum.PartNames(), "\t"))
	for _, m := range rep.Members {
		name := m.NodeID
		if m.Primary {
			name += " (primary)"
		}
		if !m.Alive {
			name += " (lost)"
		}
		row := []string{name}
		for _, p := range checksum.PartNames() {
			row = append(row, cmpOr(m.Sums[p], "-"))
		}
		row = append(row, cmpOr(strings.Join(m.Differ, ", "), "none"))
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, p := range slices.Sorted(maps.Keys(rep.Errors)) {
		fmt.Fprintf(w, "this member could not read %s: %s\n", p, rep.Errors[p])
	}
	if !rep.LastSync.Time.IsZero() {
		fmt.Fprintf(w, "last sync from %s at %s: %s\n", rep.LastSync.From, rep.LastSync.Time.Format("15:04:05"), cmpOr(rep.LastSync.Error, "applied"))
	}
	return nil
}

func cmpOr(s, alt string) string {
	if s == "" {
		return alt
	}
	return s
}

func lines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

// maxDiffLines bounds the texts compared line by line; beyond it the
// differing middle is shown whole, removed then added.
const maxDiffLines = 4000

// unifiedLines lists a's and b's lines as a diff: " " common, "-" only in
// a, "+" only in b (longest common subsequence of the lines between the
// common head and tail).
func unifiedLines(a, b []string) []string {
	head := 0
	for head < len(a) && head < len(b) && a[head] == b[head] {
		head++
	}
	tail := 0
	for tail < len(a)-head && tail < len(b)-head && a[len(a)-1-tail] == b[len(b)-1-tail] {
		tail++
	}
	ma, mb := a[head:len(a)-tail], b[head:len(b)-tail]
	var out []string
	if head > 0 {
		out = append(out, fmt.Sprintf("@@ %d lines in common @@", head))
	}
	if len(ma) > maxDiffLines || len(mb) > maxDiffLines {
		for _, l := range ma {
			out = append(out, "-"+l)
		}
		for _, l := range mb {
			out = append(out, "+"+l)
		}
	} else {
		out = append(out, lcsDiff(ma, mb)...)
	}
	if tail > 0 {
		out = append(out, fmt.Sprintf("@@ %d lines in common @@", tail))
	}
	return out
}

func lcsDiff(a, b []string) []string {
	n, m := len(a), len(b)
	l := make([][]int32, n+1)
	for i := range l {
		l[i] = make([]int32, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if a[i] == b[j] {
				l[i][j] = l[i+1][j+1] + 1
			} else {
				l[i][j] = max(l[i+1][j], l[i][j+1])
			}
		}
	}
	var out []string
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && a[i] == b[j]:
			out = append(out, " "+a[i])
			i, j = i+1, j+1
		case i < n && (j == m || l[i+1][j] >= l[i][j+1]):
			out = append(out, "-"+a[i])
			i++
		default:
			out = append(out, "+"+b[j])
			j++
		}
	}
	return out
}
