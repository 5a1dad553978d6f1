package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/spf13/cobra"

	"github.com/hagate/hagate/internal/config"
	"github.com/hagate/hagate/internal/control"
	"github.com/hagate/hagate/internal/netif"
)

func releaseCommand(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "release",
		Short: "Remove this member's virtual IPs after a crash (the systemd unit runs it)",
		Long: `Remove the virtual IPs of the configuration from this member's interfaces,
after the daemon died without removing them itself (SIGKILL, a crash). The
systemd unit runs it after every stop. It refuses while the daemon runs, and
says for each address whether it was removed or was not held.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := o.load()
			if err != nil {
				return err
			}
			return release(cfg, cmd.OutOrStdout())
		},
	}
}

// addrs is what release needs of the host: netif.Handle, or a fake in tests.
type addrs interface {
	HasAddress(ifname string, p netip.Prefix) (bool, error)
	DelAddress(ifname string, p netip.Prefix) error
}

// release removes the virtual IPs a member holds. A running daemon's control
// socket answering means it is alive: then it is left alone.
func release(cfg *config.Config, stdout io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := control.Call(ctx, cfg.ControlSocket, control.Request{Command: "status"}); err == nil {
		return fail(errors.New("release: the daemon is running; it manages the addresses itself"))
	}
	h, err := netif.New()
	if err != nil {
		return fail(fmt.Errorf("release: %w", err))
	}
	defer h.Close()
	return releaseFrom(h, cfg.VirtualIPs, stdout)
}

// releaseFrom removes each virtual IP that is present and reports, for each,
// what it did, then the count.
func releaseFrom(h addrs, vips []config.VirtualIP, stdout io.Writer) error {
	var errs []error
	removed := 0
	for _, v := range vips {
		held, err := h.HasAddress(v.Interface, v.Address)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !held {
			fmt.Fprintf(stdout, "not held: %s on %s\n", v.Address, v.Interface)
			continue
		}
		if err := h.DelAddress(v.Interface, v.Address); err != nil {
			errs = append(errs, err)
			continue
		}
		removed++
		fmt.Fprintf(stdout, "released %s on %s\n", v.Address, v.Interface)
	}
	fmt.Fprintf(stdout, "%d of %d virtual IPs released\n", removed, len(vips))
	if len(errs) > 0 {
		return fail(fmt.Errorf("release: %w", errors.Join(errs...)))
	}
	return nil
}
