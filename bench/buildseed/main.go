// Command buildseed prepares kiln's build benchmarks (bench/build.sh and,
// with -index, bench/buildall.sh): it starts a registry process, pushes the
// base images, writes the build context and its Dockerfiles, and keeps the
// registry serving until its standard input closes or it gets
// SIGTERM/SIGINT; then it stops it.
//
//	go run ./bench/buildseed -dir bench/.work/registry -context bench/.work/context \
//		-ready bench/.work/buildseed.json -lists bench/.work/lists
//
// (under a shell, keep its standard input open, e.g. from a FIFO, or pass
// -stdin=false and stop it with SIGTERM).
//
// What it pushes, both single-platform images for this machine's platform
// (buildah builds for the machine it runs on):
//
//	REG/bench/build-base:1   a small base: 2 layers, 2.5 MiB in 12 files
//	REG/bench/build-big:1    one 200 MiB layer of 8 incompressible files
//	                         (-big-mb; 0 leaves this image out)
//
// With -index linux/amd64,linux/arm64 (for bench/buildall.sh) it also pushes
//
//	REG/bench/buildall-base:1  an OCI image index, one image per platform,
//	                           each 2 layers (2.5 MiB, seeds per platform)
//
// and writes into the context one folder of per-platform files for each
// platform's architecture, arch/ARCH/ (12 files of 256 KiB–1 MiB, ~7.5 MB,
// different content per architecture), and
//
//	Dockerfile.buildall  FROM buildall-base, ARG TARGETARCH, COPY
//	                     arch/${TARGETARCH}/, then COPY src/, assets/, data/
//
// The context (-context) holds ~2,000 files of incompressible content,
// ~150 MB, in three folders of different file sizes:
//
//	src/     1,600 files of 1–12 KiB in 40 folders    (~10 MB)
//	assets/    360 files of 64–320 KiB in 12 folders  (~70 MB)
//	data/       40 files of 1–2.5 MiB                 (~73 MB)
//
// and three Dockerfiles naming the registry's address:
//
//	Dockerfile.copy    FROM build-base, COPY src/, COPY assets/, COPY data/
//	Dockerfile.multi   stage 1 FROM build-base COPY src/ and assets/; stage 2
//	                   FROM build-base COPY --from=stage1 the src/ subset, COPY
//	                   data/, WORKDIR, ENV, LABEL, CMD
//	Dockerfile.big     FROM build-big, COPY src/
//
// Sizes and contents come from fixed seeds, mtimes are fixed: the same flags
// give the same files and digests on every run and machine. Once ready it
// prints a JSON description, writes it atomically to -ready, and writes
// one-value files to -lists for shell scripts (registry, base.ref, big.ref,
// context.files, context.bytes, big.bytes; with -index also index.ref,
// index.platforms, arch.files, arch.bytes). The context counts and tiers
// leave arch/ out: they are the same with and without -index.
package main

import (
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

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"

	"kiln/bench/internal/seedrun"
	"kiln/test/harness"
)

const (
	kib = 1 << 10
	mib = 1 << 20
)

// modTime is every context file's and folder's mtime.
var modTime = time.Unix(946684800, 0) // 2000-01-01T00:00:00Z

// tier is one folder of the context: Files files spread over Dirs
// sub-folders (none when Dirs is 0), each of a size drawn uniformly from
// [Min, Max] by a generator seeded with Seed.
type tier struct {
	Name     string
	Files    int
	Dirs     int
	Min, Max int64
	Seed     uint64
}

var tiers = []tier{
	{Name: "src", Files: 1600, Dirs: 40, Min: 1 * kib, Max: 12 * kib, Seed: 11},
	{Name: "assets", Files: 360, Dirs: 12, Min: 64 * kib, Max: 320 * kib, Seed: 12},
	{Name: "data", Files: 40, Dirs: 0, Min: 1 * mib, Max: 5 * mib / 2, Seed: 13},
}

// Tier is what was written for one folder.
type Tier struct {
	Name  string `json:"name"`
	Files int    `json:"files"`
	Bytes int64  `json:"bytes"`
}

// Description is what buildseed prints.
type Description struct {
	Registry     string  `json:"registry"`
	Platform     string  `json:"platform"`
	Base         string  `json:"base"`
	Big          string  `json:"big"`
	BigBytes     int64   `json:"big_layer_bytes"` // uncompressed file content
	Context      string  `json:"context"`
	Tiers        []Tier  `json:"tiers"`
	ContextFiles int     `json:"context_files"`
	ContextBytes int64   `json:"context_bytes"`
	Secs         float64 `json:"seconds"`

	// With -index: the multi-platform base and the per-architecture folders.
	Index          string   `json:"index,omitempty"`
	IndexPlatforms []string `json:"index_platforms,omitempty"`
	ArchTiers      []Tier   `json:"arch_tiers,omitempty"`
	ArchFiles      int      `json:"arch_files,omitempty"`
	ArchBytes      int64    `json:"arch_bytes,omitempty"`
}

func main() {
	dir := flag.String("dir", "bench/.work/registry", "registry folder (config and data)")
	ctxDir := flag.String("context", "bench/.work/context", "write the build context here (must not exist, or be empty)")
	ready := flag.String("ready", "", "write the JSON description here (atomically) once everything is ready")
	lists := flag.String("lists", "", "write plain-text values for shell scripts into this folder")
	bigMB := flag.Int("big-mb", 200, "size of the big base image's one layer, MiB (0: no big image)")
	indexPlats := flag.String("index", "", "also push a multi-platform base for these comma-separated platforms and write arch/ and Dockerfile.buildall")
	watchStdin := flag.Bool("stdin", true, "stop when standard input closes")
	logPath := flag.String("log", "", "append the registry's log here (default: standard error)")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("buildseed: ")

	seedrun.Serve(*dir, *logPath, *watchStdin, func(ctx context.Context, addr string) error {
		return run(ctx, addr, *ctxDir, *bigMB, *indexPlats, *ready, *lists)
	})
}

func run(ctx context.Context, addr, ctxDir string, bigMB int, indexPlats, ready, lists string) error {
	start := time.Now()
	abs, err := filepath.Abs(ctxDir)
	if err != nil {
		return err
	}
	plat := "linux/" + runtime.GOARCH
	d := Description{
		Registry: addr,
		Platform: plat,
		Base:     addr + "/bench/build-base:1",
		Context:  abs,
	}
	if bigMB < 0 {
		return fmt.Errorf("-big-mb %d: must not be negative", bigMB)
	}
	if bigMB > 0 {
		d.Big = addr + "/bench/build-big:1"
		d.BigBytes = int64(bigMB) * mib
	}
	var indexSpecs []harness.ImageSpec
	if indexPlats != "" {
		d.Index = addr + "/bench/buildall-base:1"
		seen := map[string]bool{}
		for i, s := range strings.Split(indexPlats, ",") {
			p, err := v1.ParsePlatform(strings.TrimSpace(s))
			if err != nil {
				return fmt.Errorf("-index: %w", err)
			}
			if seen[p.Architecture] {
				return fmt.Errorf("-index: architecture %s given twice (arch/ has one folder per architecture)", p.Architecture)
			}
			seen[p.Architecture] = true
			d.IndexPlatforms = append(d.IndexPlatforms, p.String())
			seed := int64(7201 + 10*i) // different layers per platform, as real bases have
			indexSpecs = append(indexSpecs, harness.ImageSpec{
				Platform: p.String(),
				Layers: []harness.LayerSpec{
					{Seed: seed, Size: 2 * mib, Files: 8},
					{Seed: seed + 1, Size: 512 * kib, Files: 4},
				},
				Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "KILN_BENCH=buildall-base"},
			})
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		_, err := harness.PushImage(gctx, d.Base, harness.ImageSpec{
			Platform: plat,
			Layers: []harness.LayerSpec{
				{Seed: 7001, Size: 2 * mib, Files: 8},
				{Seed: 7002, Size: 512 * kib, Files: 4},
			},
			Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "KILN_BENCH=build-base"},
		})
		return err
	})
	if d.Big != "" {
		g.Go(func() error {
			_, err := harness.PushImage(gctx, d.Big, harness.ImageSpec{
				Platform: plat,
				Layers:   []harness.LayerSpec{{Seed: 7101, Size: d.BigBytes, Files: 8}},
				Env:      []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "KILN_BENCH=build-big"},
			})
			return err
		})
	}
	if d.Index != "" {
		g.Go(func() error {
			_, err := harness.PushIndex(gctx, d.Index, indexSpecs)
			return err
		})
	}
	g.Go(func() (err error) {
		d.Tiers, err = writeContext(abs, d)
		if err == nil && d.Index != "" {
			d.ArchTiers, err = writeArch(abs, d)
		}
		return err
	})
	if err := g.Wait(); err != nil {
		return err
	}
	for _, t := range d.Tiers {
		d.ContextFiles += t.Files
		d.ContextBytes += t.Bytes
	}
	for _, t := range d.ArchTiers {
		d.ArchFiles += t.Files
		d.ArchBytes += t.Bytes
	}
	d.Secs = time.Since(start).Seconds()
	if err := seedrun.Publish(d, ready, lists, listFiles(d)); err != nil {
		return err
	}
	log.Printf("ready: %s, context of %d files, %.1f MB, in %.1fs", addr,
		d.ContextFiles, float64(d.ContextBytes)/1e6, d.Secs)
	return nil
}

// writeContext writes the three folders and the Dockerfiles into dir.
func writeContext(dir string, d Description) ([]Tier, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if ents, err := os.ReadDir(dir); err != nil {
		return nil, err
	} else if len(ents) > 0 {
		return nil, fmt.Errorf("context folder %s is not empty", dir)
	}
	var out []Tier
	for _, t := range tiers {
		w, err := writeTier(dir, t)
		if err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	files := map[string]string{
		"Dockerfile.copy": fmt.Sprintf(`FROM %s
COPY src/ /app/src/
COPY assets/ /app/assets/
COPY data/ /app/data/
`, d.Base),
		"Dockerfile.multi": fmt.Sprintf(`FROM %[1]s AS stage1
COPY src/ /build/src/
COPY assets/ /build/assets/

FROM %[1]s
COPY --from=stage1 /build/src/ /app/src/
COPY data/ /app/data/
WORKDIR /app
ENV APP_HOME=/app APP_MODE=bench
LABEL org.opencontainers.image.title=kiln-bench-multi
CMD ["/app/run", "--serve"]
`, d.Base),
	}
	if d.Big != "" {
		files["Dockerfile.big"] = fmt.Sprintf(`FROM %s
COPY src/ /app/src/
`, d.Big)
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return nil, err
		}
		if err := os.Chtimes(p, modTime, modTime); err != nil {
			return nil, err
		}
	}
	return out, os.Chtimes(dir, modTime, modTime)
}

// writeArch writes arch/ARCH/ for every platform of d.IndexPlatforms (12
// files of 256 KiB–1 MiB each, seeded per architecture) and
// Dockerfile.buildall, which copies the target's folder, then the three
// shared folders.
func writeArch(dir string, d Description) ([]Tier, error) {
	var out []Tier
	for i, s := range d.IndexPlatforms {
		p, err := v1.ParsePlatform(s)
		if err != nil {
			return nil, err
		}
		t := tier{Name: filepath.Join("arch", p.Architecture), Files: 12, Min: 256 * kib, Max: 1 * mib, Seed: uint64(21 + i)}
		w, err := writeTier(dir, t)
		if err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	df := filepath.Join(dir, "Dockerfile.buildall")
	content := fmt.Sprintf(`FROM %s
ARG TARGETARCH
COPY arch/${TARGETARCH}/ /app/bin/
COPY src/ /app/src/
COPY assets/ /app/assets/
COPY data/ /app/data/
`, d.Index)
	if err := os.WriteFile(df, []byte(content), 0o644); err != nil {
		return nil, err
	}
	for _, p := range []string{df, filepath.Join(dir, "arch"), dir} {
		if err := os.Chtimes(p, modTime, modTime); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// writeTier writes one folder: file i goes to sub-folder i%Dirs, its size
// drawn from a PCG seeded with t.Seed and its content from a ChaCha8 seeded
// with t.Seed too (one stream for the whole folder).
func writeTier(root string, t tier) (Tier, error) {
	out := Tier{Name: t.Name, Files: t.Files}
	base := filepath.Join(root, t.Name)
	sizes := rand.New(rand.NewPCG(t.Seed, 0x6b696c6e))
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], t.Seed)
	content := rand.NewChaCha8(seed)
	dirs := []string{base}
	if t.Dirs > 0 {
		dirs = dirs[:0]
		for i := range t.Dirs {
			dirs = append(dirs, filepath.Join(base, fmt.Sprintf("d%02d", i)))
		}
	}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return out, err
		}
	}
	for i := range t.Files {
		size := t.Min + sizes.Int64N(t.Max-t.Min+1)
		p := filepath.Join(dirs[i%len(dirs)], fmt.Sprintf("f%04d.bin", i))
		if err := writeFile(p, content, size); err != nil {
			return out, err
		}
		out.Bytes += size
	}
	for _, d := range append(dirs, base) {
		if err := os.Chtimes(d, modTime, modTime); err != nil {
			return out, err
		}
	}
	return out, nil
}

func writeFile(p string, src io.Reader, size int64) error {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.CopyN(f, src, size); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Chtimes(p, modTime, modTime)
}

func listFiles(d Description) map[string]string {
	files := map[string]string{
		"registry":      d.Registry + "\n",
		"platform":      d.Platform + "\n",
		"base.ref":      d.Base + "\n",
		"big.ref":       d.Big + "\n",
		"big.bytes":     fmt.Sprintln(d.BigBytes),
		"context":       d.Context + "\n",
		"context.files": fmt.Sprintln(d.ContextFiles),
		"context.bytes": fmt.Sprintln(d.ContextBytes),
	}
	if d.Index != "" {
		files["index.ref"] = d.Index + "\n"
		files["index.platforms"] = strings.Join(d.IndexPlatforms, ",") + "\n"
		files["arch.files"] = fmt.Sprintln(d.ArchFiles)
		files["arch.bytes"] = fmt.Sprintln(d.ArchBytes)
	}
	return files
}
