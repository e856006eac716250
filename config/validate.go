package config

import (
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	specs "github.com/opencontainers/image-spec/specs-go/v1"

	"kiln/platform"
)

const maxJobs = 256

// cache fills in defaults for what [cache] leaves out.
func (v *validator) cache(raw rawCache) Cache {
	c := Cache{MaxAge: DefaultMaxAge, Jobs: DefaultJobs}
	p := keyPath("cache")
	if dir, ok := v.nonEmpty(p.child("dir"), raw.Dir); ok {
		c.Dir = v.abs(dir)
	}
	if s, ok := v.str(p.child("max_age"), raw.MaxAge); ok {
		c.MaxAge = v.duration(p.child("max_age"), s)
	}
	if n, ok := v.integer(p.child("jobs"), raw.Jobs); ok {
		if n < 1 || n > maxJobs {
			v.addf(p.child("jobs"), "%d is out of range 1..%d", n, maxJobs)
		} else {
			c.Jobs = int(n)
		}
	}
	c.Layers = v.boolean(p.child("layers"), raw.Layers)
	if s, ok := v.nonEmpty(p.child("layers_repo"), raw.LayersRepo); ok {
		if _, err := name.NewRepository(s); err != nil {
			v.addf(p.child("layers_repo"), "invalid repository %q: %v", s, err)
		} else {
			c.LayersRepo = s
		}
	}
	if s, ok := v.str(p.child("layers_ttl"), raw.LayersTTL); ok {
		c.LayersTTL = v.duration(p.child("layers_ttl"), s)
	}
	return c
}

// duration parses a positive Go duration.
func (v *validator) duration(p path, s string) time.Duration {
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		v.addf(p, `invalid duration %q: want Go syntax such as "24h" or "90m"`, s)
	case d <= 0:
		v.addf(p, "duration %q must be positive", s)
	default:
		return d
	}
	return DefaultMaxAge
}

// warm keeps Platforms nil when unset: the caller takes every image's.
func (v *validator) warm(raw rawWarm) Warm {
	p := keyPath("warm", "platforms")
	plats, ok := v.platforms(p, raw.Platforms)
	if ok && len(plats) == 0 {
		v.addf(p, "must not be empty: leave it out to warm every image's platforms")
	}
	return Warm{Platforms: plats, Extra: v.extra(keyPath("warm", "extra"), raw.Extra)}
}

// extra checks each is an image reference, named once.
func (v *validator) extra(p path, x value) []string {
	list, _ := v.strs(p, x)
	seen := map[string]int{}
	for i, s := range list {
		if strings.Contains(s, "://") {
			v.addf(p.at(i), `invalid image reference %q: no scheme; for plain HTTP set insecure in [registries."HOST"]`, s)
			continue
		}
		ref, err := name.ParseReference(s)
		if err != nil {
			v.add(p.at(i), err, "invalid image reference %q: %v", s, err)
			continue
		}
		if j, dup := seen[ref.Name()]; dup {
			v.addf(p.at(i), "%q is the same image as %s", s, p.at(j))
		}
		seen[ref.Name()] = i
	}
	return list
}

// platforms parses a list of platforms; two spellings of one platform are an
// error naming both. ok is false if the list is unset or anything in it is
// wrong, so that indexes into the list stay true.
func (v *validator) platforms(p path, x value) ([]specs.Platform, bool) {
	list, ok := v.strs(p, x)
	if !ok {
		return nil, false
	}
	out := make([]specs.Platform, len(list))
	seen := map[string]int{}
	for i, s := range list {
		plat, err := platform.Parse(s)
		if err != nil {
			v.addErr(p.at(i), err)
			ok = false
			continue
		}
		key := platform.Format(plat)
		if j, dup := seen[key]; dup {
			v.add(p.at(i), platform.ErrDuplicate, "duplicate platform: %q (%s) and %q are both %s", list[j], p.at(j), s, key)
			ok = false
		}
		seen[key], out[i] = i, plat
	}
	if !ok {
		return nil, false
	}
	return out, true
}

func (v *validator) runner(raw rawRunner) Runner {
	r := Runner{Kind: "local"}
	p := keyPath("runner", "kind")
	if kind, ok := v.str(p, raw.Kind); ok {
		switch kind {
		case "local", "kubernetes":
			r.Kind = kind
		default:
			v.addf(p, `unknown runner %q: want "local" or "kubernetes"`, kind)
		}
	}
	r.Kubernetes = v.kubernetes(raw.Kubernetes, r.Kind)
	return r
}
