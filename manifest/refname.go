package manifest

import (
	"regexp"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// AnnotationPlatformOf marks an index.json entry of an output layout that
// names one platform's image of another entry: its value is that entry's
// reference name. Writing that name again replaces every such entry.
const AnnotationPlatformOf = "io.kiln.layout.platform-of"

// refNameRE is the grammar of org.opencontainers.image.ref.name in an OCI
// image layout's index.json (image-spec, image-layout.md).
var refNameRE = regexp.MustCompile(`^[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*(?:/[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*)*$`)

// ValidRefName says whether s may be an OCI layout's reference name.
func ValidRefName(s string) bool { return refNameRE.MatchString(s) }

// PlatformRefName is the name an output layout files one platform's image
// under, next to refName (the index's, or the image's, own name):
//
//	hello + linux/amd64     → hello-linux-amd64
//	hello + linux/arm64/v8  → hello-linux-arm64-v8
//	reg.example.com/app:1.0 → reg.example.com/app:1.0-linux-amd64
//
// An os.version is appended after the variant. The result always follows
// the ref.name grammar (umoci refuses other names): a run of characters the
// grammar does not allow where they are becomes "-".
func PlatformRefName(refName string, p v1.Platform) string {
	parts := []string{refNamePart(refName)}
	for _, f := range []string{p.OS, p.Architecture, p.Variant, p.OSVersion} {
		parts = append(parts, refNamePart(strings.ReplaceAll(f, "/", "-"))) // one component: no "/" of its own
	}
	return strings.Join(slices.DeleteFunc(parts, func(s string) bool { return s == "" }), "-")
}

// refNamePart makes s follow the ref.name grammar: alphanumeric runs joined
// by the separators it already had where those are allowed ("/", one of
// "-._:@+", or "--"), else by "-"; nothing before the first or after the
// last alphanumeric.
func refNamePart(s string) string {
	var b strings.Builder
	var sep strings.Builder
	for _, r := range s {
		if isAlnum(r) {
			if sep.Len() > 0 && b.Len() > 0 {
				b.WriteString(separator(sep.String()))
			}
			sep.Reset()
			b.WriteRune(r)
			continue
		}
		sep.WriteRune(r)
	}
	return b.String()
}

// separator is what a run of non-alphanumeric characters between two
// alphanumeric ones becomes.
func separator(run string) string {
	switch {
	case strings.Contains(run, "/"):
		return "/"
	case run == "--", len(run) == 1 && strings.ContainsAny(run, "-._:@+"):
		return run
	}
	return "-"
}

func isAlnum(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
}

// platformEntries are the index.json entries naming each platform image of
// an entry filed as refName: children are the image descriptors, with their
// platforms. Children without a platform, or for the "unknown" one
// (BuildKit's attestation manifests), get none. A name two children would
// share is given to the first; the others' end in their digest.
func platformEntries(refName string, children []v1.Descriptor) []v1.Descriptor {
	if refName == "" {
		return nil
	}
	var out []v1.Descriptor
	seen := map[string]bool{refName: true}
	for _, d := range children {
		if d.Platform == nil || d.Platform.OS == "" || d.Platform.OS == "unknown" || !d.MediaType.IsImage() {
			continue
		}
		n := PlatformRefName(refName, *d.Platform)
		if seen[n] {
			n += "-" + d.Digest.Hex[:min(12, len(d.Digest.Hex))]
		}
		seen[n] = true
		out = append(out, v1.Descriptor{
			MediaType: d.MediaType, Size: d.Size, Digest: d.Digest, Platform: d.Platform,
			Annotations: map[string]string{AnnotationRefName: n, AnnotationPlatformOf: refName},
		})
	}
	return out
}

// PlatformRefNames lists the names the layout files refName's platform
// images under, in index.json's order.
func (l *Layout) PlatformRefNames(refName string) ([]string, error) {
	idx, err := l.ReadIndex()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, d := range idx.Manifests {
		if d.Annotations[AnnotationPlatformOf] == refName && refName != "" {
			out = append(out, d.Annotations[AnnotationRefName])
		}
	}
	return out, nil
}
