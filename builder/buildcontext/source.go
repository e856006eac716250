package buildcontext

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"strings"
)

// The context source schemes of kaniko's --context, besides git:// (see
// ParseGitURL) and http(s):// (a tarball, downloaded).
const (
	dirScheme = "dir://" // dir://PATH: a local folder
	tarScheme = "tar://" // tar://PATH: a local tar or tar.gz file; tar://stdin: one on stdin
)

// LocalPath returns the local path a context source names, or "" if it
// names none: PATH for a plain path, "dir://PATH" and "tar://PATH", "-" for
// "-" and "tar://stdin". Git and other URLs name none.
func LocalPath(source string) string {
	if source == tarScheme+"stdin" {
		return "-"
	}
	for _, scheme := range []string{dirScheme, tarScheme} {
		if p, ok := strings.CutPrefix(source, scheme); ok {
			return p
		}
	}
	if _, isGit := ParseGitURL(source); isGit || strings.Contains(source, "://") {
		if _, err := os.Lstat(source); err != nil { // a local path wins over a URL
			return ""
		}
	}
	return source
}

// cloudHints say, for the object stores kaniko reads with their SDKs, how
// to give kiln the same tarball: kiln links no cloud SDK.
var cloudHints = map[string]string{
	"s3://": "copy the tarball before the build (aws s3 cp, e.g. in an init container) and pass --context tar://PATH, " +
		"or pass a pre-signed https:// URL of it (aws s3 presign)",
	"gs://": "copy the tarball before the build (gcloud storage cp, e.g. in an init container) and pass --context tar://PATH, " +
		"or pass a signed https:// URL of it (gcloud storage sign-url)",
}

// fromScheme opens the sources named by a scheme kiln reads without
// looking at the filesystem first; ok is false for any other source.
func fromScheme(ctx context.Context, source string, opts Options) (c *Context, ok bool, err error) {
	for scheme, hint := range cloudHints {
		if strings.HasPrefix(source, scheme) {
			return nil, true, fmt.Errorf("%w: kiln does not read %s contexts (no cloud SDK is linked): %s, or use a git context", ErrUnsupportedSource, scheme, hint)
		}
	}
	if p, isDir := strings.CutPrefix(source, dirScheme); isDir {
		fi, err := os.Stat(p)
		if err == nil && !fi.IsDir() {
			err = fmt.Errorf("%s is not a folder (a tar file is tar://%s)", p, p)
		}
		if err != nil {
			return nil, true, err
		}
		c, err := fromDir(p)
		return c, true, err
	}
	if p, isTar := strings.CutPrefix(source, tarScheme); isTar {
		fi, err := os.Stat(p)
		if err == nil && !fi.Mode().IsRegular() {
			err = &fs.PathError{Op: "open", Path: p, Err: fmt.Errorf("%w (a folder is dir://%s)", errNotRegular, p)}
		}
		if err != nil {
			return nil, true, err
		}
		c, err := fromArchiveFile(ctx, p, opts)
		return c, true, err
	}
	return nil, false, nil
}

// azureBlobHost is the host suffix of Azure blob storage, which kaniko
// reads with Azure's SDK and kiln downloads like any https:// tarball.
const azureBlobHost = ".blob.core.windows.net"

// fromURL downloads a tarball context (or a lone Dockerfile, as docker
// build takes one) and extracts it as it streams in.
func fromURL(ctx context.Context, source string, opts Options) (*Context, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, source, nil)
	if err != nil {
		return nil, err
	}
	client := opts.HTTPClient
	if client == nil {
		client = http.DefaultClient
	}
	opts.Log.Info("downloading the build context", "url", redact(source))
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its message holds the URL, maybe with a signature in the query
		}
		return nil, fmt.Errorf("downloading: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("downloading: %s%s", resp.Status, downloadHint(req.URL, resp.StatusCode))
	}
	return fromStream(ctx, resp.Body, opts)
}

// downloadHint explains a refused Azure blob download: kiln sends no
// Azure credentials.
func downloadHint(u *url.URL, status int) string {
	if !strings.HasSuffix(u.Hostname(), azureBlobHost) || status != http.StatusUnauthorized && status != http.StatusForbidden && status != http.StatusNotFound {
		return ""
	}
	return " (kiln downloads an Azure blob over plain HTTPS and does not use AZURE_STORAGE_ACCESS_KEY: " +
		"give a SAS URL of the blob (…?sv=…&sig=…), make the container public, or copy the tarball first and pass tar://PATH)"
}

// redact hides a password in a URL, and its query (a pre-signed URL's
// signature), before it goes into a message.
func redact(source string) string {
	u, err := url.Parse(source)
	if err != nil || u.User == nil && u.RawQuery == "" {
		return source
	}
	if u.RawQuery != "" {
		u.RawQuery = "REDACTED"
	}
	return u.Redacted()
}
