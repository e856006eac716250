package archcheck

import "path"

const (
	whiteoutPrefix = ".wh."
	opaqueWhiteout = ".wh..wh..opq"
)

// findings collects findings over a stack of layers the way the layers stack
// up: a later layer that deletes (whiteout) or replaces a binary drops its
// finding, so a RUN that fetches a foreign binary and a later one that
// removes it do not fail the build.
type findings struct {
	list  []tracked
	at    map[string]int // path → index in list of its live finding
	layer int

	// The current layer's effect on lower findings. All nil unless lower
	// layers left findings, which is rare; this keeps a clean check cheap.
	lowerDirs map[string]bool // directories holding a lower finding
	gone      map[string]bool // paths removed with everything under them
	goneUnder map[string]bool // opaque directories: lower children removed
}

type tracked struct {
	Finding
	layer int
	live  bool
}

func (fs *findings) beginLayer() {
	fs.layer++
	fs.lowerDirs, fs.gone, fs.goneUnder = nil, nil, nil
	for _, t := range fs.list {
		if !t.live {
			continue
		}
		if fs.lowerDirs == nil {
			fs.lowerDirs = map[string]bool{}
			fs.gone = map[string]bool{}
			fs.goneUnder = map[string]bool{}
		}
		for d := path.Dir(t.Path); d != "/"; d = path.Dir(d) {
			fs.lowerDirs[d] = true
		}
	}
}

func (fs *findings) add(f Finding) {
	if fs.at == nil {
		fs.at = map[string]int{}
	}
	fs.at[f.Path] = len(fs.list)
	fs.list = append(fs.list, tracked{Finding: f, layer: fs.layer, live: true})
}

// replace records a non-directory entry at name: it replaces whatever was
// there, a directory of lower findings included.
func (fs *findings) replace(name string) {
	if i, ok := fs.at[name]; ok {
		fs.kill(i)
	}
	if fs.lowerDirs[name] {
		fs.gone[name] = true
	}
}

// whiteout records a whiteout entry base in directory dir.
func (fs *findings) whiteout(dir, base string) {
	if fs.gone == nil {
		return
	}
	if base == opaqueWhiteout {
		fs.goneUnder[dir] = true
		return
	}
	fs.gone[path.Join(dir, base[len(whiteoutPrefix):])] = true
}

// link gives a hardlink the finding of its target, if it has one.
func (fs *findings) link(name, target string) {
	if i, ok := fs.at[target]; ok {
		f := fs.list[i].Finding
		f.Path = name
		fs.add(f)
	}
}

// endLayer drops the lower findings the layer's whiteouts deleted.
func (fs *findings) endLayer() {
	if fs.gone == nil {
		return
	}
	for i, t := range fs.list {
		if t.live && t.layer < fs.layer && fs.removed(t.Path) {
			fs.kill(i)
		}
	}
}

func (fs *findings) removed(p string) bool {
	if fs.gone[p] {
		return true
	}
	for d := path.Dir(p); ; d = path.Dir(d) {
		if fs.gone[d] || fs.goneUnder[d] {
			return true
		}
		if d == "/" {
			return false
		}
	}
}

func (fs *findings) kill(i int) {
	fs.list[i].live = false
	if fs.at[fs.list[i].Path] == i {
		delete(fs.at, fs.list[i].Path)
	}
}

// live returns the findings still standing, in the order they were found.
func (fs *findings) live() []Finding {
	var out []Finding
	for _, t := range fs.list {
		if t.live {
			out = append(out, t.Finding)
		}
	}
	return out
}
