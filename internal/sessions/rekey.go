package sessions

import (
	"fmt"

	"github.com/hagate/hagate/internal/seal"
)

// Rekey switches the sync channel to the keys of kr (the key file reloaded
// on SIGHUP): frames are sealed with its first key from now on, on open
// connections too, and only keys listed in kr are accepted. Sequence numbers
// carry on, so established connections are neither dropped nor resynced.
func (e *Engine) Rekey(kr *seal.Keyring) error {
	if err := e.sealer.Rekey(kr); err != nil {
		return fmt.Errorf("session sync: %w", err)
	}
	e.opener.SetKeyring(kr)
	return nil
}
