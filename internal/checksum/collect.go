package checksum

import (
	"context"
	"fmt"
	"os/exec"
)

// Source says what a member checksums beyond its kernel state.
type Source struct {
	Exclude Exclude
	// RouteTables are routing tables checksummed besides main.
	RouteTables []int
	// Config is the cluster-wide part of hagate's configuration, as text.
	Config []byte
}

// Result is one part's normalised text and checksum, or why it could not
// be read.
type Result struct {
	Part Part
	Sum  uint64
	Text []byte
	Err  error
}

// Compute reads every part of this member (its network namespace) now.
func Compute(ctx context.Context, src Source) []Result {
	out := make([]Result, 0, len(Parts))
	for _, p := range Parts {
		r := Result{Part: p}
		switch p {
		case Ruleset:
			r.Text, r.Err = ReadRuleset(ctx, src.Exclude)
		case Routes:
			var rs []Route
			if rs, r.Err = readRoutes(src.RouteTables); r.Err == nil {
				r.Text = NormaliseRoutes(rs, src.Exclude)
			}
		case Sysctls:
			r.Text, r.Err = readSysctls("/proc/sys")
		case Config:
			r.Text = src.Config
		}
		if r.Err == nil {
			r.Sum = Of(r.Text)
		}
		out = append(out, r)
	}
	return out
}

// ReadRuleset lists the live ruleset and normalises it.
func ReadRuleset(ctx context.Context, ex Exclude) ([]byte, error) {
	out, err := Nft(ctx, "-j", "list", "ruleset")
	if err != nil {
		return nil, err
	}
	return NormaliseRuleset(out, ex)
}

// Nft runs the nft command with args and returns its output.
func Nft(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "nft", args...)
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok && len(ee.Stderr) > 0 {
			return nil, fmt.Errorf("nft %v: %w: %s", args, err, ee.Stderr)
		}
		return nil, fmt.Errorf("nft %v: %w", args, err)
	}
	return out, nil
}
