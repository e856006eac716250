package builder

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
)

// TestHoldCacheDir: the sharing modes of a cache mount, between steps of
// concurrent builds. shared lets everyone in, locked makes the second wait
// for the first, private gives the second a folder of its own.
func TestHoldCacheDir(t *testing.T) {
	base := filepath.Join(t.TempDir(), "abc")
	hold := func(sharing instructions.ShareMode, waiting func()) (string, func()) {
		t.Helper()
		dir, release, err := holdCacheDir(t.Context(), base, sharing, waiting)
		if err != nil {
			t.Fatal(err)
		}
		return dir, release
	}

	t.Run("shared", func(t *testing.T) {
		a, relA := hold(instructions.MountSharingShared, nil)
		b, relB := hold("", nil) // the default
		if a != base || b != base {
			t.Errorf("shared folders %s and %s, want both %s", a, b, base)
		}
		relA()
		relB()
	})

	t.Run("locked", func(t *testing.T) {
		_, relA := hold(instructions.MountSharingLocked, nil)
		waited := make(chan struct{})
		got := make(chan string)
		go func() {
			dir, rel := hold(instructions.MountSharingLocked, func() { close(waited) })
			rel()
			got <- dir
		}()
		<-waited // it said it waits...
		select {
		case dir := <-got:
			t.Fatalf("a second locked holder got %s while the first held it", dir)
		case <-time.After(100 * time.Millisecond): // ...and still does
		}
		relA()
		if dir := <-got; dir != base {
			t.Errorf("after the release the waiter got %s, want %s", dir, base)
		}
	})

	t.Run("private", func(t *testing.T) {
		a, relA := hold(instructions.MountSharingPrivate, nil)
		b, relB := hold(instructions.MountSharingPrivate, nil)
		if a != base || b != base+"-1" {
			t.Errorf("private folders %s and %s, want %s and %s-1", a, b, base, base)
		}
		relA()
		c, relC := hold(instructions.MountSharingPrivate, nil)
		if c != base {
			t.Errorf("after the first was released, a private mount got %s, want %s", c, base)
		}
		relB()
		relC()
	})

	t.Run("locked waits for shared", func(t *testing.T) {
		_, relS := hold(instructions.MountSharingShared, nil)
		waited := make(chan struct{})
		done := make(chan struct{})
		go func() {
			_, rel := hold(instructions.MountSharingLocked, func() { close(waited) })
			rel()
			close(done)
		}()
		<-waited
		relS()
		<-done
	})
}
