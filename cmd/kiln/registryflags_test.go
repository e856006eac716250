package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"kiln/config"
	"kiln/manifest"
)

func TestParseRegistryCertificate(t *testing.T) {
	tests := []struct {
		name, in   string
		host, file string
		wantErr    string
	}{
		{name: "host and port", in: "127.0.0.1:5000=/etc/ca.pem", host: "127.0.0.1:5000", file: "/etc/ca.pem"},
		{name: "file with = and ,", in: "r.io=./a=b,c.pem", host: "r.io", file: "./a=b,c.pem"},
		{name: "no =", in: "r.io", wantErr: "want HOST[:PORT]=FILE"},
		{name: "no file", in: "r.io=", wantErr: "want HOST[:PORT]=FILE"},
		{name: "no host", in: "=ca.pem", wantErr: "want HOST[:PORT]=FILE"},
		{name: "scheme", in: "https://r.io=ca.pem", wantErr: "without a scheme"},
		{name: "path", in: "r.io/acme=ca.pem", wantErr: "without a path"},
		{name: "bad host", in: "r io=ca.pem", wantErr: "registries must be valid RFC 3986 URI authorities"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host, file, err := parseRegistryCertificate(tt.in)
			if !errMatches(err, tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			if err == nil && (host != tt.host || file != tt.file) {
				t.Errorf("= %q, %q; want %q, %q", host, file, tt.host, tt.file)
			}
		})
	}
}

func TestParseRegistryClientCert(t *testing.T) {
	tests := []struct {
		name, in        string
		host, cert, key string
		wantErr         string
	}{
		{name: "kaniko's form", in: "my.registry.url=/path/to/client/cert,/path/to/client/key", host: "my.registry.url", cert: "/path/to/client/cert", key: "/path/to/client/key"},
		{name: "one file", in: "r.io=cert.pem", wantErr: "want HOST[:PORT]=CERT,KEY"},
		{name: "three files", in: "r.io=a,b,c", wantErr: "want HOST[:PORT]=CERT,KEY"},
		{name: "empty key", in: "r.io=cert.pem,", wantErr: "want HOST[:PORT]=CERT,KEY"},
		{name: "no host", in: "=a,b", wantErr: "want HOST[:PORT]=CERT,KEY"},
		{name: "scheme", in: "https://r.io=a,b", wantErr: "without a scheme"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host, cert, key, err := parseRegistryClientCert(tt.in)
			if !errMatches(err, tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			if err == nil && (host != tt.host || cert != tt.cert || key != tt.key) {
				t.Errorf("= %q, %q, %q", host, cert, key)
			}
		})
	}
}

func TestParseRegistryMap(t *testing.T) {
	tests := []struct {
		name, in string
		want     [][2]string
		wantErr  string
	}{
		{name: "one", in: "index.docker.io=mirror.gcr.io", want: [][2]string{{"index.docker.io", "mirror.gcr.io"}}},
		{name: "kaniko's ; list", in: "docker.io=m1.io;quay.io=m2.io:5000/quay-proxy;", want: [][2]string{{"docker.io", "m1.io"}, {"quay.io", "m2.io:5000/quay-proxy"}}},
		{name: "no =", in: "docker.io", wantErr: "want ORIGINAL=MIRROR"},
		{name: "empty", in: ";", wantErr: "want ORIGINAL=MIRROR"},
		{name: "mirror with scheme", in: "docker.io=https://m.io", wantErr: "without a scheme"},
		{name: "original with path", in: "docker.io/library=m.io", wantErr: "without a path"},
		{name: "upper-case mirror path", in: "docker.io=m.io/Hub", wantErr: "repository can only contain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseRegistryMap(tt.in)
			if !errMatches(err, tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			if err == nil && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("= %q, want %q", got, tt.want)
			}
		})
	}
}

// TestRegistryFlags runs the flags through a command as the CLI does and
// checks what each registry gets, over build.toml's settings.
func TestRegistryFlags(t *testing.T) {
	dir := t.TempDir()
	caFile, certFile, keyFile := writeTestPKI(t, dir)
	cfg := &config.Config{File: filepath.Join(dir, "build.toml"), Registries: map[string]config.Registry{
		"docker.io":    {Mirrors: []string{"toml-mirror.io"}},
		"toml.io:8443": {CA: caFile, ClientCert: certFile, ClientKey: keyFile, SkipTLSVerify: true},
	}}
	tests := []struct {
		name    string
		args    []string
		cfg     *config.Config
		check   func(map[string]manifest.RegistryConfig) bool
		wantErr string
	}{
		{name: "nothing", check: func(m map[string]manifest.RegistryConfig) bool { return len(m) == 0 }},
		{name: "build.toml alone", cfg: cfg, check: func(m map[string]manifest.RegistryConfig) bool {
			r := m["toml.io:8443"]
			return r.CA != nil && r.ClientCert != nil && r.SkipTLSVerify && m["index.docker.io"].Mirrors[0] == "toml-mirror.io"
		}},
		{name: "per-registry flags", args: []string{"--insecure-registry", "a.io,b.io", "--skip-tls-verify-registry", "c.io",
			"--registry-certificate", "d.io=" + caFile, "--registry-client-cert", "d.io=" + certFile + "," + keyFile},
			check: func(m map[string]manifest.RegistryConfig) bool {
				return m["a.io"].Insecure && m["b.io"].Insecure && m["c.io"].SkipTLSVerify && !m["c.io"].Insecure &&
					m["d.io"].CA != nil && m["d.io"].ClientCert != nil
			}},
		{name: "mirrors before build.toml's, docker.io's alias one registry", cfg: cfg,
			args: []string{"--registry-mirror", "m1.io", "--registry-mirror", "m2.io/hub/", "--registry-map", "docker.io=m3.io;quay.io=q.io", "--registry-map", "index.docker.io=m1.io"},
			check: func(m map[string]manifest.RegistryConfig) bool {
				return reflect.DeepEqual(m["index.docker.io"].Mirrors, []string{"m1.io", "m2.io/hub", "m3.io", "toml-mirror.io"}) &&
					reflect.DeepEqual(m["quay.io"].Mirrors, []string{"q.io"}) && len(m) == 3
			}},
		{name: "missing CA", args: []string{"--registry-certificate", "d.io=" + filepath.Join(dir, "nope.pem")}, wantErr: "--registry-certificate d.io=" + filepath.Join(dir, "nope.pem") + ": stat " + filepath.Join(dir, "nope.pem") + ": no such file"},
		{name: "CA that is a key", args: []string{"--registry-certificate", "d.io=" + keyFile}, wantErr: `--registry-certificate d.io=` + keyFile + `: ` + keyFile + `: a "EC PRIVATE KEY" PEM block`},
		{name: "key and cert swapped", args: []string{"--registry-client-cert", "d.io=" + keyFile + "," + certFile}, wantErr: "--registry-client-cert d.io="},
		{name: "bad mirror", args: []string{"--registry-mirror", "https://m.io"}, wantErr: `--registry-mirror "https://m.io": want HOST[:PORT][/PATH] without a scheme`},
		{name: "bad insecure registry", args: []string{"--insecure-registry", "r.io/x"}, wantErr: `--insecure-registry "r.io/x": want HOST[:PORT] without a path`},
		{name: "bad map", args: []string{"--registry-map", "docker.io"}, wantErr: `--registry-map "docker.io": "docker.io": want ORIGINAL=MIRROR`},
		{name: "build.toml CA missing", cfg: &config.Config{File: "/x/build.toml", Registries: map[string]config.Registry{"r.io": {CA: filepath.Join(dir, "gone.pem")}}},
			wantErr: `/x/build.toml: registries."r.io".ca: stat`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got map[string]manifest.RegistryConfig
			app := &cli.App{Name: "kiln", Commands: []*cli.Command{{
				Name: "build", Flags: registryFlags(manifest.Pull | manifest.Push),
				Action: func(c *cli.Context) error {
					regs, err := configRegistries(tt.cfg)
					if err == nil {
						err = applyRegistryFlags(c, regs)
					}
					got = regs
					return err
				},
			}}}
			err := app.Run(append([]string{"kiln", "build"}, tt.args...))
			if !errMatches(err, tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			if err == nil && !tt.check(got) {
				t.Errorf("registries: %+v", got)
			}
		})
	}
}

// TestRegistryFlagsByCommand: pull-only commands have no push flags, and
// the other way round.
func TestRegistryFlagsByCommand(t *testing.T) {
	names := func(cmd *cli.Command) string {
		var out []string
		for _, f := range cmd.Flags {
			out = append(out, f.Names()[0])
		}
		return " " + strings.Join(out, " ") + " "
	}
	all := []string{"insecure", "insecure-pull", "insecure-registry", "skip-tls-verify", "skip-tls-verify-pull", "skip-tls-verify-registry",
		"registry-certificate", "registry-client-cert", "registry-mirror", "registry-map", "skip-default-registry-fallback"}
	pushOnly := map[string]bool{"insecure": true, "skip-tls-verify": true}
	pullOnly := map[string]bool{"insecure-pull": true, "skip-tls-verify-pull": true, "registry-mirror": true, "registry-map": true, "skip-default-registry-fallback": true}
	for _, tt := range []struct {
		cmd        *cli.Command
		pull, push bool
	}{
		{buildCommand(), true, true}, {buildAllCommand(), true, true}, {indexCreateCommand(), true, true},
		{warmCommand(), true, false}, {pushCommand(), false, true},
	} {
		have := names(tt.cmd)
		for _, f := range all {
			want := (tt.pull || !pullOnly[f]) && (tt.push || !pushOnly[f])
			if strings.Contains(have, " "+f+" ") != want {
				t.Errorf("kiln %s: has --%s = %v, want %v", tt.cmd.Name, f, !want, want)
			}
		}
	}
}

func errMatches(err error, want string) bool {
	if want == "" {
		return err == nil
	}
	return err != nil && strings.Contains(err.Error(), want)
}

// writeTestPKI writes a self-signed CA and a client certificate signed by
// it, with its key, as PEM files into dir.
func writeTestPKI(t *testing.T, dir string) (ca, cert, key string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	cliKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cliTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "client"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	cliDER, err := x509.CreateCertificate(rand.Reader, cliTmpl, caCert, &cliKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(cliKey)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("client.pem", "CERTIFICATE", cliDER), write("client-key.pem", "EC PRIVATE KEY", keyDER)
}
