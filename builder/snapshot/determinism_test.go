package snapshot

import (
	"bytes"
	"testing"
	"time"
)

// TestDeterministic runs every step twice on separate trees (other inodes,
// other times) with SourceDateEpoch set: each strategy must give the same
// bytes, and both strategies the same bytes where the change has one form
// (a recreated directory may be opaque or whiteouts).
func TestDeterministic(t *testing.T) {
	sde := epoch.Add(24 * time.Hour)
	opts := Options{Exclude: testExclude, SourceDateEpoch: &sde}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			layers := map[string][]byte{}
			for _, strategy := range []string{"walk", "overlay"} {
				first, _ := snapshotStep(t, strategy, s, opts)
				second, _ := snapshotStep(t, strategy, s, opts)
				if !bytes.Equal(first, second) {
					t.Errorf("%s: two snapshots of the same step differ:\n%q\n%q", strategy,
						entryNames(readLayer(t, first)), entryNames(readLayer(t, second)))
				}
				for _, e := range readLayer(t, first) {
					if e.ModTime.After(sde) {
						t.Errorf("%s: %s has mtime %v after SourceDateEpoch %v", strategy, e.Name, e.ModTime, sde)
					}
				}
				layers[strategy] = first
			}
			switch s.name {
			case "rm -rf a dir and make it again", "write one name of a lower hardlink and hide another below a folder made again":
				return // opaque marker or whiteouts
			case "replace one name of a lower hardlink by a new file":
				return // Walk also writes the names whose link count changed
			}
			if !bytes.Equal(layers["walk"], layers["overlay"]) {
				t.Errorf("walk and overlay layers differ:\nwalk    %q\noverlay %q",
					entryNames(readLayer(t, layers["walk"])), entryNames(readLayer(t, layers["overlay"])))
			}
		})
	}
}

// TestSourceDateEpochKeepsOlderTimes: only mtimes after the epoch move.
func TestSourceDateEpochKeepsOlderTimes(t *testing.T) {
	sde := epoch.Add(time.Hour)
	modify := stepNamed(t, "modify content at the same size with a new mtime") // mtime epoch+1h
	s := modify
	s.run = func(tb testing.TB, root string) {
		modify.run(tb, root)
		setTimes(tb, root+"/etc", epoch.Add(-time.Hour))
		mustWrite(tb, root+"/etc/motd", "new", 0)
		setTimes(tb, root+"/etc/motd", epoch.Add(-time.Hour))
		mustWrite(tb, root+"/opt/now", "now", 0o644)
	}
	layer, _ := snapshotStep(t, "walk", s, Options{SourceDateEpoch: &sde})
	for name, want := range map[string]time.Time{"etc/motd": epoch.Add(-time.Hour), "usr/lib/libx.so.1": sde, "opt/now": sde, "usr/lib": epoch} {
		if e := find(readLayer(t, layer), name); e == nil || !e.ModTime.Equal(want) {
			t.Errorf("%s: %+v, want mtime %v", name, e, want)
		}
	}
}
