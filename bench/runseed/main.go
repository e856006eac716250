// Command runseed prepares kiln's RUN benchmark (bench/runstep.sh): it
// starts a registry process, pushes the base images, writes the build
// context's Dockerfiles, and keeps the registry serving until its standard
// input closes or it gets SIGTERM/SIGINT; then it stops it.
//
//	go run ./bench/runseed -dir bench/.work/runstep/registry -context bench/.work/runstep/context \
//		-ready bench/.work/runstep/runseed.json -lists bench/.work/runstep/lists \
//		-minbase bench/.work/runstep-cache/minbase.tar
//
// (under a shell, keep its standard input open, e.g. from a FIFO, or pass
// -stdin=false and stop it with SIGTERM).
//
// What it pushes, single-platform images for this machine's platform:
//
//	REG/bench/run-50k:1     2 layers: busybox (-busybox, a static binary) as
//	                        /bin/busybox with /bin/sh and a few applets as
//	                        symlinks, /etc/passwd, /tmp, ...; then -files
//	                        (50,000) files of 100 B–3 KiB in 1,000 folders
//	                        under /usr/lib/bench/ (incompressible content)
//	REG/bench/run-minbase:1 one layer: the tar given with -minbase as is (a
//	                        debootstrap --variant=minbase tree, tarred by
//	                        runstep.sh); left out without -minbase
//
// and the Dockerfiles (naming the registry's address):
//
//	Dockerfile.a0    FROM run-50k, LABEL: no RUN (the base's cost)
//	Dockerfile.a1    FROM run-50k, one RUN rewriting 10 of its files
//	Dockerfile.a2    the same, then a second RUN rewriting 10 other files
//	Dockerfile.b     FROM run-minbase, five RUN steps (motd, useradd, cp -a
//	                 of /usr/share/doc, rm -rf of it, dpkg -l): no network
//
// Sizes and contents come from fixed seeds, mtimes are fixed: the same flags
// (and the same busybox and minbase tar) give the same digests on every
// run. Once ready it prints a JSON description, writes it atomically to
// -ready, and writes one-value files to -lists for shell scripts.
package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"

	"kiln/bench/internal/seedrun"
)

// modTime is every generated file's and folder's mtime.
var modTime = time.Unix(946684800, 0) // 2000-01-01T00:00:00Z

const (
	dirsA    = 50 // /usr/lib/bench/aNN
	dirsB    = 20 // /usr/lib/bench/aNN/bNN
	minSize  = 100
	maxSize  = 3 << 10
	fileSeed = 31
)

// applets get a symlink to busybox in /bin.
var applets = []string{"cat", "cp", "echo", "find", "ls", "mkdir", "mv", "rm", "sed", "sh", "touch", "true", "wc"}

const pathEnv = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Description is what runseed prints.
type Description struct {
	Registry    string  `json:"registry"`
	Platform    string  `json:"platform"`
	Base50k     string  `json:"base_50k"`
	Files       int     `json:"files"`      // files of the 50k layer
	FileBytes   int64   `json:"file_bytes"` // their content
	Entries     int     `json:"entries"`    // every tar entry of the 50k image
	Minbase     string  `json:"minbase,omitempty"`
	MinbaseTar  int64   `json:"minbase_tar_bytes,omitempty"`
	MinEntries  int     `json:"minbase_entries,omitempty"`
	Context     string  `json:"context"`
	ChangedA1   int     `json:"changed_a1"` // files rewritten by Dockerfile.a1's RUN
	Secs        float64 `json:"seconds"`
	BusyboxFrom string  `json:"busybox"`
}

func main() {
	dir := flag.String("dir", "bench/.work/runstep/registry", "registry folder (config and data)")
	ctxDir := flag.String("context", "bench/.work/runstep/context", "write the Dockerfiles here (must not exist, or be empty)")
	ready := flag.String("ready", "", "write the JSON description here (atomically) once everything is ready")
	lists := flag.String("lists", "", "write plain-text values for shell scripts into this folder")
	files := flag.Int("files", 50000, "files in the big layer of run-50k")
	busybox := flag.String("busybox", "/bin/busybox", "a static busybox binary, /bin/busybox of run-50k")
	minbase := flag.String("minbase", "", "a tar of a Debian minbase tree: pushed as run-minbase:1 (empty: left out)")
	watchStdin := flag.Bool("stdin", true, "stop when standard input closes")
	logPath := flag.String("log", "", "append the registry's log here (default: standard error)")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("runseed: ")

	seedrun.Serve(*dir, *logPath, *watchStdin, func(ctx context.Context, addr string) error {
		return run(ctx, addr, *ctxDir, *files, *busybox, *minbase, *ready, *lists)
	})
}

func run(ctx context.Context, addr, ctxDir string, files int, busybox, minbase, ready, lists string) error {
	start := time.Now()
	if files < 20 {
		return fmt.Errorf("-files %d: need at least 20 (the RUN steps rewrite 20 of them)", files)
	}
	abs, err := filepath.Abs(ctxDir)
	if err != nil {
		return err
	}
	plat := &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	d := Description{
		Registry:    addr,
		Platform:    plat.String(),
		Base50k:     addr + "/bench/run-50k:1",
		Files:       files,
		Context:     abs,
		BusyboxFrom: busybox,
	}
	if minbase != "" {
		d.Minbase = addr + "/bench/run-minbase:1"
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		bb, n1, err := busyboxLayer(busybox)
		if err != nil {
			return err
		}
		big, n2, size, err := filesLayer(files)
		if err != nil {
			return err
		}
		d.Entries, d.FileBytes = n1+n2, size
		img, err := image(plat, []string{pathEnv, "KILN_BENCH=run-50k"}, []string{"/bin/sh"}, bb, big)
		if err != nil {
			return err
		}
		return push(gctx, d.Base50k, img)
	})
	if minbase != "" {
		g.Go(func() error {
			fi, err := os.Stat(minbase)
			if err != nil {
				return err
			}
			d.MinbaseTar = fi.Size()
			if d.MinEntries, err = countEntries(minbase); err != nil {
				return err
			}
			l, err := tarball.LayerFromFile(minbase, tarball.WithMediaType(types.OCILayer))
			if err != nil {
				return err
			}
			img, err := image(plat, []string{pathEnv, "KILN_BENCH=run-minbase"}, []string{"bash"}, l)
			if err != nil {
				return err
			}
			return push(gctx, d.Minbase, img)
		})
	}
	g.Go(func() (err error) {
		d.ChangedA1, err = writeContext(abs, d)
		return err
	})
	if err := g.Wait(); err != nil {
		return err
	}
	d.Secs = time.Since(start).Seconds()
	if err := seedrun.Publish(d, ready, lists, listFiles(d)); err != nil {
		return err
	}
	log.Printf("ready: %s, run-50k of %d files (%.1f MB), minbase %q, in %.1fs", addr,
		d.Files, float64(d.FileBytes)/1e6, d.Minbase, d.Secs)
	return nil
}

func image(plat *v1.Platform, env, cmd []string, layers ...v1.Layer) (v1.Image, error) {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := mutate.ConfigFile(img, &v1.ConfigFile{
		OS:           plat.OS,
		Architecture: plat.Architecture,
		Variant:      plat.Variant,
		Config:       v1.Config{Env: env, Cmd: cmd},
		RootFS:       v1.RootFS{Type: "layers"},
	})
	if err != nil {
		return nil, err
	}
	return mutate.AppendLayers(img, layers...)
}

func push(ctx context.Context, ref string, img v1.Image) error {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return fmt.Errorf("parsing %s: %w", ref, err)
	}
	if err := remote.Write(r, img, remote.WithContext(ctx), remote.WithJobs(4)); err != nil {
		return fmt.Errorf("pushing %s: %w", ref, err)
	}
	return nil
}

// tarWriter writes entries owned by root with fixed mtimes.
type tarWriter struct {
	tw *tar.Writer
	n  int
}

func (t *tarWriter) dir(name string, mode int64) error {
	t.n++
	return t.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, ModTime: modTime, Format: tar.FormatPAX})
}

func (t *tarWriter) symlink(name, target string) error {
	t.n++
	return t.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: modTime, Format: tar.FormatPAX})
}

func (t *tarWriter) file(name string, mode int64, data []byte) error {
	t.n++
	if err := t.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: modTime, Format: tar.FormatPAX}); err != nil {
		return err
	}
	_, err := t.tw.Write(data)
	return err
}

func layerOf(buf *bytes.Buffer) (v1.Layer, error) {
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

// busyboxLayer: the static busybox, its applets, and the folders and files
// a shell and buildah's chroot isolation expect.
func busyboxLayer(busybox string) (v1.Layer, int, error) {
	bin, err := os.ReadFile(busybox)
	if err != nil {
		return nil, 0, fmt.Errorf("-busybox: %w (apt-get install busybox-static)", err)
	}
	var buf bytes.Buffer
	t := &tarWriter{tw: tar.NewWriter(&buf)}
	for _, dd := range []struct {
		name string
		mode int64
	}{{"bin", 0o755}, {"dev", 0o755}, {"etc", 0o755}, {"proc", 0o555}, {"root", 0o700}, {"sys", 0o555}, {"tmp", 0o1777}, {"usr", 0o755}, {"usr/lib", 0o755}, {"var", 0o755}} {
		if err := t.dir(dd.name, dd.mode); err != nil {
			return nil, 0, err
		}
	}
	if err := t.file("bin/busybox", 0o755, bin); err != nil {
		return nil, 0, err
	}
	for _, a := range applets {
		if err := t.symlink("bin/"+a, "busybox"); err != nil {
			return nil, 0, err
		}
	}
	if err := t.file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\n")); err != nil {
		return nil, 0, err
	}
	if err := t.file("etc/group", 0o644, []byte("root:x:0:\n")); err != nil {
		return nil, 0, err
	}
	if err := t.tw.Close(); err != nil {
		return nil, 0, err
	}
	l, err := layerOf(&buf)
	return l, t.n, err
}

// benchPath is the path of file i of the 50k layer, relative to /.
func benchPath(i, files int) string {
	nd := dirsA * dirsB
	per := (files + nd - 1) / nd
	dirIdx := i / per
	return fmt.Sprintf("usr/lib/bench/a%02d/b%02d/f%05d.dat", dirIdx/dirsB, dirIdx%dirsB, i)
}

// filesLayer: files files under usr/lib/bench/aNN/bNN/, sizes from a PCG,
// content from one ChaCha8 stream, both seeded with fileSeed.
func filesLayer(files int) (v1.Layer, int, int64, error) {
	var buf bytes.Buffer
	t := &tarWriter{tw: tar.NewWriter(&buf)}
	sizes := rand.New(rand.NewPCG(fileSeed, 0x6b696c6e))
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], fileSeed)
	content := rand.NewChaCha8(seed)
	if err := t.dir("usr/lib/bench", 0o755); err != nil {
		return nil, 0, 0, err
	}
	var total int64
	lastDir := ""
	data := make([]byte, maxSize)
	for i := range files {
		p := benchPath(i, files)
		if dd := filepath.Dir(p); dd != lastDir {
			if a := filepath.Dir(dd); a != filepath.Dir(lastDir) {
				if err := t.dir(a, 0o755); err != nil {
					return nil, 0, 0, err
				}
			}
			if err := t.dir(dd, 0o755); err != nil {
				return nil, 0, 0, err
			}
			lastDir = dd
		}
		size := minSize + sizes.IntN(maxSize-minSize+1)
		_, _ = content.Read(data[:size])
		if err := t.file(p, 0o644, data[:size]); err != nil {
			return nil, 0, 0, err
		}
		total += int64(size)
	}
	if err := t.tw.Close(); err != nil {
		return nil, 0, 0, err
	}
	l, err := layerOf(&buf)
	return l, t.n, total, err
}

func countEntries(p string) (int, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	n := 0
	for {
		if _, err := tr.Next(); err == io.EOF {
			return n, nil
		} else if err != nil {
			return n, fmt.Errorf("%s: %w", p, err)
		}
		n++
	}
}

// rewrite returns a shell command that overwrites the files with index
// first, first+step, ... (count of them), scattered over the tree.
func rewrite(first, step, count, files int, tag string) string {
	var b strings.Builder
	for k := range count {
		if k > 0 {
			b.WriteString(" && ")
		}
		fmt.Fprintf(&b, "echo %s-%d > /%s", tag, k, benchPath((first+k*step)%files, files))
	}
	return b.String()
}

// writeContext writes the Dockerfiles into dir; it returns how many files
// Dockerfile.a1's RUN rewrites.
func writeContext(dir string, d Description) (int, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	if ents, err := os.ReadDir(dir); err != nil {
		return 0, err
	} else if len(ents) > 0 {
		return 0, fmt.Errorf("context folder %s is not empty", dir)
	}
	const changed = 10
	step := d.Files / changed
	run1 := "RUN " + rewrite(0, step, changed, d.Files, "one") + "\n"
	run2 := "RUN " + rewrite(step/2, step, changed, d.Files, "two") + "\n"
	files := map[string]string{
		"Dockerfile.a0": fmt.Sprintf("FROM %s\nLABEL org.opencontainers.image.title=kiln-bench-run-a0\n", d.Base50k),
		"Dockerfile.a1": fmt.Sprintf("FROM %s\n%s", d.Base50k, run1),
		"Dockerfile.a2": fmt.Sprintf("FROM %s\n%s%s", d.Base50k, run1, run2),
	}
	if d.Minbase != "" {
		files["Dockerfile.b"] = fmt.Sprintf(`FROM %s
RUN echo "kiln RUN benchmark" > /etc/motd
RUN useradd -m app
RUN mkdir -p /srv && cp -a /usr/share/doc /srv/doc
RUN rm -rf /usr/share/doc/*
RUN dpkg -l > /srv/packages.txt
`, d.Minbase)
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return 0, err
		}
		if err := os.Chtimes(p, modTime, modTime); err != nil {
			return 0, err
		}
	}
	return changed, os.Chtimes(dir, modTime, modTime)
}

func listFiles(d Description) map[string]string {
	files := map[string]string{
		"registry":        d.Registry + "\n",
		"platform":        d.Platform + "\n",
		"base50k.ref":     d.Base50k + "\n",
		"base50k.files":   fmt.Sprintln(d.Files),
		"base50k.bytes":   fmt.Sprintln(d.FileBytes),
		"base50k.entries": fmt.Sprintln(d.Entries),
		"minbase.ref":     d.Minbase + "\n",
		"minbase.bytes":   fmt.Sprintln(d.MinbaseTar),
		"minbase.entries": fmt.Sprintln(d.MinEntries),
		"context":         d.Context + "\n",
		"changed":         fmt.Sprintln(d.ChangedA1),
	}
	return files
}
