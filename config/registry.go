package config

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// hostName is a DNS name: dot-separated labels of letters, digits and inner '-'.
var hostName = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$`)

func (v *validator) registries(raw map[string]rawRegistry) map[string]Registry {
	if raw == nil {
		return nil
	}
	out := make(map[string]Registry, len(raw))
	for _, host := range sortedKeys(raw) {
		p := keyPath("registries", host)
		if err := checkHost(host); err != nil {
			v.addf(p, "invalid registry %q: %v", host, err)
		}
		r := raw[host]
		out[host] = Registry{
			Insecure:      v.boolean(p.child("insecure"), r.Insecure),
			SkipTLSVerify: v.boolean(p.child("skip_tls_verify"), r.SkipTLSVerify),
			CA:            v.machinePath(p.child("ca"), r.CA),
			ClientCert:    v.machinePath(p.child("client_cert"), r.ClientCert),
			ClientKey:     v.machinePath(p.child("client_key"), r.ClientKey),
			Mirrors:       v.mirrors(p.child("mirrors"), r.Mirrors),
		}
		if cert, key := out[host].ClientCert, out[host].ClientKey; (cert == "") != (key == "") {
			if cert == "" { // said where the one that is set stands
				v.addf(p.child("client_key"), "client_key without client_cert: set both or neither")
			} else {
				v.addf(p.child("client_cert"), "client_cert without client_key: set both or neither")
			}
		}
	}
	return out
}

// machinePath is a path on this machine, made absolute; "" if unset.
func (v *validator) machinePath(p path, x value) string {
	if s, ok := v.nonEmpty(p, x); ok {
		return v.abs(s)
	}
	return ""
}

func (v *validator) mirrors(p path, x value) []string {
	list, _ := v.strs(p, x)
	seen := map[string]int{}
	for i, m := range list {
		if err := checkMirror(m); err != nil {
			v.addf(p.at(i), "invalid mirror %q: %v", m, err)
		} else if j, dup := seen[m]; dup {
			v.addf(p.at(i), "duplicate mirror %q (also %s)", m, p.at(j))
		}
		seen[m] = i
	}
	return list
}

// checkHost accepts a registry's host[:port] and nothing more.
func checkHost(host string) error {
	if host == "" {
		return fmt.Errorf("empty host")
	}
	if strings.Contains(host, "://") {
		return fmt.Errorf("want host[:port] without a scheme")
	}
	if _, err := name.NewRegistry(host); err != nil {
		return err
	}
	u, err := url.Parse("//" + host)
	if err != nil || strings.HasSuffix(host, ":") {
		return fmt.Errorf("want host[:port]")
	}
	if h := u.Hostname(); !hostName.MatchString(h) && net.ParseIP(h) == nil {
		return fmt.Errorf("invalid host name %q", h)
	}
	return nil
}

// checkMirror accepts host[:port] with an optional /path prefix.
func checkMirror(m string) error {
	host, prefix, hasPath := strings.Cut(m, "/")
	if err := checkHost(host); err != nil {
		return err
	}
	if !hasPath {
		return nil
	}
	if prefix == "" || strings.HasSuffix(prefix, "/") {
		return fmt.Errorf("empty path component")
	}
	_, err := name.NewRepository(m)
	return err
}
