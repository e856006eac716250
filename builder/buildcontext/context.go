package buildcontext

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
)

// DefaultDockerfile is the Dockerfile's name when Options.Dockerfile is empty.
const DefaultDockerfile = "Dockerfile"

// Options says where the Dockerfile is and how to materialise a context that
// is not already a directory. The zero value is usable for directories.
type Options struct {
	// Dockerfile is the Dockerfile's path relative to the context root
	// (default "Dockerfile"), or an absolute host path, which may lie
	// outside the context as with `docker build -f`.
	// "<Dockerfile>.dockerignore" (beside it) wins over the root
	// ".dockerignore", as in Docker and BuildKit.
	Dockerfile string
	// SubPath is a folder inside the context (kaniko's --context-sub-path)
	// that becomes the context root, after a git URL's own subdir. It is
	// resolved inside the context: it cannot climb out.
	SubPath string
	// TempDir is where tar, stdin and git contexts are materialised, in a new
	// folder that Close removes (default os.TempDir()).
	TempDir string
	// Stdin is read for the source "-".
	Stdin io.Reader
	// Git is the git binary: "" looks "git" up in PATH and falls back to
	// kiln's built-in client (go-git) when there is none, as in kiln's own
	// image; BuiltinGit always uses the built-in client.
	Git string
	// GitOptions are kaniko's --git settings and the credentials for a git
	// context fetched over HTTP(S).
	GitOptions GitOptions
	// HTTPClient downloads http(s):// tarball contexts (default
	// http.DefaultClient).
	HTTPClient *http.Client
	// Log receives a line saying how a context that is not a folder is
	// fetched (default: discard).
	Log *slog.Logger
	// Exclude lists context-relative paths left out of the context whatever
	// .dockerignore says: a build's own output folder when it lies inside
	// the context, so that the next build does not copy the last one.
	Exclude []string
}

// Context is a build context on local disk (materialised if it came as a
// tar, on stdin or from git) with .dockerignore applied.
type Context struct {
	root       string // absolute, symlink-free host path of the context root
	dockerfile string // cleaned context-relative path of the Dockerfile; "" when outside
	// dockerfileHost is the absolute, symlink-free host path of a
	// Dockerfile outside the context ("" when it is inside).
	dockerfileHost string
	ignore         *ignorer

	mu  sync.Mutex
	tmp string // what Open materialised; removed by Close
}

// Open makes a Context from source: "-" or "tar://stdin" (a tar, or a lone
// Dockerfile, on opts.Stdin), an existing directory ("dir://PATH" too), an
// existing tar file ("tar://PATH" too), a git URL (see ParseGitURL), or an
// http(s):// URL of a tarball. A local path wins over a git URL of the same
// spelling, as in the docker CLI. s3:// and gs:// are refused with
// ErrUnsupportedSource and the way around it.
func Open(ctx context.Context, source string, opts Options) (*Context, error) {
	dockerfile, err := cleanDockerfile(opts.Dockerfile)
	if err != nil {
		return nil, err
	}
	opts.Dockerfile = dockerfile
	if opts.TempDir == "" {
		opts.TempDir = os.TempDir()
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	c, err := materialise(ctx, source, opts)
	if err == nil && opts.SubPath != "" {
		if err = c.enter("context sub-path", opts.SubPath); err != nil {
			c.Close()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("opening build context %s: %w", redact(source), err)
	}
	if err := c.placeDockerfile(dockerfile); err != nil {
		c.Close()
		return nil, err
	}
	if c.ignore, err = c.loadIgnore(); err != nil {
		c.Close()
		return nil, fmt.Errorf("opening build context %s: %w", redact(source), err)
	}
	for _, e := range opts.Exclude {
		if e = path.Clean(filepath.ToSlash(e)); e != "." && e != "" && !strings.HasPrefix(e, "../") && e != ".." {
			c.ignore.forced = append(c.ignore.forced, e)
		}
	}
	return c, nil
}

// materialise returns a Context whose root is set, by source kind.
func materialise(ctx context.Context, source string, opts Options) (*Context, error) {
	if source == "-" || source == tarScheme+"stdin" {
		if opts.Stdin == nil {
			return nil, errors.New(`source "-" needs Options.Stdin`)
		}
		return fromStream(ctx, opts.Stdin, opts)
	}
	if c, ok, err := fromScheme(ctx, source, opts); ok {
		return c, err
	}
	fi, err := os.Stat(source)
	switch {
	case err == nil && fi.IsDir():
		return fromDir(source)
	case err == nil:
		return fromArchiveFile(ctx, source, opts)
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	if repo, ok := ParseGitURL(source); ok {
		return fromGit(ctx, repo, opts)
	}
	if strings.HasPrefix(source, "http://") || strings.HasPrefix(source, "https://") {
		return fromURL(ctx, source, opts)
	}
	if strings.Contains(source, "://") {
		return nil, fmt.Errorf("%w: unknown scheme (kiln reads a path, dir://, tar://, git://, http(s):// and git URLs)", ErrUnsupportedSource)
	}
	return nil, err
}

func fromDir(dir string) (*Context, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	root, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, err
	}
	return &Context{root: root}, nil
}

// newTemp makes the folder a materialised context lives in.
func newTemp(opts Options) (*Context, error) {
	tmp, err := os.MkdirTemp(opts.TempDir, "kiln-context-")
	if err != nil {
		return nil, err
	}
	root, err := filepath.EvalSymlinks(tmp)
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	return &Context{root: root, tmp: root}, nil
}

// cleanDockerfile refuses a relative Dockerfile path that climbs out of
// the context; an absolute one is a host path, kept as it is.
func cleanDockerfile(p string) (string, error) {
	if p == "" {
		return DefaultDockerfile, nil
	}
	if filepath.IsAbs(p) {
		return filepath.Clean(p), nil
	}
	clean := path.Clean(filepath.ToSlash(p))
	if path.IsAbs(clean) || clean == "." || clean == ".." || strings.HasPrefix(clean, "../") {
		return "", fmt.Errorf("dockerfile %q: must be a file path relative to the context, inside it", p)
	}
	return clean, nil
}

// Root is the absolute host path of the context root.
func (c *Context) Root() string { return c.root }

// Close removes what Open materialised; it does nothing for a directory
// context. It is safe to call more than once.
func (c *Context) Close() error {
	c.mu.Lock()
	tmp := c.tmp
	c.tmp = ""
	c.mu.Unlock()
	if tmp == "" {
		return nil
	}
	if err := os.RemoveAll(tmp); err != nil {
		// A tar may have made folders we cannot write to; open them up and retry.
		makeWritable(tmp)
		if err := os.RemoveAll(tmp); err != nil {
			return fmt.Errorf("removing build context %s: %w", tmp, err)
		}
	}
	return nil
}

func makeWritable(dir string) {
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			if info, err := d.Info(); err == nil {
				os.Chmod(p, info.Mode().Perm()|0o700)
			}
		}
		return nil
	})
	os.Chmod(dir, 0o700)
}

// placeDockerfile takes the Dockerfile's path, context-relative or an
// absolute host path: one that lies inside the context becomes relative to
// it, the Dockerfile being then the context's file; one outside is read
// from the host, as `docker build -f` does.
func (c *Context) placeDockerfile(p string) error {
	if !filepath.IsAbs(p) {
		c.dockerfile = p
		return nil
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return fmt.Errorf("dockerfile %s: %w", p, err)
	}
	if rel, err := filepath.Rel(c.root, real); err == nil && filepath.IsLocal(rel) {
		c.dockerfile = filepath.ToSlash(rel)
		return nil
	}
	c.dockerfileHost = real
	return nil
}

// Dockerfile returns the Dockerfile's bytes. Like Docker, it reads the file
// even when .dockerignore excludes it from the context.
func (c *Context) Dockerfile() ([]byte, error) {
	if c.dockerfileHost != "" {
		b, err := readRegular(c.dockerfileHost)
		if err != nil {
			return nil, fmt.Errorf("reading dockerfile %s: %w", c.dockerfileHost, err)
		}
		return b, nil
	}
	b, err := c.readFile(c.dockerfile)
	if err != nil {
		return nil, fmt.Errorf("reading dockerfile %s: %w", c.dockerfile, err)
	}
	return b, nil
}

// readFile reads a context file, confined but ignoring .dockerignore.
func (c *Context) readFile(rel string) ([]byte, error) {
	real, fi, err := c.resolve(rel, false)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, &fs.PathError{Op: "read", Path: rel, Err: errNotRegular}
	}
	return os.ReadFile(c.host(real))
}

// readRegular reads a host file outside the context, refusing anything but
// a regular file.
func readRegular(p string) ([]byte, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, &fs.PathError{Op: "read", Path: p, Err: errNotRegular}
	}
	return os.ReadFile(p)
}

var errNotRegular = errors.New("not a regular file")
