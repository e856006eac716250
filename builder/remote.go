package builder

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"time"
)

// errChecksum is wrapped by the error for an ADD --checksum mismatch.
var errChecksum = errors.New("checksum mismatch")

// download is an ADD URL fetched into the work folder.
type download struct {
	host  string    // the downloaded file
	base  string    // its name when the destination is a folder
	mtime time.Time // Last-Modified, else the build time
}

// isURL says whether an ADD source is fetched over HTTP(S).
func isURL(src string) bool {
	return strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://")
}

// fetch downloads an ADD URL, streaming it to a file and checking checksum
// ("sha256:<hex>", sha384, sha512) when given.
func (b *builder) fetch(ctx context.Context, rawURL, checksum string) (download, error) {
	h, want, err := parseChecksum(checksum)
	if err != nil {
		return download{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return download{}, err
	}
	resp, err := b.o.http.Do(req)
	if err != nil {
		return download{}, fmt.Errorf("fetching %s: %w", rawURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return download{}, fmt.Errorf("fetching %s: %s", rawURL, resp.Status)
	}
	f, err := os.CreateTemp(b.work, "add-")
	if err != nil {
		return download{}, err
	}
	defer f.Close()
	if _, err := io.Copy(io.MultiWriter(f, h), resp.Body); err != nil {
		return download{}, fmt.Errorf("fetching %s: %w", rawURL, err)
	}
	if got := fmt.Sprintf("%x", h.Sum(nil)); want != "" && got != want {
		return download{}, fmt.Errorf("%s: %w: got %s, want %s", rawURL, errChecksum, got, checksum)
	}
	return download{host: f.Name(), base: urlBase(rawURL), mtime: lastModified(resp, b.created)}, f.Close()
}

// parseChecksum splits "algo:hex"; an empty checksum checks nothing.
func parseChecksum(s string) (hash.Hash, string, error) {
	if s == "" {
		return sha256.New(), "", nil
	}
	algo, hexsum, _ := strings.Cut(s, ":")
	switch algo {
	case "sha256":
		return sha256.New(), strings.ToLower(hexsum), nil
	case "sha384":
		return sha512.New384(), strings.ToLower(hexsum), nil
	case "sha512":
		return sha512.New(), strings.ToLower(hexsum), nil
	}
	return nil, "", fmt.Errorf("--checksum=%s: unsupported digest (sha256, sha384 or sha512)", s)
}

// urlBase is the file name a URL is saved as inside a folder destination.
func urlBase(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "download"
	}
	if b := path.Base(u.Path); b != "/" && b != "." && b != "" {
		return b
	}
	return "download"
}

func lastModified(resp *http.Response, fallback time.Time) time.Time {
	if t, err := http.ParseTime(resp.Header.Get("Last-Modified")); err == nil {
		return t
	}
	return fallback
}

// fetchAll downloads the URL sources of an ADD; the others are returned.
func (b *builder) fetchAll(ctx context.Context, srcs []string, checksum string) (local []string, dls []download, err error) {
	for _, src := range srcs {
		if !isURL(src) {
			local = append(local, src)
			continue
		}
		dl, err := b.fetch(ctx, src, checksum)
		if err != nil {
			return nil, nil, err
		}
		dls = append(dls, dl)
	}
	if checksum != "" && len(local) > 0 {
		return nil, nil, errors.New("--checksum applies only to URL sources")
	}
	return local, dls, nil
}
