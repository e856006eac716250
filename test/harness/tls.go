package harness

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TLSFiles is a throwaway PKI as PEM files: a self-signed CA, a server
// certificate for 127.0.0.1 (an IP SAN) and a client certificate, both
// signed by the CA.
type TLSFiles struct {
	CA                    string // the CA certificate
	ServerCert, ServerKey string
	ClientCert, ClientKey string
}

// WriteTLSFiles makes a new PKI and writes it into dir (created if need be).
func WriteTLSFiles(dir string) (*TLSFiles, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating TLS folder: %w", err)
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kiln test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("making the CA: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	f := &TLSFiles{CA: filepath.Join(dir, "ca.pem")}
	if err := writePEM(f.CA, "CERTIFICATE", caDER); err != nil {
		return nil, err
	}
	server := &x509.Certificate{
		Subject: pkix.Name{CommonName: "127.0.0.1"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	if f.ServerCert, f.ServerKey, err = signTo(dir, "server", 2, server, ca, caKey); err != nil {
		return nil, err
	}
	client := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kiln test client"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	if f.ClientCert, f.ClientKey, err = signTo(dir, "client", 3, client, ca, caKey); err != nil {
		return nil, err
	}
	return f, nil
}

// signTo makes a key and a certificate from tmpl signed by ca, written to
// dir/NAME.pem and dir/NAME-key.pem.
func signTo(dir, name string, serial int64, tmpl, ca *x509.Certificate, caKey *ecdsa.PrivateKey) (string, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	tmpl.SerialNumber = big.NewInt(serial)
	tmpl.NotBefore, tmpl.NotAfter = ca.NotBefore, ca.NotAfter
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return "", "", fmt.Errorf("making the %s certificate: %w", name, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", err
	}
	cert, keyFile := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	if err := writePEM(cert, "CERTIFICATE", der); err != nil {
		return "", "", err
	}
	return cert, keyFile, writePEM(keyFile, "PRIVATE KEY", keyDER)
}

func writePEM(path, typ string, der []byte) error {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// ClientConfig is TLS that trusts the CA and presents the client
// certificate: what a well-configured client of a TLS registry uses.
func (f *TLSFiles) ClientConfig() (*tls.Config, error) {
	data, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s: no certificate", f.CA)
	}
	cert, err := tls.LoadX509KeyPair(f.ClientCert, f.ClientKey)
	if err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// StartTLSRegistry is StartRegistry serving https with files' server
// certificate; with mtls it also requires a client certificate signed by
// files' CA (distribution's http.tls.clientcas).
func StartTLSRegistry(ctx context.Context, dir string, logw io.Writer, files *TLSFiles, mtls bool) (*Registry, error) {
	bin, err := findRegistryBinary()
	if err != nil {
		return nil, err
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, fmt.Errorf("registry folder: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating registry folder: %w", err)
	}
	tlsConf, err := files.ClientConfig()
	if err != nil {
		return nil, err
	}
	section := fmt.Sprintf("  tls:\n    certificate: %q\n    key: %q\n", files.ServerCert, files.ServerKey)
	if mtls {
		section += fmt.Sprintf("    clientcas:\n      - %q\n", files.CA)
	}
	for attempt := 1; ; attempt++ {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		r, err := startTLSRegistryAt(ctx, bin, dir, addr, logw, section, tlsConf)
		if !errors.Is(err, errPortInUse) || attempt == portAttempts {
			return r, err
		}
	}
}

func startTLSRegistryAt(ctx context.Context, bin, dir, addr string, logw io.Writer, section string, tlsConf *tls.Config) (*Registry, error) {
	r := &Registry{Addr: addr, Dir: dir, token: newToken(), done: make(chan struct{}), tls: tlsConf}
	cfg, err := r.writeConfig()
	if err != nil {
		return nil, err
	}
	// The config ends inside its http: section, which this continues.
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("writing registry config: %w", err)
	}
	_, werr := f.WriteString(section)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return nil, fmt.Errorf("writing registry config: %w", werr)
	}
	if logw == nil {
		logw = io.Discard
	}
	r.out = &tailWriter{w: logw, max: 64 << 10}
	r.Cmd = exec.Command(bin, "serve", cfg)
	r.Cmd.Dir = dir
	r.Cmd.Stdout, r.Cmd.Stderr = r.out, r.out
	r.Cmd.SysProcAttr = sysProcAttr()
	if err := r.Cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	go r.wait()
	if err := r.waitReady(ctx); err != nil {
		_ = r.Close()
		return nil, err
	}
	return r, nil
}

// NewTLSRegistry starts a TLS registry (requiring a client certificate if
// mtls) with a new PKI, both in t.TempDir(), and stops it when the test
// ends.
func NewTLSRegistry(t testing.TB, mtls bool) (*Registry, *TLSFiles) {
	t.Helper()
	files, err := WriteTLSFiles(filepath.Join(t.TempDir(), "pki"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := StartTLSRegistry(t.Context(), t.TempDir(), tbWriter{t}, files, mtls)
	if errors.Is(err, ErrRegistryNotFound) {
		t.Fatalf("%v: apt-get install docker-registry (.ci/run does this)", err)
	}
	if err != nil {
		t.Fatalf("starting TLS registry: %v", err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("closing registry: %v", err)
		}
	})
	return r, files
}

// PushImageTLS is PushImage to a TLS registry, trusting files' CA and
// presenting its client certificate.
func PushImageTLS(ctx context.Context, ref string, spec ImageSpec, files *TLSFiles) (v1.Hash, error) {
	img, err := Image(spec)
	if err != nil {
		return v1.Hash{}, err
	}
	conf, err := files.ClientConfig()
	if err != nil {
		return v1.Hash{}, err
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("parsing %s: %w", ref, err)
	}
	tr := &http.Transport{Proxy: nil, TLSClientConfig: conf}
	defer tr.CloseIdleConnections()
	if err := remote.Write(r, img, append(remoteOptions(ctx), remote.WithTransport(tr))...); err != nil {
		return v1.Hash{}, fmt.Errorf("pushing %s: %w", ref, err)
	}
	return img.Digest()
}
