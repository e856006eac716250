// Command cacheseed prepares kiln's layer-cache benchmark
// (bench/layercache.sh): it starts a registry process, pushes a Debian
// minbase base image, writes the build context (a Dockerfile and a small
// app), and keeps the registry serving until its standard input closes or
// it gets SIGTERM/SIGINT; then it stops it.
//
//	go run ./bench/cacheseed -dir bench/.work/layercache/registry \
//		-context bench/.work/layercache/context -ready bench/.work/layercache/cacheseed.json \
//		-lists bench/.work/layercache/lists -minbase bench/.work/runstep-cache/minbase.tar
//
// (under a shell, keep its standard input open, e.g. from a FIFO, or pass
// -stdin=false and stop it with SIGTERM).
//
// It pushes REG/bench/cache-minbase:1, one layer: the tar given with
// -minbase as is (a debootstrap --variant=minbase tree, see minbase_tar in
// bench/lib.sh), for this machine's platform. The context holds:
//
//	Dockerfile   FROM cache-minbase, three RUN steps that need no network
//	             (useradd; 2,000 small files; cp -a /usr/share/doc), then
//	             COPY app/ /app/
//	app/         -app-files files of 200 B–8 KiB in 10 folders (text from a
//	             fixed seed); the list file "edit" names the one the script
//	             edits for the "one file changed" rebuild
//
// Contents come from fixed seeds and mtimes are fixed. Once ready it prints
// a JSON description, writes it atomically to -ready, and writes one-value
// files to -lists for shell scripts.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"kiln/bench/internal/seedrun"
)

// modTime is every generated file's and folder's mtime.
var modTime = time.Unix(946684800, 0) // 2000-01-01T00:00:00Z

const (
	appDirs = 10
	minSize = 200
	maxSize = 8 << 10
	appSeed = 47
)

const pathEnv = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// dockerfile is the build's Dockerfile; %s is the base image. The RUN steps
// are what a real image's early steps look like and need no network.
const dockerfile = `FROM %s
RUN useradd -m -u 1000 app
RUN mkdir -p /srv/data && for d in $(seq 0 19); do mkdir /srv/data/d$d; for f in $(seq 0 99); do echo "file $d/$f" > /srv/data/d$d/f$f.txt; done; done
RUN cp -a /usr/share/doc /srv/doc
COPY app/ /app/
`

// Description is what cacheseed prints.
type Description struct {
	Registry   string  `json:"registry"`
	Platform   string  `json:"platform"`
	Minbase    string  `json:"minbase"`
	MinbaseTar int64   `json:"minbase_tar_bytes"`
	Context    string  `json:"context"`
	AppFiles   int     `json:"app_files"`
	AppBytes   int64   `json:"app_bytes"`
	Edit       string  `json:"edit"` // the app file the "edited" rebuild changes, relative to the context
	Secs       float64 `json:"seconds"`
}

func main() {
	dir := flag.String("dir", "bench/.work/layercache/registry", "registry folder (config and data)")
	ctxDir := flag.String("context", "bench/.work/layercache/context", "write the build context here (must not exist, or be empty)")
	ready := flag.String("ready", "", "write the JSON description here (atomically) once everything is ready")
	lists := flag.String("lists", "", "write plain-text values for shell scripts into this folder")
	minbase := flag.String("minbase", "", "a tar of a Debian minbase tree, pushed as cache-minbase:1 (required)")
	appFiles := flag.Int("app-files", 300, "files in the context's app/ folder")
	watchStdin := flag.Bool("stdin", true, "stop when standard input closes")
	logPath := flag.String("log", "", "append the registry's log here (default: standard error)")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("cacheseed: ")
	if *minbase == "" {
		log.Fatal("-minbase is required (a tar of a debootstrap --variant=minbase tree)")
	}
	if *appFiles < 1 {
		log.Fatalf("-app-files %d: need at least 1", *appFiles)
	}

	seedrun.Serve(*dir, *logPath, *watchStdin, func(ctx context.Context, addr string) error {
		return run(ctx, addr, *ctxDir, *minbase, *appFiles, *ready, *lists)
	})
}

func run(ctx context.Context, addr, ctxDir, minbase string, appFiles int, ready, lists string) error {
	start := time.Now()
	abs, err := filepath.Abs(ctxDir)
	if err != nil {
		return err
	}
	plat := &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	d := Description{
		Registry: addr,
		Platform: plat.String(),
		Minbase:  addr + "/bench/cache-minbase:1",
		Context:  abs,
		AppFiles: appFiles,
	}
	fi, err := os.Stat(minbase)
	if err != nil {
		return fmt.Errorf("-minbase: %w", err)
	}
	d.MinbaseTar = fi.Size()
	if err := pushMinbase(ctx, d.Minbase, minbase, plat); err != nil {
		return err
	}
	if d.Edit, d.AppBytes, err = writeContext(abs, d.Minbase, appFiles); err != nil {
		return fmt.Errorf("writing the context %s: %w", abs, err)
	}
	d.Secs = time.Since(start).Seconds()
	if err := seedrun.Publish(d, ready, lists, listFiles(d)); err != nil {
		return err
	}
	log.Printf("ready: %s, %s (%.1f MB tar), %d app files, in %.1fs", addr, d.Minbase,
		float64(d.MinbaseTar)/1e6, d.AppFiles, d.Secs)
	return nil
}

// pushMinbase pushes the tar at path as a one-layer image to ref.
func pushMinbase(ctx context.Context, ref, path string, plat *v1.Platform) error {
	l, err := tarball.LayerFromFile(path, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.ConfigFile(img, &v1.ConfigFile{
		OS:           plat.OS,
		Architecture: plat.Architecture,
		Variant:      plat.Variant,
		Config:       v1.Config{Env: []string{pathEnv, "KILN_BENCH=cache-minbase"}, Cmd: []string{"bash"}},
		RootFS:       v1.RootFS{Type: "layers"},
	})
	if err != nil {
		return err
	}
	if img, err = mutate.AppendLayers(img, l); err != nil {
		return err
	}
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return fmt.Errorf("parsing %s: %w", ref, err)
	}
	if err := remote.Write(r, img, remote.WithContext(ctx), remote.WithJobs(4)); err != nil {
		return fmt.Errorf("pushing %s: %w", ref, err)
	}
	return nil
}

// writeContext writes the Dockerfile and app/ into dir. It returns the
// file to edit (relative to dir) and the app's size in bytes.
func writeContext(dir, base string, files int) (string, int64, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", 0, err
	}
	if ents, err := os.ReadDir(dir); err != nil {
		return "", 0, err
	} else if len(ents) > 0 {
		return "", 0, fmt.Errorf("context folder %s is not empty", dir)
	}
	written := []string{dir}
	df := filepath.Join(dir, "Dockerfile")
	if err := os.WriteFile(df, fmt.Appendf(nil, dockerfile, base), 0o644); err != nil {
		return "", 0, err
	}
	written = append(written, df)
	rng := rand.New(rand.NewPCG(appSeed, 0x6b696c6e))
	var total int64
	for i := range files {
		sub := filepath.Join(dir, "app", fmt.Sprintf("pkg%02d", i%appDirs))
		if i < appDirs {
			if err := os.MkdirAll(sub, 0o755); err != nil {
				return "", 0, err
			}
			written = append(written, sub)
		}
		p := filepath.Join(sub, fmt.Sprintf("mod%03d.txt", i))
		data := text(rng, minSize+rng.IntN(maxSize-minSize+1))
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return "", 0, err
		}
		written = append(written, p)
		total += int64(len(data))
	}
	written = append(written, filepath.Join(dir, "app"))
	for _, p := range written {
		if err := os.Chtimes(p, modTime, modTime); err != nil {
			return "", 0, err
		}
	}
	return filepath.Join("app", "pkg00", "mod000.txt"), total, nil
}

// text returns n bytes of source-like text: lines of lowercase words.
func text(rng *rand.Rand, n int) []byte {
	b := make([]byte, 0, n)
	for len(b) < n {
		if rng.IntN(8) == 0 {
			b = append(b, '\n')
			continue
		}
		for range 2 + rng.IntN(7) {
			b = append(b, byte('a'+rng.IntN(26)))
		}
		b = append(b, ' ')
	}
	b = b[:n-1]
	return append(b, '\n')
}

func listFiles(d Description) map[string]string {
	return map[string]string{
		"registry":    d.Registry + "\n",
		"platform":    d.Platform + "\n",
		"minbase.ref": d.Minbase + "\n",
		"minbase.tar": fmt.Sprintln(d.MinbaseTar),
		"context":     d.Context + "\n",
		"app.files":   fmt.Sprintln(d.AppFiles),
		"app.bytes":   fmt.Sprintln(d.AppBytes),
		"edit":        d.Edit + "\n",
	}
}
