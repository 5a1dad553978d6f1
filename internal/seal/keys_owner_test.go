package seal

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A key file owned by another user is refused: that user could rewrite it.
func TestLoadKeysRefusesForeignOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the file away")
	}
	path := filepath.Join(t.TempDir(), "cluster.key")
	key, _ := GenerateKey()
	if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeys(path, KeyPolicy{}); err != nil {
		t.Fatalf("root's own key file refused: %v", err)
	}
	if err := os.Chown(path, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeys(path, KeyPolicy{}); err == nil || !strings.Contains(err.Error(), "owned by uid 65534") {
		t.Fatalf("key file of nobody: %v", err)
	}
}
