package config

import (
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	specs "github.com/opencontainers/image-spec/specs-go/v1"

	"kiln/platform"
)

var (
	imageName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)
	argName   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	stageName = regexp.MustCompile(`^[a-z][a-z0-9_.-]*$`) // buildkit's, after lower-casing
)

func (v *validator) images(raw map[string]rawImage) map[string]Image {
	if raw == nil {
		return nil
	}
	out := make(map[string]Image, len(raw))
	for _, n := range sortedKeys(raw) {
		out[n] = v.image(n, raw[n])
	}
	return out
}

func (v *validator) image(n string, raw rawImage) Image {
	p := keyPath("images", n)
	if !imageName.MatchString(n) {
		v.addf(p, "invalid image name %q: want lower-case letters, digits, '.', '_' and '-', starting with a letter or digit", n)
	}
	img := Image{
		Name:       n,
		Context:    v.context(p.child("context"), raw.Context),
		Dockerfile: v.dockerfile(p.child("dockerfile"), raw.Dockerfile),
		Target:     v.target(p.child("target"), raw.Target),
		Tags:       v.tags(p.child("tags"), raw.Tags),
		Output:     v.output(p.child("output"), raw.Output),
		Args:       v.strMap(p.child("args"), raw.Args, checkArgName),
		Labels:     v.strMap(p.child("labels"), raw.Labels, checkLabelName),
	}
	img.Platforms, img.OptionalPlatforms = v.imagePlatforms(p, raw)
	if isEmptyList(raw.Tags) && !raw.Output.set {
		v.addf(p, "needs tags or output: nowhere to put the built image")
	}
	return img
}

func (v *validator) imagePlatforms(p path, raw rawImage) (required, optional []specs.Platform) {
	rp, op := p.child("platforms"), p.child("optional_platforms")
	required, ok := v.platforms(rp, raw.Platforms)
	switch {
	case !raw.Platforms.set:
		v.addf(rp, `required: the platforms to build, e.g. ["linux/amd64", "linux/arm64"]`)
	case ok && len(required) == 0:
		v.addf(rp, "must not be empty")
	}
	optional, ok2 := v.platforms(op, raw.OptionalPlatforms)
	if !ok || !ok2 {
		return required, optional
	}
	for i, o := range optional {
		for j, r := range required {
			if platform.Equal(o, r) {
				v.addf(op.at(i), "%s is also in %s: a platform is either required or optional", platform.Format(o), rp.at(j))
			}
		}
	}
	return required, optional
}

// context keeps "-" and git URLs as written and makes a local path absolute.
func (v *validator) context(p path, x value) string {
	s, ok := v.nonEmpty(p, x)
	switch {
	case !ok:
		if !x.set {
			v.addf(p, `required: a folder, a tar or tar.gz file, "-" for stdin, or a git URL`)
		}
		return ""
	case s == "-":
		return s
	case isGitURL(s):
		if err := checkGitURL(s); err != nil {
			v.addf(p, "invalid git URL %q: %v", s, err)
		}
		return s
	case strings.Contains(s, "://"):
		v.addf(p, "unsupported context URL %q: only git repositories (ending in .git, or with .git#ref) can be fetched", s)
		return s
	}
	return v.projectPath(p, s, s)
}

// isGitURL tells a git repository from a local path the way docker build does.
func isGitURL(s string) bool {
	switch {
	case strings.HasPrefix(s, "git://"), strings.HasPrefix(s, "ssh://"):
		return true
	case strings.HasPrefix(s, "git@"):
		return true
	case strings.HasPrefix(s, "https://"), strings.HasPrefix(s, "http://"):
		return strings.HasSuffix(s, ".git") || strings.Contains(s, ".git#")
	}
	return false
}

func checkGitURL(s string) error {
	repo, _, _ := strings.Cut(s, "#")
	if rest, ok := strings.CutPrefix(repo, "git@"); ok {
		host, path, found := strings.Cut(rest, ":")
		if !found || host == "" || path == "" {
			return fmt.Errorf("want git@HOST:PATH")
		}
		return nil
	}
	u, err := url.Parse(repo)
	if err != nil {
		return err
	}
	if u.Host == "" || strings.Trim(u.Path, "/") == "" {
		return fmt.Errorf("want a host and a repository path")
	}
	return nil
}

func (v *validator) dockerfile(p path, x value) string {
	s, ok := v.nonEmpty(p, x)
	if !ok {
		return "Dockerfile"
	}
	if !filepath.IsLocal(s) {
		v.addf(p, "%q must be a relative path inside the context", s)
	}
	return s
}

func (v *validator) target(p path, x value) string {
	s, ok := v.nonEmpty(p, x)
	if ok && !stageName.MatchString(strings.ToLower(s)) {
		v.addf(p, "invalid stage name %q: want a letter, then letters, digits, '-', '_' or '.'", s)
	}
	return s
}

// tags checks each is a tag reference, not a digest, and named once.
func (v *validator) tags(p path, x value) []string {
	list, _ := v.strs(p, x)
	seen := map[string]int{}
	for i, s := range list {
		if strings.Contains(s, "@") {
			v.addf(p.at(i), "%q names a digest: a build pushes to tags", s)
			continue
		}
		tag, err := name.NewTag(s)
		if err != nil {
			v.add(p.at(i), err, "invalid tag %q: %v", s, err)
			continue
		}
		if j, dup := seen[tag.Name()]; dup {
			v.addf(p.at(i), "duplicate tag: %q (%s) and %q are both %s", list[j], p.at(j), s, tag.Name())
			continue
		}
		seen[tag.Name()] = i
	}
	return list
}

// output checks "oci:DIR" or "tar:FILE" and makes the path absolute.
func (v *validator) output(p path, x value) string {
	s, ok := v.nonEmpty(p, x)
	if !ok {
		return ""
	}
	kind, dest, _ := strings.Cut(s, ":")
	switch {
	case kind != "oci" && kind != "tar":
		v.addf(p, `invalid output %q: want "oci:DIR" or "tar:FILE"`, s)
		return s
	case dest == "":
		v.addf(p, "invalid output %q: no path after %q", s, kind+":")
		return s
	}
	return kind + ":" + v.projectPath(p, s, dest)
}

func checkArgName(k string) string {
	if !argName.MatchString(k) {
		return fmt.Sprintf("invalid build argument name %q: want letters, digits and '_', not starting with a digit", k)
	}
	return ""
}

func checkLabelName(k string) string {
	if k == "" {
		return "empty label name"
	}
	return ""
}

// isEmptyList reports whether x is unset or an empty array.
func isEmptyList(x value) bool {
	list, ok := x.v.([]any)
	return !x.set || ok && len(list) == 0
}
