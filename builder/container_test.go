package builder

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestImageKeeps: kiln's image lists its other paths (/kaniko, /busybox)
// in its folder's keep file; only absolute paths that exist are kept, and
// never "/".
func TestImageKeeps(t *testing.T) {
	home, other := t.TempDir(), t.TempDir()
	kaniko := filepath.Join(other, "kaniko")
	if err := os.Mkdir(kaniko, 0o755); err != nil {
		t.Fatal(err)
	}
	keep := "# kiln's image\n" + kaniko + "\n\n" + filepath.Join(other, "busybox") + "\nrelative/path\n/\n" + kaniko + "/../kaniko\n"
	if err := os.WriteFile(filepath.Join(home, keepFile), []byte(keep), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, want := imageKeeps(home), []string{kaniko, kaniko}; !slices.Equal(got, want) {
		t.Errorf("imageKeeps = %q, want %q", got, want)
	}
	if got := imageKeeps(t.TempDir()); got != nil {
		t.Errorf("imageKeeps without a keep file = %q", got)
	}
}
