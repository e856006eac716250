package manifest

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// Access is a direction of registry traffic, for the client-wide settings
// that apply to one direction only (kaniko's --insecure and --insecure-pull).
type Access uint8

const (
	// Pull is reading: manifests, blobs, tags resolved.
	Pull Access = 1 << iota
	// Push is writing: blob uploads and mounts, manifests, tags.
	Push
)

// WithInsecure lets every registry be reached over plain HTTP, and TLS go
// unverified, for the traffic a names: kaniko's --insecure (Push) and
// --insecure-pull (Pull). RegistryConfig.Insecure does it for one registry
// both ways.
func WithInsecure(a Access) ClientOption { return func(o *clientOptions) { o.insecure |= a } }

// WithSkipTLSVerify speaks TLS to every registry without checking its
// certificate, for the traffic a names: kaniko's --skip-tls-verify (Push)
// and --skip-tls-verify-pull (Pull). RegistryConfig.SkipTLSVerify does it
// for one registry both ways.
func WithSkipTLSVerify(a Access) ClientOption { return func(o *clientOptions) { o.skipVerify |= a } }

// WithoutMirrorFallback makes a pull from a registry that has mirrors ask
// the mirrors only: an image none of them serves is an error, not a pull
// from the registry itself (kaniko's --skip-default-registry-fallback). A
// registry without mirrors is asked as usual.
func WithoutMirrorFallback() ClientOption { return func(o *clientOptions) { o.noFallback = true } }

// ReadCA reads a PEM file of CA certificates (or a registry's self-signed
// certificate) to trust for a registry, checking that every PEM block in it
// is a certificate and that there is at least one.
func ReadCA(path string) ([]byte, error) {
	data, err := readPEMFile(path)
	if err != nil {
		return nil, err
	}
	if _, err := certPool(data); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return data, nil
}

// ReadClientCert reads the PEM certificate (or chain) and private key kiln
// presents to a registry that asks for one (mutual TLS).
func ReadClientCert(certFile, keyFile string) (*tls.Certificate, error) {
	certPEM, err := readPEMFile(certFile)
	if err != nil {
		return nil, err
	}
	keyPEM, err := readPEMFile(keyFile)
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s and %s: %w", certFile, keyFile, err)
	}
	return &cert, nil
}

// maxPEMFile bounds what is read of a CA bundle, certificate or key: a
// build file may name /dev/zero.
const maxPEMFile = 4 << 20

// readPEMFile reads a regular file of at most maxPEMFile bytes.
func readPEMFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	if fi.Size() > maxPEMFile {
		return nil, fmt.Errorf("%s: %d bytes, more than a PEM file of certificates holds (%d at most)", path, fi.Size(), maxPEMFile)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxPEMFile))
}

// certPool is the system's roots plus the certificates of pemData.
func certPool(pemData []byte) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	n := 0
	for rest := pemData; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("a %q PEM block where a CERTIFICATE belongs", b.Type)
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", n+1, err)
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 {
		return nil, errors.New("no PEM certificate in it")
	}
	return pool, nil
}

// tlsConfig is what reg's TLS needs besides the defaults, or nil if
// nothing: its CA bundle and client certificate (made once, by NewClient).
func newTLSConfig(rc RegistryConfig) (*tls.Config, error) {
	if rc.CA == nil && rc.ClientCert == nil {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if rc.CA != nil {
		pool, err := certPool(rc.CA)
		if err != nil {
			return nil, fmt.Errorf("CA bundle: %w", err)
		}
		cfg.RootCAs = pool
	}
	if rc.ClientCert != nil {
		cfg.Certificates = []tls.Certificate{*rc.ClientCert}
	}
	return cfg, nil
}

// insecure says whether reg may be reached over plain HTTP for a.
func (c *Client) insecure(reg name.Registry, a Access) bool {
	return c.registryConfig(reg).Insecure || c.o.insecure&a != 0
}

// skipVerify says whether reg's certificate goes unchecked for a.
func (c *Client) skipVerify(reg name.Registry, a Access) bool {
	return c.registryConfig(reg).SkipTLSVerify || c.o.skipVerify&a != 0 || c.insecure(reg, a)
}

// tlsOnly says whether reg is reached over TLS only: it was given TLS
// settings of its own and is not marked insecure. go-containerregistry
// falls back to plain HTTP for loopback and private-network registries
// (name.Registry's Scheme) when https fails: a registry kiln was told how
// to verify must not be quietly reached without TLS instead.
func (c *Client) tlsOnly(reg name.Registry, a Access) bool {
	rc := c.registryConfig(reg)
	return !c.insecure(reg, a) && (rc.SkipTLSVerify || rc.CA != nil || rc.ClientCert != nil)
}

// baseFor is the transport under retries and auth for reg's traffic a:
// kiln's only place that decides about TLS. Transports are made once per
// kind (and per registry with TLS settings of its own), so that their
// connections are pooled.
func (c *Client) baseFor(reg name.Registry, a Access) http.RoundTripper {
	skip := c.skipVerify(reg, a)
	own := c.tlsConfigs[reg.Name()]
	var rt http.RoundTripper
	if !skip && own == nil {
		rt = c.o.base
	} else {
		key := fmt.Sprintf("skip=%t", skip)
		if own != nil {
			key = reg.Name() + " " + key
		}
		rt = c.tlsTransport(key, own, skip)
	}
	if c.tlsOnly(reg, a) {
		rt = &httpsTransport{inner: rt, host: reg.RegistryStr()}
	}
	return &tlsHintTransport{inner: rt, registry: reg.RegistryStr()}
}

// tlsTransport is the base transport with own's CA and client certificate
// (nil: the system's roots, none) and verification off if skip.
func (c *Client) tlsTransport(key string, own *tls.Config, skip bool) http.RoundTripper {
	c.mu.Lock()
	defer c.mu.Unlock()
	if rt, ok := c.tlsBases[key]; ok {
		return rt
	}
	rt := c.o.base
	if t, ok := c.o.base.(*http.Transport); ok {
		t = t.Clone()
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if own != nil {
			cfg = own.Clone()
		}
		cfg.InsecureSkipVerify = skip //nolint:gosec // the user asked for it, for this registry or this direction
		t.TLSClientConfig = cfg
		if own != nil {
			// HTTP/1.1: a server refusing the client certificate does so
			// after a TLS 1.3 handshake seems done; over HTTP/2 its alert
			// is lost behind "client conn could not be established", over
			// HTTP/1.1 it is the first read's error, which says why.
			t.ForceAttemptHTTP2 = false
			t.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
			cfg.NextProtos = nil
		}
		rt = t
	}
	c.tlsBases[key] = rt
	return rt
}

// httpsTransport sends the plain-HTTP requests go-containerregistry makes
// to host (its ping's fallback, its URLs for a loopback registry) over https.
type httpsTransport struct {
	inner http.RoundTripper
	host  string
}

func (t *httpsTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "http" || req.URL.Host != t.host {
		return t.inner.RoundTrip(req)
	}
	r := req.Clone(req.Context())
	r.URL.Scheme = "https"
	return t.inner.RoundTrip(r)
}

// withAccess is ref with its registry marked insecure if it may be
// reached over plain HTTP for a.
func (c *Client) withAccess(ref name.Reference, a Access) name.Reference {
	switch r := ref.(type) {
	case name.Tag:
		r.Repository = c.repoFor(r.Repository, a)
		return r
	case name.Digest:
		r.Repository = c.repoFor(r.Repository, a)
		return r
	}
	return ref
}

// repoFor is withAccess for a repository.
func (c *Client) repoFor(repo name.Repository, a Access) name.Repository {
	if !c.insecure(repo.Registry, a) {
		return repo
	}
	if ir, err := name.NewRegistry(repo.RegistryStr(), name.Insecure); err == nil {
		repo.Registry = ir
	}
	return repo
}

// TLSError is a TLS handshake with a registry that failed: its certificate
// is not trusted, or it wants a client certificate kiln did not give. The
// message says how to fix it.
type TLSError struct {
	Registry string
	Err      error
}

func (e *TLSError) Error() string {
	reg := e.Registry
	if clientCertRefused(e.Err) {
		return fmt.Sprintf("%v (%s refused the TLS handshake: it asks for a client certificate; give one with --registry-client-cert %s=CERT.pem,KEY.pem or client_cert and client_key in [registries.%q] of build.toml)",
			e.Err, reg, reg, reg)
	}
	return fmt.Sprintf("%v (kiln does not trust the certificate of %s: give its CA with --registry-certificate %s=CA.pem or ca in [registries.%q] of build.toml, or skip the check with --skip-tls-verify-registry %s)",
		e.Err, reg, reg, reg, reg)
}

func (e *TLSError) Unwrap() error { return e.Err }

// tlsHintTransport wraps handshake failures with reg in a TLSError.
type tlsHintTransport struct {
	inner    http.RoundTripper
	registry string
}

func (t *tlsHintTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.inner.RoundTrip(req)
	if err != nil && req.URL.Host == t.registry && isTLSFailure(err) {
		err = &TLSError{Registry: t.registry, Err: err}
	}
	return resp, err
}

// isTLSFailure: the certificate did not verify, or the server refused the
// handshake with an alert. Neither is worth a retry.
func isTLSFailure(err error) bool {
	var cve *tls.CertificateVerificationError
	var uae x509.UnknownAuthorityError
	var hne x509.HostnameError
	var cie x509.CertificateInvalidError
	if errors.As(err, &cve) || errors.As(err, &uae) || errors.As(err, &hne) || errors.As(err, &cie) {
		return true
	}
	return isTLSAlert(err)
}

// isTLSAlert: the peer ended the handshake with a TLS alert ("remote
// error: tls: ..."), which crypto/tls reports as a net.OpError around an
// unexported type.
func isTLSAlert(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "remote error" && strings.HasPrefix(oe.Err.Error(), "tls: ")
}

// clientCertRefused: the server's alert says it wanted a (valid) client
// certificate.
func clientCertRefused(err error) bool {
	if !isTLSAlert(err) {
		return false
	}
	msg := err.Error()
	return strings.Contains(msg, "certificate required") || strings.Contains(msg, "bad certificate") ||
		strings.Contains(msg, "unknown certificate authority") || strings.Contains(msg, "handshake failure")
}
