// Package layerstore keeps layers unpacked on this machine, so that a
// stage's filesystem is an overlay mount of stored layers instead of a
// fresh unpack: a base unpacked once serves every later build.
//
// Each stored layer is a folder in overlayfs's lower-layer format, named by
// the layer's chain ID (the OCI image spec's: the diff_ids of the layer and
// every layer below it), because what the folder holds depends on the
// layers below: a layer is applied onto an overlay mount of the layers
// below it with an empty upper folder, so that the kernel writes its
// deletions as overlay whiteouts and copies up parent folders with their
// real metadata; that upper folder becomes the stored layer. The first
// layer is unpacked into an empty folder.
//
// A build that finds none of its base's layers stored stores the base whole
// instead, in one pass (a "flat" entry, named flat-CHAIN for the chain ID
// of its top layer: every layer applied in order onto one empty folder, as
// an unpack does, then mounted as the stage's only lower layer): that costs
// what an unpack costs, where applying each layer onto an overlay of those
// below costs a third more. kiln warm --unpack stores layer by layer, so
// that the images of a cache share the layers they share on disk too.
//
// The store is a folder inside the warm cache (.kiln/unpacked): builds and
// kiln warm --unpack fill it, kiln warm --verify reports it and kiln warm
// --prune drops the layers no cached image uses any more. A layer is
// unpacked into a temporary folder beside its final place and renamed in
// only when whole and checked against its diff_id, under a per-layer lock:
// a kill -9 leaves a temporary folder that the next user sweeps, never a
// folder a build would trust, and two builds unpacking one layer at once do
// it once. Users hold the cache's shared lock while they read the store, as
// they do for blobs, so a prune never deletes a layer in use.
//
// A stored tree holds its files' owners as the user namespace that unpacked
// it sees them: each id mapping keeps a store of its own (Dir; userns.go),
// and overlay keeps its marks in user.overlay.* xattrs there.
package layerstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/singleflight"
	"golang.org/x/sys/unix"

	"kiln/manifest"
)

// Dir is the store's folder inside a cache folder: .kiln/unpacked, or in
// a user namespace, a folder of that namespace's own below it (userns.go).
func Dir(cacheDir string) string {
	if ns := userNS(); ns != "" {
		return filepath.Join(cacheDir, ".kiln", "unpacked", ns)
	}
	return filepath.Join(cacheDir, ".kiln", "unpacked")
}

// Unpacker applies layers, in order and whole, onto the folder dir (an
// empty folder, or an overlay mount of the layers below them) and checks
// each against its diff_id.
type Unpacker func(ctx context.Context, dir string, layers []v1.Layer) error

// Store is an open layer store.
type Store struct {
	dir    string
	unpack Unpacker
	log    *slog.Logger

	tars *manifest.Layout // the uncompressed tars (tars.go)

	sf        singleflight.Group
	mu        sync.Mutex
	unlock    func() error // the cache's shared lock, once taken
	tarWarned bool

	tarsRead, tarsKept atomic.Int64
}

// Open opens (making it if needed) the store of the cache layout l. It
// takes the cache's shared lock on first use (Close releases it). With an
// unpack function the store keeps layers unpacked for overlay mounts (the
// caller has checked that overlay mounts here); with nil, only their
// uncompressed tars (see tars.go).
func Open(l *manifest.Layout, unpack Unpacker, log *slog.Logger) (*Store, error) {
	dir := Dir(l.Dir())
	if err := manifest.MkdirShared(filepath.Join(dir, ".locks")); err != nil {
		return nil, fmt.Errorf("layer store: %w", err)
	}
	tars, err := manifest.OpenLayout(TarsDir(l.Dir()))
	if err != nil {
		return nil, fmt.Errorf("layer store: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{dir: dir, unpack: unpack, log: log, tars: tars}
	unlock, err := l.LockShared(context.Background())
	if err != nil && !errors.Is(err, manifest.ErrLockUnavailable) {
		return nil, err
	}
	s.unlock = unlock
	return s, nil
}

// Close releases the cache's shared lock.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.unlock == nil {
		return nil
	}
	err := s.unlock()
	s.unlock = nil
	return err
}

// Path is where the layer of chain ID chain lives once stored.
func (s *Store) Path(chain v1.Hash) string { return filepath.Join(s.dir, chain.Hex) }

// flatPrefix names the entries that hold a whole stack of layers.
const flatPrefix = "flat-"

// FlatPath is where the whole stack of layers up to chain ID chain lives
// once stored flat.
func (s *Store) FlatPath(chain v1.Hash) string { return filepath.Join(s.dir, flatPrefix+chain.Hex) }

// Has says whether the layer of chain ID chain is stored.
func (s *Store) Has(chain v1.Hash) bool { return isDir(s.Path(chain)) }

func isDir(p string) bool {
	fi, err := os.Lstat(p)
	return err == nil && fi.IsDir()
}

// ChainIDs are the OCI chain IDs of layers with these diff_ids, bottom
// first.
func ChainIDs(diffIDs []v1.Hash) []v1.Hash {
	out := make([]v1.Hash, len(diffIDs))
	for i, d := range diffIDs {
		if i == 0 {
			out[i] = d
			continue
		}
		sum := sha256.Sum256([]byte(out[i-1].String() + " " + d.String()))
		out[i] = v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	}
	return out
}

// Ensure returns the stored folders of an image's layers, bottom first (or
// the one folder of a flat entry), unpacking what the store lacks; unpacked
// counts the layers this call unpacked. With flat, a stack of which no layer
// is stored is stored whole (see the package doc).
func (s *Store) Ensure(ctx context.Context, layers []v1.Layer, flat bool) (dirs []string, unpacked int, err error) {
	if !s.Mounts() {
		return nil, 0, errors.New("this layer store keeps only uncompressed tars: overlay cannot be mounted here")
	}
	diffIDs := make([]v1.Hash, len(layers))
	for i, l := range layers {
		if diffIDs[i], err = l.DiffID(); err != nil {
			return nil, 0, err
		}
	}
	chains := ChainIDs(diffIDs)
	top := chains[len(chains)-1]
	if len(chains) > 1 {
		if p := s.FlatPath(top); isDir(p) {
			touch(p)
			return []string{p}, 0, nil
		}
		if flat && !s.Has(chains[0]) {
			key := flatPrefix + top.Hex
			v, err, _ := s.sf.Do(key, func() (any, error) { return s.store(ctx, key, s.FlatPath(top), diffIDs, layers, nil) })
			if err != nil {
				return nil, 0, fmt.Errorf("unpacking the %d layers of %s into the store: %w", len(layers), top, err)
			}
			if v.(bool) {
				unpacked = len(layers)
			}
			return []string{s.FlatPath(top)}, unpacked, nil
		}
	}
	for i, chain := range chains {
		final := s.Path(chain)
		dirs = append(dirs, final)
		if s.Has(chain) {
			touch(final)
			continue
		}
		v, err, _ := s.sf.Do(chain.Hex, func() (any, error) {
			return s.store(ctx, chain.Hex, final, diffIDs[i:i+1], layers[i:i+1], dirs[:i])
		})
		if err != nil {
			return nil, unpacked, fmt.Errorf("unpacking layer %s (%d of %d) into the store: %w", diffIDs[i], i+1, len(layers), err)
		}
		if v.(bool) {
			unpacked++
		}
	}
	return dirs, unpacked, nil
}

// store unpacks layers onto the stored layers below them (bottom first;
// none: onto an empty folder) into the entry final, named key, under the
// entry's lock.
func (s *Store) store(ctx context.Context, key, final string, diffIDs []v1.Hash, layers []v1.Layer, below []string) (bool, error) {
	unlock, err := manifest.LockFile(ctx, filepath.Join(s.dir, ".locks", key+".lock"), true, nil)
	if err != nil {
		return false, fmt.Errorf("locking it: %w", err)
	}
	defer unlock()
	if isDir(final) { // another process stored it while we waited
		return false, nil
	}
	s.sweepTemps(key)
	tmp, err := os.MkdirTemp(s.dir, ".tmp-"+key+"-")
	if err != nil {
		return false, err
	}
	defer removeAll(tmp)
	upper := filepath.Join(tmp, "upper")
	if err := os.Mkdir(upper, 0o755); err != nil {
		return false, err
	}
	start := time.Now()
	if len(below) == 0 {
		err = s.unpack(ctx, upper, layers)
	} else {
		err = s.onOverlay(ctx, tmp, upper, layers, below)
	}
	if err != nil {
		return false, err
	}
	if err := os.Rename(upper, final); err != nil {
		return false, err
	}
	s.log.Debug("stored unpacked", "entry", key, "layers", len(layers), "top_diff_id", diffIDs[len(diffIDs)-1].String(),
		"seconds", time.Since(start).Round(time.Millisecond).Seconds())
	return true, nil
}

// onOverlay applies l onto an overlay of the layers below it whose upper
// folder is upper: the kernel writes what l deletes as whiteouts there.
func (s *Store) onOverlay(ctx context.Context, tmp, upper string, layers []v1.Layer, below []string) error {
	work, merged := filepath.Join(tmp, "work"), filepath.Join(tmp, "merged")
	for _, d := range []string{work, merged} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
	}
	lowers := make([]string, len(below))
	for i, d := range below {
		lowers[len(below)-1-i] = d
	}
	if err := CopyRootAttrs(lowers[0], upper); err != nil {
		return err
	}
	// Volatile: what this overlay writes is renamed into the store only
	// once whole, and a crash leaves a temporary folder the next user
	// sweeps, so overlay's own syncs buy nothing.
	if err := mountLayers(lowers, upper, work, merged, true, false); err != nil {
		return err
	}
	err := s.unpack(ctx, merged, layers)
	if uerr := Unmount(merged); err == nil {
		err = uerr
	}
	return err
}

// sweepTemps removes the temporary folders a killed unpack of entry key
// left; the caller holds that entry's lock, so none is in use.
func (s *Store) sweepTemps(key string) {
	old, _ := filepath.Glob(filepath.Join(s.dir, ".tmp-"+key+"-*"))
	for _, p := range old {
		_ = Unmount(filepath.Join(p, "merged")) // a killed unpack's overlay
		_ = removeAll(p)
	}
}

// touch records that a layer was used (its folder's mtime), for people
// reading the store.
func touch(p string) {
	now := time.Now()
	_ = os.Chtimes(p, now, now)
}

// removeAll removes a tree a layer was unpacked into: its folders may be
// read-only, as the layer had them.
func removeAll(p string) error {
	err := os.RemoveAll(p)
	if err == nil {
		return nil
	}
	_ = filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(q, 0o700)
		}
		return nil
	})
	return os.RemoveAll(p)
}

// Layer is one stored layer, or a flat entry, for reports.
type Layer struct {
	ChainID v1.Hash // of the layer, or of a flat entry's top layer
	Flat    bool    // a whole stack of layers (see the package doc)
	Path    string
	Bytes   int64 // disk use (st_blocks)
	Used    time.Time
}

// List lists the stored layers (temporary folders left out) and their disk
// use. It reads only the store's folder: no lock needed.
func List(cacheDir string) ([]Layer, error) { return list(Dir(cacheDir)) }

func list(dir string) ([]Layer, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Layer
	for _, e := range ents {
		hex, flat := strings.CutPrefix(e.Name(), flatPrefix)
		chain, err := v1.NewHash("sha256:" + hex)
		if !e.IsDir() || err != nil {
			continue // temporary folders, .locks, tars
		}
		p := filepath.Join(dir, e.Name())
		fi, err := e.Info()
		if err != nil {
			continue
		}
		out = append(out, Layer{ChainID: chain, Flat: flat, Path: p, Bytes: diskUse(p), Used: fi.ModTime()})
	}
	return out, nil
}

func diskUse(p string) int64 {
	var n int64
	_ = filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		var st unix.Stat_t
		if unix.Lstat(q, &st) == nil {
			n += st.Blocks * 512
		}
		return nil
	})
	return n
}

// Prune removes the stored layers whose chain ID keep lacks, and the
// temporary folders of killed unpacks. The caller holds the cache's
// exclusive lock (kiln warm --prune), so no build is using any. Root on the
// host prunes the stores of user namespaces too (userns.go): their owners
// prune their own, and root may remove what they hold.
func Prune(cacheDir string, keep map[v1.Hash]bool) (removed int, bytes int64, err error) {
	dirs := []string{Dir(cacheDir)}
	if userNS() == "" && os.Geteuid() == 0 {
		nss, _ := filepath.Glob(filepath.Join(Dir(cacheDir), "userns-*"))
		dirs = append(dirs, nss...)
	}
	for _, dir := range dirs {
		n, b, err := prune(dir, keep)
		removed, bytes = removed+n, bytes+b
		if err != nil {
			return removed, bytes, err
		}
	}
	return removed, bytes, nil
}

func prune(dir string, keep map[v1.Hash]bool) (removed int, bytes int64, err error) {
	layers, err := list(dir)
	if err != nil {
		return 0, 0, err
	}
	for _, l := range layers {
		if keep[l.ChainID] {
			continue
		}
		if err := removeAll(l.Path); err != nil {
			return removed, bytes, err
		}
		removed++
		bytes += l.Bytes
	}
	temps, _ := filepath.Glob(filepath.Join(dir, ".tmp-*"))
	for _, t := range temps {
		_ = Unmount(filepath.Join(t, "merged"))
		_ = removeAll(t)
	}
	return removed, bytes, nil
}
