package manifest

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
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// testPKI is a CA and what it signed: a server certificate for 127.0.0.1
// and a client certificate, as PEM.
type testPKI struct {
	caPEM                   []byte
	caPool                  *x509.CertPool
	server                  tls.Certificate
	clientPEM, clientKeyPEM []byte
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	caKey := newKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kiln test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	p := &testPKI{caPEM: pemBlock("CERTIFICATE", caDER), caPool: x509.NewCertPool()}
	p.caPool.AddCert(ca)
	sign := func(serial int64, tmpl *x509.Certificate) ([]byte, []byte) {
		key := newKey(t)
		tmpl.SerialNumber = big.NewInt(serial)
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kd, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return pemBlock("CERTIFICATE", der), pemBlock("EC PRIVATE KEY", kd)
	}
	certPEM, keyPEM := sign(2, &x509.Certificate{Subject: pkix.Name{CommonName: "127.0.0.1"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature})
	if p.server, err = tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	p.clientPEM, p.clientKeyPEM = sign(3, &x509.Certificate{Subject: pkix.Name{CommonName: "kiln"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature})
	return p
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func (p *testPKI) clientCert(t *testing.T) *tls.Certificate {
	t.Helper()
	c, err := tls.X509KeyPair(p.clientPEM, p.clientKeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return &c
}

// tlsRegistry is an in-memory registry over TLS on 127.0.0.1 (which
// go-containerregistry would reach over plain HTTP), asking for a client
// certificate if mtls; hellos counts TLS handshakes begun.
type tlsRegistry struct {
	host   string
	hellos atomic.Int32
}

func newTLSRegistry(t *testing.T, p *testPKI, mtls bool) *tlsRegistry {
	t.Helper()
	r := &tlsRegistry{}
	srv := httptest.NewUnstartedServer(registry.New(registry.Logger(discardLogger())))
	srv.Config.ErrorLog = discardLogger()
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{p.server}, GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		r.hellos.Add(1)
		return nil, nil
	}}
	if mtls {
		srv.TLS.ClientAuth, srv.TLS.ClientCAs = tls.RequireAndVerifyClientCert, p.caPool
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	r.host = strings.TrimPrefix(srv.URL, "https://")
	return r
}

// pushPull pushes a random image to r and reads it back with c, and
// returns how many TLS handshakes the step that failed began.
func pushPull(ctx context.Context, t *testing.T, c *Client, r *tlsRegistry) (int32, error) {
	t.Helper()
	host := r.host
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(host + "/tls/test:1")
	if err != nil {
		t.Fatal(err)
	}
	before := r.hellos.Load()
	if _, err := c.Push(ctx, img, []name.Reference{ref}); err != nil {
		return r.hellos.Load() - before, err
	}
	// The transport may finish dials it started for the push after the
	// push is done (a request served by another connection meanwhile):
	// those handshakes are not the pull's.
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		n := r.hellos.Load()
		time.Sleep(100 * time.Millisecond)
		if r.hellos.Load() == n {
			break
		}
	}
	before = r.hellos.Load()
	_, _, err = c.Get(ctx, ref)
	return r.hellos.Load() - before, err
}

func TestRegistryTLS(t *testing.T) {
	p := newTestPKI(t)
	plain, mtls := newTLSRegistry(t, p, false), newTLSRegistry(t, p, true)
	tests := []struct {
		name     string
		reg      *tlsRegistry
		rc       RegistryConfig
		opts     []ClientOption
		wantHint string // "" for success
	}{
		{name: "untrusted", reg: plain, wantHint: "give its CA with --registry-certificate"},
		{name: "CA", reg: plain, rc: RegistryConfig{CA: p.caPEM}},
		{name: "skip verify for this registry", reg: plain, rc: RegistryConfig{SkipTLSVerify: true}},
		{name: "skip verify for pushes only", reg: plain, rc: RegistryConfig{Mirrors: []string{}}, opts: []ClientOption{WithSkipTLSVerify(Push)},
			wantHint: "give its CA"}, // the push goes, the pull fails
		{name: "mTLS without a client certificate", reg: mtls, rc: RegistryConfig{CA: p.caPEM}, wantHint: "asks for a client certificate"},
		{name: "mTLS", reg: mtls, rc: RegistryConfig{CA: p.caPEM, ClientCert: p.clientCert(t)}},
		{name: "mTLS, unverified server", reg: mtls, rc: RegistryConfig{SkipTLSVerify: true, ClientCert: p.clientCert(t)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			c := newTestClient(t, map[string]RegistryConfig{tt.reg.host: tt.rc}, tt.opts...)
			hellos, err := pushPull(ctx, t, c, tt.reg)
			if tt.wantHint == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var te *TLSError
			if !errors.As(err, &te) || !strings.Contains(err.Error(), tt.wantHint) || !strings.Contains(err.Error(), tt.reg.host) {
				t.Fatalf("err = %v, want a TLSError for %s saying %q", err, tt.reg.host, tt.wantHint)
			}
			// The plain-HTTP ping's failure only repeats the TLS one.
			if d := Describe(err); strings.Count(d, tt.wantHint) != 1 || strings.Contains(d, "HTTPS server") || strings.Contains(d, "HTTP 400") {
				t.Errorf("Describe(err) = %s, want the TLS failure once", d)
			}
			if Retryable(err) || RetryableWrite(err) {
				t.Errorf("a TLS failure is retryable: %v", err)
			}
			// A ping may try two schemes and the transport may redial
			// once; a retry loop would make it many more.
			if hellos > 4 {
				t.Errorf("%d TLS handshakes for one failing operation: retried", hellos)
			}
		})
	}
}

func TestAccessInsecure(t *testing.T) {
	c := newTestClient(t, map[string]RegistryConfig{"both.example.com": {Insecure: true}}, WithInsecure(Pull))
	for _, tt := range []struct {
		ref    string
		access Access
		scheme string
	}{
		{"registry.example.com/a:1", Pull, "http"},
		{"registry.example.com/a:1", Push, "https"},
		{"registry.example.com/a@sha256:" + strings.Repeat("a", 64), Pull, "http"},
		{"both.example.com/a:1", Push, "http"},
	} {
		ref := c.withAccess(parseRef(t, c, tt.ref), tt.access)
		if got := ref.Context().Scheme(); got != tt.scheme {
			t.Errorf("%s for access %d: scheme %s, want %s", tt.ref, tt.access, got, tt.scheme)
		}
		if ref.String() != parseRef(t, c, tt.ref).String() {
			t.Errorf("withAccess changed %s into %s", tt.ref, ref)
		}
	}
}

func TestWithoutMirrorFallback(t *testing.T) {
	regs := map[string]RegistryConfig{"docker.io": {Mirrors: []string{"mirror.example.com"}}}
	c := newTestClient(t, regs, WithoutMirrorFallback())
	var got []string
	for _, s := range c.candidates(parseRef(t, c, "busybox:1")) {
		got = append(got, s.Repo.Name())
	}
	if len(got) != 1 || got[0] != "mirror.example.com/library/busybox" {
		t.Errorf("candidates = %v, want the mirror only", got)
	}
	if n := len(c.candidates(parseRef(t, c, "ghcr.io/a/b:1"))); n != 1 {
		t.Errorf("a registry without mirrors has %d candidates, want itself", n)
	}
}

func TestReadCA(t *testing.T) {
	p := newTestPKI(t)
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	tests := []struct {
		name    string
		path    string
		wantErr string
	}{
		{name: "a CA", path: write("ca.pem", p.caPEM)},
		{name: "a bundle", path: write("bundle.pem", append(append([]byte{}, p.caPEM...), p.clientPEM...))},
		{name: "missing", path: filepath.Join(dir, "nope.pem"), wantErr: "no such file"},
		{name: "empty", path: write("empty.pem", nil), wantErr: "no PEM certificate"},
		{name: "not PEM", path: write("der", []byte("hello")), wantErr: "no PEM certificate"},
		{name: "a key", path: write("key.pem", p.clientKeyPEM), wantErr: `"EC PRIVATE KEY" PEM block`},
		{name: "broken certificate", path: write("broken.pem", pemBlock("CERTIFICATE", []byte("junk"))), wantErr: "certificate 1"},
		{name: "a device", path: "/dev/zero", wantErr: "not a regular file"},
		{name: "a folder", path: dir, wantErr: "not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadCA(tt.path)
			if (err != nil) != (tt.wantErr != "") || err != nil && !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
	cert, key := write("client.pem", p.clientPEM), write("client-key.pem", p.clientKeyPEM)
	if _, err := ReadClientCert(cert, key); err != nil {
		t.Errorf("ReadClientCert: %v", err)
	}
	if _, err := ReadClientCert(key, cert); err == nil {
		t.Error("ReadClientCert took a key for a certificate")
	}
	if _, err := ReadClientCert(cert, filepath.Join(dir, "nope")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("ReadClientCert of a missing key: %v", err)
	}
	if _, err := NewClient(WithRegistries(map[string]RegistryConfig{"r.example.com": {CA: []byte("junk")}})); err == nil {
		t.Error("NewClient took a CA bundle without certificates")
	}
}

// TestInsecurePull: WithInsecure(Pull) reaches a plain-HTTP registry under
// a name go-containerregistry would only try https for, through every pull
// path (RemoteOptions included), and not for pushes.
func TestInsecurePull(t *testing.T) {
	reg := newTestRegistry(t)
	img := reg.push(t, "plain/app:1")
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	// A name that is not loopback: resolve it to the test registry.
	_, port, _ := net.SplitHostPort(reg.host)
	host := "registry.test:" + port
	base := &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, reg.host)
	}}
	ref, err := name.ParseReference(host + "/plain/app:1")
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, _, err := newTestClient(t, nil, WithBaseTransport(base)).Get(ctx, ref); err == nil {
		t.Fatal("a plain-HTTP registry was reached without WithInsecure")
	}
	c := newTestClient(t, nil, WithBaseTransport(base), WithInsecure(Pull))
	opts, err := c.RemoteOptions(ctx, ref.Context()) // first: no handshake cached by Get
	if err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Get(ref.Context().Digest(d.String()), opts...); err != nil {
		t.Errorf("remote.Get with RemoteOptions: %v", err)
	}
	if _, _, err := c.Get(ctx, ref); err != nil {
		t.Fatalf("Get: %v", err)
	}
	if err := c.CheckPush(ctx, []name.Reference{ref}); err == nil {
		t.Error("a push went over plain HTTP with WithInsecure(Pull) only")
	}
}
