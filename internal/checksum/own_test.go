package checksum

import "testing"

// hagate's own tables (the fence, raised on subordinates only) are state
// of the member's role: never compared, never synced.
func TestOwnTablesExcluded(t *testing.T) {
	var ex Exclude
	if !ex.ExcludesTable("inet", "hagate_fence") || !ex.ExcludesTable("bridge", "hagate_fence") {
		t.Fatal("hagate's fence table compared")
	}
	if ex.ExcludesTable("inet", "filter") {
		t.Fatal("the user's table excluded")
	}
}
