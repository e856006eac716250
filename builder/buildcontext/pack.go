package buildcontext

import (
	"archive/tar"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"

	"github.com/klauspost/compress/gzip"
)

// Pack writes the context as Docker would send it, as a gzipped tar, to w:
// every entry .dockerignore lets through, plus the Dockerfile and the
// ignore files themselves (a builder reading the tar needs them, and applies
// .dockerignore again). The same files give the same bytes: entries in
// lexical order, owner 0:0 without names, no access or change times, a fixed
// gzip header. File mtimes and modes are kept: COPY puts them in the image.
func (c *Context) Pack(w io.Writer) error {
	gz, err := gzip.NewWriterLevel(w, gzip.DefaultCompression)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(gz)
	seen := map[string]bool{}
	err = c.Walk(".", func(rel string, fi fs.FileInfo) error {
		if rel == "." || rel == "" {
			return nil
		}
		seen[rel] = true
		return c.packEntry(tw, rel, fi)
	})
	if err != nil {
		return fmt.Errorf("packing the build context: %w", err)
	}
	// The Dockerfile and the ignore files travel even when excluded. Their
	// parent folders are in the tar already or made by the reader.
	for _, rel := range slices.Sorted(slices.Values(c.controlFiles())) {
		if seen[rel] {
			continue
		}
		real, fi, err := c.resolve(rel, false)
		if err != nil {
			continue // no such file: nothing to send
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		if err := c.packFile(tw, rel, c.host(real), fi); err != nil {
			return fmt.Errorf("packing the build context: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

// controlFiles are the context-relative files a builder needs besides what
// .dockerignore lets through.
func (c *Context) controlFiles() []string {
	if c.dockerfile == "" {
		return []string{".dockerignore"} // the Dockerfile lies outside the context
	}
	return []string{c.dockerfile, ".dockerignore", c.dockerfile + ".dockerignore"}
}

func (c *Context) packEntry(tw *tar.Writer, rel string, fi fs.FileInfo) error {
	host := c.host(rel)
	switch {
	case fi.Mode().IsRegular():
		return c.packFile(tw, rel, host, fi)
	case fi.IsDir():
		return tw.WriteHeader(packHeader(rel+"/", fi, tar.TypeDir, ""))
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(host)
		if err != nil {
			return err
		}
		return tw.WriteHeader(packHeader(rel, fi, tar.TypeSymlink, target))
	}
	return nil // devices, fifos and sockets are not sent, as Docker does not send them
}

func (c *Context) packFile(tw *tar.Writer, rel, host string, fi fs.FileInfo) error {
	f, err := os.Open(host)
	if err != nil {
		return err
	}
	defer f.Close()
	h := packHeader(rel, fi, tar.TypeReg, "")
	h.Size = fi.Size()
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	n, err := io.Copy(tw, io.LimitReader(f, h.Size))
	if err != nil {
		return err
	}
	if n != h.Size {
		return fmt.Errorf("%s: changed while being packed", rel)
	}
	return nil
}

func packHeader(name string, fi fs.FileInfo, typ byte, link string) *tar.Header {
	mode := int64(fi.Mode().Perm())
	for _, b := range [...]struct {
		fm  fs.FileMode
		bit int64
	}{{fs.ModeSetuid, 0o4000}, {fs.ModeSetgid, 0o2000}, {fs.ModeSticky, 0o1000}} {
		if fi.Mode()&b.fm != 0 {
			mode |= b.bit
		}
	}
	return &tar.Header{
		Typeflag: typ, Name: name, Linkname: link, Mode: mode,
		ModTime: fi.ModTime().UTC(), Format: tar.FormatPAX,
	}
}
