package cli

import (
	"context"
	"log/slog"

	"github.com/hagate/hagate/internal/config"
	"github.com/hagate/hagate/internal/daemon"
)

// setupPickup builds the session-pickup engine when the configuration asks
// for it and attaches it to the daemon.
func setupPickup(ctx context.Context, d *daemon.Daemon, cfg *config.Config, log *slog.Logger) error {
	if !cfg.SessionPickup.Enabled {
		return nil
	}
	log.Warn("session_pickup.enabled is set but this build has no session pickup engine yet")
	return nil
}
