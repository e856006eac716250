package archcheck

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	specs "github.com/opencontainers/image-spec/specs-go/v1"

	"kiln/platform"
)

// DefaultMax is how many candidate files of one layer are inspected when
// Options.Max is zero: enough for any application layer, and a bound on the
// time a layer of a whole distribution takes.
const DefaultMax = 2000

// Options tune a check. The zero value inspects up to DefaultMax files per
// layer and ignores nothing.
type Options struct {
	// Max is how many candidate files of one layer have their header read;
	// the rest are counted in Report.Skipped. 0 means DefaultMax, a negative
	// value no limit.
	Max int
	// Ignore lists absolute path patterns (path.Match syntax) whose files, and
	// everything under them, are not checked: a cross toolchain's sysroot
	// ("/usr/aarch64-linux-gnu") holds another architecture's libraries on
	// purpose.
	Ignore []string
}

// Finding is one binary the wanted platform cannot run.
type Finding struct {
	Path    string // "/usr/bin/app", as the container sees it
	Got     string // "linux/amd64"; empty when the machine has no OCI name
	Machine string // "x86-64", from the ELF header
	Want    string // "linux/arm64"
}

// String reads "/usr/bin/app (x86-64, linux/amd64)".
func (f Finding) String() string {
	if f.Got == "" {
		return fmt.Sprintf("%s (%s)", f.Path, f.Machine)
	}
	return fmt.Sprintf("%s (%s, %s)", f.Path, f.Machine, f.Got)
}

// Report is what a check found.
type Report struct {
	Checked  int // ELF programs and shared objects whose architecture was judged
	Skipped  int // candidates not read: beyond Options.Max in their layer
	NotELF   int // candidates read that are no ELF program: scripts, data, truncated files, object files
	Findings []Finding
}

// Err returns nil when nothing was found, else a *MismatchError wrapping
// ErrForeignArchitecture that names up to 20 paths.
func (r *Report) Err() error {
	if r == nil || len(r.Findings) == 0 {
		return nil
	}
	return &MismatchError{Want: r.Findings[0].Want, Findings: r.Findings}
}

// CheckLayer checks one uncompressed layer tar read from r.
func CheckLayer(ctx context.Context, r io.Reader, want specs.Platform, opts Options) (*Report, error) {
	c, err := newChecker(want, opts)
	if err != nil {
		return nil, err
	}
	if err := c.scan(ctx, r); err != nil {
		return nil, err
	}
	return c.report(), nil
}

// CheckImageLayers checks the given layers, in order, as one: pass only the
// layers the build added. A binary a later layer deletes (whiteout) or
// replaces is not reported.
func CheckImageLayers(ctx context.Context, layers []v1.Layer, want specs.Platform, opts Options) (*Report, error) {
	c, err := newChecker(want, opts)
	if err != nil {
		return nil, err
	}
	for i, l := range layers {
		if err := c.scanLayer(ctx, l); err != nil {
			return nil, fmt.Errorf("checking layer %d%s: %w", i, layerName(l), err)
		}
	}
	return c.report(), nil
}

// checker holds one check's settings and running totals.
type checker struct {
	want     specs.Platform
	wantName string
	max      int
	ignore   []string
	rep      Report
	found    findings
}

func newChecker(want specs.Platform, opts Options) (*checker, error) {
	if want.Architecture == "" {
		return nil, fmt.Errorf("%w: no architecture to check against", platform.ErrInvalid)
	}
	want = platform.Normalize(want)
	c := &checker{want: want, wantName: platform.Format(want), max: opts.Max}
	if c.max == 0 {
		c.max = DefaultMax
	}
	for _, p := range opts.Ignore {
		p = path.Clean("/" + p)
		if _, err := path.Match(p, "/"); err != nil {
			return nil, fmt.Errorf("ignore pattern %q: %w", p, err)
		}
		c.ignore = append(c.ignore, p)
	}
	return c, nil
}

func (c *checker) scanLayer(ctx context.Context, l v1.Layer) error {
	rc, err := l.Uncompressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	return c.scan(ctx, rc)
}

// scan reads one layer tar to its end.
func (c *checker) scan(ctx context.Context, r io.Reader) error {
	tr := tar.NewReader(r)
	c.found.beginLayer()
	budget := c.max
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("reading layer: %w", err)
		}
		name := cleanPath(hdr.Name)
		if dir, base := path.Split(name); strings.HasPrefix(base, whiteoutPrefix) {
			c.found.whiteout(path.Clean(dir), base)
			continue
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			// A directory entry keeps what lies under it.
		case tar.TypeLink:
			c.found.replace(name)
			if !c.ignored(name) {
				// The target was judged when it was read; a link has no data.
				c.found.link(name, cleanPath(hdr.Linkname))
			}
		case tar.TypeReg:
			c.found.replace(name)
			if !isCandidate(hdr) || c.ignored(name) {
				continue
			}
			if budget == 0 {
				c.rep.Skipped++
				continue
			}
			budget--
			if err := c.inspect(tr, hdr.Size, name); err != nil {
				return err
			}
		default:
			c.found.replace(name)
		}
	}
	c.found.endLayer()
	return nil
}

// inspect reads the header of the file at name and judges it.
func (c *checker) inspect(r io.Reader, size int64, name string) error {
	var buf [headerSize]byte
	n := min(size, headerSize)
	if _, err := io.ReadFull(r, buf[:n]); err != nil {
		return fmt.Errorf("reading %s: %w", name, err)
	}
	h, err := ParseHeader(buf[:n])
	if err != nil || !h.IsProgram() {
		c.rep.NotELF++
		return nil
	}
	c.rep.Checked++
	if Match(h, c.want) {
		return nil
	}
	f := Finding{Path: name, Machine: h.String(), Want: c.wantName}
	if got, ok := h.Platform(); ok {
		f.Got = got.OS + "/" + got.Architecture
	}
	c.found.add(f)
	return nil
}

func (c *checker) report() *Report {
	rep := c.rep
	rep.Findings = c.found.live()
	return &rep
}

// isCandidate: a regular file with an execute bit, or a shared object,
// which need not be executable to be loaded.
func isCandidate(hdr *tar.Header) bool {
	if hdr.Mode&0o111 != 0 {
		return true
	}
	base := path.Base(hdr.Name)
	return strings.HasSuffix(base, ".so") || strings.Contains(base, ".so.")
}

// ignored reports whether name or a directory above it matches an Ignore
// pattern.
func (c *checker) ignored(name string) bool {
	for p := name; ; p = path.Dir(p) {
		for _, pat := range c.ignore {
			if ok, _ := path.Match(pat, p); ok {
				return true
			}
		}
		if p == "/" {
			return false
		}
	}
}

// cleanPath turns a tar name ("./usr/bin/app", "usr/bin/app") into the path
// the container sees ("/usr/bin/app").
func cleanPath(name string) string {
	return path.Clean("/" + name)
}

func layerName(l v1.Layer) string {
	d, err := l.Digest()
	if err != nil {
		return ""
	}
	return " (" + d.String() + ")"
}
