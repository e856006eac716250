package rootfs

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// ApplyOption configures one ApplyLayer or Unpack.
type ApplyOption func(*applyConfig)

type applyConfig struct {
	chown bool
}

// WithChown overrides whether entries get the owner the layer names; the
// default is the Root's privilege. Ownership not applied is recorded in
// ApplyStats.SkippedOwners.
func WithChown(chown bool) ApplyOption {
	return func(c *applyConfig) { c.chown = chown }
}

// copyBufferSize bounds the memory one file's content takes while streamed.
const copyBufferSize = 128 << 10

// applier applies one layer: the state that lives as long as that.
type applier struct {
	root      *Root
	rootFD    int
	cfg       applyConfig
	stats     *ApplyStats
	buf       []byte
	zeros     []byte
	unpacked  map[string]bool // paths (relative, resolved) this layer wrote, and their parents
	fixups    fixups
	dirs      dirCache
	noOpenat2 bool // folders are found by walking only (see openBeneath)
}

// ApplyLayer streams one uncompressed layer tar (v1.Layer.Uncompressed) onto
// the root, as a container runtime would: OCI whiteouts and opaque
// directories, regular files, directories, symlinks, hardlinks inside the
// root, devices and fifos (skipped with a warning when not permitted),
// modes with setuid/setgid/sticky, ownership, mtimes and SCHILY.xattr.*
// records. An entry replaces whatever of another type held its path; a
// directory onto a directory merges. Directory modes and mtimes are set
// once the whole layer is written.
//
// On error the root holds part of the layer and should be thrown away.
func (r *Root) ApplyLayer(ctx context.Context, layer io.Reader, opts ...ApplyOption) (*ApplyStats, error) {
	a, err := r.newApplier(opts)
	if err != nil {
		return nil, err
	}
	defer a.close()
	tr := tar.NewReader(layer)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		// With GODEBUG=tarinsecurepath=0 the reader flags "../" and "/"
		// names; cleanName makes them safe, as it does without it.
		if err != nil && !(errors.Is(err, tar.ErrInsecurePath) && hdr != nil) {
			return nil, fmt.Errorf("reading layer: %w", err)
		}
		if err := a.apply(ctx, hdr, tr); err != nil {
			return nil, fmt.Errorf("layer entry %q: %w", hdr.Name, err)
		}
	}
	if err := a.fixups.run(a); err != nil {
		return nil, err
	}
	a.stats.finish()
	return a.stats, nil
}

func (r *Root) newApplier(opts []ApplyOption) (*applier, error) {
	cfg := applyConfig{chown: r.privileged}
	for _, opt := range opts {
		opt(&cfg)
	}
	fd, err := r.openRoot()
	if err != nil {
		return nil, err
	}
	return &applier{
		root:      r,
		rootFD:    fd,
		cfg:       cfg,
		stats:     &ApplyStats{},
		buf:       make([]byte, copyBufferSize),
		zeros:     make([]byte, copyBufferSize),
		unpacked:  map[string]bool{},
		fixups:    fixups{index: map[string]int{}},
		noOpenat2: r.noOpenat2,
	}, nil
}

func (a *applier) close() {
	a.dirs.close()
	unix.Close(a.rootFD)
}

// apply applies one tar entry; body is its content.
func (a *applier) apply(ctx context.Context, hdr *tar.Header, body io.Reader) error {
	a.stats.Entries++
	a.dirs.settle()
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	rel := a.cleanName(hdr.Name, "entry")
	if rel == "" {
		return nil // the root itself: its metadata is the caller's, as in containerd
	}
	if a.root.isProtected(rel) {
		a.stats.warn("/%s left alone: a protected path (a mount point or the builder's own)", rel)
		return nil
	}
	if isWhiteout(rel) {
		return a.whiteout(rel)
	}
	dir, base := splitRel(rel)
	parent, _, err := a.dir(dir, dirCreate)
	if err != nil {
		return err
	}
	return a.create(ctx, parent, base, hdr, body)
}

// splitRel splits a clean relative path into its folder ("" for the root)
// and its last name.
func splitRel(rel string) (dir, name string) {
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		return rel[:i], rel[i+1:]
	}
	return "", rel
}

// cleanName makes a name from the layer (what: "entry", "hardlink target")
// relative to the root: a leading "/" is dropped and ".." stops at the root,
// as containerd does. "" is the root.
func (a *applier) cleanName(name, what string) string {
	rel := strings.TrimPrefix(path.Clean("/"+name), "/")
	if c := path.Clean(name); c == ".." || strings.HasPrefix(c, "../") {
		a.stats.warn("%s %q leads out of the root: taken as /%s", what, name, rel)
	}
	return rel
}

// markUnpacked records that this layer wrote name in the folder d, which
// an opaque marker must keep, and so every folder above it.
func (a *applier) markUnpacked(d dirRef, name string) {
	for i := 0; i < len(d.rel); i++ {
		if d.rel[i] == '/' {
			a.unpacked[d.rel[:i]] = true
		}
	}
	if d.rel != "" {
		a.unpacked[d.rel] = true
	}
	a.unpacked[d.join(name)] = true
}
