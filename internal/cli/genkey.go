package cli

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
)

// keyBytes is the length of a generated secret: 256 bits, the size of the
// AES-256 keys derived from it.
const keyBytes = 32

func genkeyCommand() *cobra.Command {
	var output string
	var force bool
	cmd := &cobra.Command{
		Use:   "genkey",
		Short: "Generate a cluster key file (32 random bytes)",
		Long: `Generate a cluster key: 32 random bytes from the kernel's generator, written
hex-encoded in the key file format (one secret per line, '#' comments), mode
600. Copy the same file to every member (key_file in the configuration).

Without --output the key goes to stdout. With --output the file is created
mode 600; an existing file is kept unless --force replaces it (atomically:
a reader sees the old key or the new one, never half a file).`,
		Example: `  hagate genkey --output /etc/hagate/cluster.key
  scp -p /etc/hagate/cluster.key gw2:/etc/hagate/cluster.key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			key := newKeyFile(time.Now())
			if output == "" {
				_, err := io.WriteString(cmd.OutOrStdout(), key)
				return err
			}
			if err := writeKeyFile(output, key, force); err != nil {
				return fail(err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "hagate: key written to %s (mode 600): copy it to every member\n", output)
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "write the key to this file, mode 600 (default: stdout)")
	cmd.Flags().BoolVar(&force, "force", false, "replace an existing file")
	return cmd
}

// newKeyFile returns a key file holding one new secret.
func newKeyFile(now time.Time) string {
	secret := make([]byte, keyBytes)
	rand.Read(secret) // never fails: the runtime aborts if the kernel cannot give randomness
	return fmt.Sprintf("# hagate cluster key, generated %s by hagate genkey.\n# The same file on every member, mode 600.\n%s\n",
		now.UTC().Format(time.RFC3339), hex.EncodeToString(secret))
}

// writeKeyFile writes key to path with mode 0600. The key is first written
// whole to a temporary file in the same directory, then linked (refusing an
// existing file) or renamed (replacing it) into place, so that path never
// holds half a key, nor a key with a looser mode.
func writeKeyFile(path, key string, force bool) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".hagate-key-*")
	if err != nil {
		return fmt.Errorf("genkey: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := writeSynced(tmp, key); err != nil {
		return fmt.Errorf("genkey: %w", err)
	}
	if force {
		err = os.Rename(tmp.Name(), path)
	} else {
		err = os.Link(tmp.Name(), path)
	}
	if os.IsExist(err) {
		return fmt.Errorf("genkey: %s exists; keep it (every member needs the same key) or replace it with --force", path)
	}
	if err != nil {
		return fmt.Errorf("genkey: %w", err)
	}
	return nil
}

// writeSynced writes s to f (created mode 0600 by os.CreateTemp), syncs and
// closes it.
func writeSynced(f *os.File, s string) error {
	if _, err := f.WriteString(s); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
