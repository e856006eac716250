// Package platform names the machines kiln builds for: it parses, normalises and
// formats platform strings, tells which platforms this machine runs natively, and
// picks a platform's entry out of an image index.
//
// It wraps github.com/containerd/platforms with the rules a container image
// builder wants: a bare architecture means Linux (an image's OS is never the
// laptop's), every value is normalised (arm64 ≡ linux/arm64/v8, aarch64 ≡ arm64,
// x86_64 ≡ amd64, arm ≡ arm/v7), and errors name the string that was wrong.
//
//	p, err := platform.Parse("arm64")       // linux/arm64
//	platform.Format(p)                      // "linux/arm64"
//	platform.CanExecute(p)                  // true on an arm64 host
//	desc, err := platform.Select(p, idx.Manifests)
package platform

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	cplatforms "github.com/containerd/platforms"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	specs "github.com/opencontainers/image-spec/specs-go/v1"
)

// ErrInvalid is wrapped by every parse error.
var ErrInvalid = errors.New("invalid platform")

// ErrNoMatch is returned by Select when no descriptor fits the platform.
var ErrNoMatch = errors.New("no matching platform")

// Parse reads a platform specifier such as "linux/arm64", "linux/arm/v7",
// "arm64" or "amd64" and returns it normalised. A specifier that is only an
// architecture means Linux. Unknown operating systems and architectures are
// errors: a typo in a platform list must not silently pull nothing.
func Parse(s string) (specs.Platform, error) {
	raw := strings.TrimSpace(s)
	if raw == "" {
		return specs.Platform{}, fmt.Errorf("%w: empty string", ErrInvalid)
	}
	if raw != s {
		return specs.Platform{}, fmt.Errorf("%w %q: surrounding spaces", ErrInvalid, s)
	}
	if strings.ContainsAny(s, " \t\n*") {
		return specs.Platform{}, fmt.Errorf("%w %q: contains a space or wildcard", ErrInvalid, s)
	}
	parts := strings.Split(s, "/")
	for _, part := range parts {
		if part == "" {
			return specs.Platform{}, fmt.Errorf("%w %q: empty component", ErrInvalid, s)
		}
	}
	if len(parts) > 3 {
		return specs.Platform{}, fmt.Errorf("%w %q: more than os/arch/variant", ErrInvalid, s)
	}
	spec := s
	if len(parts) == 1 && !knownOS(strings.ToLower(parts[0])) {
		// A bare architecture: containerd would fill in the host's OS, which on
		// a Mac laptop is darwin. Images are Linux unless said otherwise.
		spec = "linux/" + s
	}
	p, err := cplatforms.Parse(spec)
	if err != nil {
		return specs.Platform{}, fmt.Errorf("%w %q: %v", ErrInvalid, s, unwrapMessage(err))
	}
	if !knownOS(p.OS) {
		return specs.Platform{}, fmt.Errorf("%w %q: unknown operating system %q", ErrInvalid, s, p.OS)
	}
	if !knownArch(p.Architecture) {
		return specs.Platform{}, fmt.Errorf("%w %q: unknown architecture %q", ErrInvalid, s, p.Architecture)
	}
	if len(parts) == 1 && knownOS(strings.ToLower(parts[0])) {
		return specs.Platform{}, fmt.Errorf("%w %q: an operating system needs an architecture, e.g. %s/amd64", ErrInvalid, s, parts[0])
	}
	if err := checkVariant(p); err != nil {
		return specs.Platform{}, fmt.Errorf("%w %q: %v", ErrInvalid, s, err)
	}
	return Normalize(p), nil
}

// MustParse is Parse for constants in code and tests; it panics on error.
func MustParse(s string) specs.Platform {
	p, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return p
}

// ParseAll parses each specifier; duplicates after normalisation are an error
// naming both spellings.
func ParseAll(ss []string) ([]specs.Platform, error) {
	out := make([]specs.Platform, 0, len(ss))
	seen := map[string]string{}
	for _, s := range ss {
		p, err := Parse(s)
		if err != nil {
			return nil, err
		}
		key := Format(p)
		if prev, dup := seen[key]; dup {
			return nil, fmt.Errorf("%w: %q and %q are both %s", ErrDuplicate, prev, s, key)
		}
		seen[key] = s
		out = append(out, p)
	}
	return out, nil
}

// ErrDuplicate is wrapped by ParseAll when two specifiers name one platform.
var ErrDuplicate = errors.New("duplicate platform")

// Normalize returns p in canonical form: lower case, aliases resolved, the
// default variant of an architecture dropped (arm64/v8 → arm64, amd64/v1 → amd64)
// and the conventional one added where it is implied (arm → arm/v7).
func Normalize(p specs.Platform) specs.Platform {
	if p.OS == "" {
		p.OS = "linux"
	}
	n := cplatforms.Normalize(p)
	if len(n.OSFeatures) == 0 {
		n.OSFeatures = nil
	}
	return n
}

// Format returns "os/arch[/variant]" for p after normalisation.
func Format(p specs.Platform) string {
	return cplatforms.Format(Normalize(p))
}

// FormatAll formats a list, comma-separated, for messages.
func FormatAll(ps []specs.Platform) string {
	ss := make([]string, len(ps))
	for i, p := range ps {
		ss[i] = Format(p)
	}
	return strings.Join(ss, ",")
}

// Equal reports whether a and b are the same platform after normalisation.
func Equal(a, b specs.Platform) bool {
	return Format(a) == Format(b)
}

// Serves reports whether an image made for have may be used where want is
// asked for: the same platform, or a compatible variant of the same OS and
// architecture in containerd's sense (arm/v6 for arm/v7, amd64 for
// amd64/v3). A config that names no architecture serves nothing.
func Serves(have, want specs.Platform) bool {
	have, want = Normalize(have), Normalize(want)
	if have.OS == "" || have.Architecture == "" {
		return false
	}
	if Equal(have, want) {
		return true
	}
	return have.OS == want.OS && have.Architecture == want.Architecture && cplatforms.Only(want).Match(have)
}

// Host returns the platform of the machine kiln runs on, always as Linux: on
// other systems kiln can only cross-build, never execute.
func Host() specs.Platform {
	p := cplatforms.DefaultSpec()
	p.OS = "linux"
	return Normalize(p)
}

// CanExecute reports whether a binary built for p runs natively (no emulator)
// on a host of platform host: same OS and architecture with a variant the host
// supports, or 386 on amd64. 32-bit Arm on arm64 is not assumed: many arm64
// server CPUs have dropped AArch32.
func CanExecute(host, p specs.Platform) bool {
	host, p = Normalize(host), Normalize(p)
	if host.OS != p.OS {
		return false
	}
	if host.Architecture == "amd64" && p.Architecture == "386" {
		return true
	}
	if host.Architecture != p.Architecture {
		return false
	}
	return cplatforms.Only(host).Match(p)
}

// ToV1 converts to go-containerregistry's platform type.
func ToV1(p specs.Platform) *v1.Platform {
	p = Normalize(p)
	return &v1.Platform{
		OS:           p.OS,
		Architecture: p.Architecture,
		Variant:      p.Variant,
		OSVersion:    p.OSVersion,
		OSFeatures:   append([]string(nil), p.OSFeatures...),
	}
}

// FromV1 converts from go-containerregistry's platform type; nil gives the
// zero platform.
func FromV1(p *v1.Platform) specs.Platform {
	if p == nil {
		return specs.Platform{}
	}
	return Normalize(specs.Platform{
		OS:           p.OS,
		Architecture: p.Architecture,
		Variant:      p.Variant,
		OSVersion:    p.OSVersion,
		OSFeatures:   append([]string(nil), p.OSFeatures...),
	})
}

// Select picks the descriptor of an image index that serves want. An exact
// match (after normalisation) wins; otherwise the best compatible one in
// containerd's order (arm/v7 may use arm/v6, amd64/v3 may use amd64). Entries
// without a platform, and attestation manifests (unknown/unknown), never match.
func Select(want specs.Platform, descs []v1.Descriptor) (v1.Descriptor, error) {
	want = Normalize(want)
	exact := cplatforms.NewMatcher(want)
	var compatible []int
	only := cplatforms.Only(want)
	for i, d := range descs {
		if d.Platform == nil || d.Platform.OS == "unknown" || d.Platform.Architecture == "unknown" {
			continue
		}
		have := FromV1(d.Platform)
		if exact.Match(have) {
			return d, nil
		}
		if Serves(have, want) {
			compatible = append(compatible, i)
		}
	}
	if len(compatible) == 0 {
		return v1.Descriptor{}, fmt.Errorf("%w for %s among [%s]", ErrNoMatch, Format(want), listPlatforms(descs))
	}
	sort.SliceStable(compatible, func(a, b int) bool {
		return only.Less(FromV1(descs[compatible[a]].Platform), FromV1(descs[compatible[b]].Platform))
	})
	return descs[compatible[0]], nil
}

func listPlatforms(descs []v1.Descriptor) string {
	var ss []string
	for _, d := range descs {
		if d.Platform == nil || d.Platform.OS == "unknown" {
			continue
		}
		ss = append(ss, Format(FromV1(d.Platform)))
	}
	return strings.Join(ss, " ")
}

func knownOS(os string) bool {
	switch os {
	case "aix", "android", "darwin", "dragonfly", "freebsd", "hurd", "illumos", "ios", "js",
		"linux", "nacl", "netbsd", "openbsd", "plan9", "solaris", "windows", "zos", "wasip1":
		return true
	}
	return false
}

func knownArch(arch string) bool {
	switch arch {
	case "386", "amd64", "amd64p32", "arm", "armbe", "arm64", "arm64be", "ppc64", "ppc64le",
		"loong64", "mips", "mipsle", "mips64", "mips64le", "mips64p32", "mips64p32le",
		"ppc", "riscv", "riscv64", "s390", "s390x", "sparc", "sparc64", "wasm":
		return true
	}
	return false
}

func checkVariant(p specs.Platform) error {
	if p.Variant == "" {
		return nil
	}
	switch p.Architecture {
	case "arm":
		switch p.Variant {
		case "v5", "v6", "v7", "v8":
			return nil
		}
	case "arm64":
		if strings.HasPrefix(p.Variant, "v8") || strings.HasPrefix(p.Variant, "v9") {
			return nil
		}
	case "amd64":
		switch p.Variant {
		case "v1", "v2", "v3", "v4":
			return nil
		}
	case "riscv64", "ppc64le", "ppc64", "s390x", "386", "loong64":
		// Variants exist in the wild for these (rva22u64, power9, ...); accept
		// anything made of letters and digits.
		for _, r := range p.Variant {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.') {
				return fmt.Errorf("bad variant %q", p.Variant)
			}
		}
		return nil
	}
	return fmt.Errorf("unknown variant %q for %s", p.Variant, p.Architecture)
}

// unwrapMessage trims containerd's wrapped sentinel off the end of its message.
func unwrapMessage(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i > 0 {
		return msg[:i]
	}
	return msg
}
