package platform

import (
	"errors"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr string
	}{
		{name: "full", in: "linux/amd64", want: "linux/amd64"},
		{name: "bare arch means linux", in: "arm64", want: "linux/arm64"},
		{name: "arm64 v8 is arm64", in: "linux/arm64/v8", want: "linux/arm64"},
		{name: "aarch64 alias", in: "linux/aarch64", want: "linux/arm64"},
		{name: "x86_64 alias", in: "x86_64", want: "linux/amd64"},
		{name: "amd64 v1 dropped", in: "linux/amd64/v1", want: "linux/amd64"},
		{name: "amd64 v3 kept", in: "linux/amd64/v3", want: "linux/amd64/v3"},
		{name: "arm defaults to v7", in: "linux/arm", want: "linux/arm/v7"},
		{name: "arm v6", in: "linux/arm/v6", want: "linux/arm/v6"},
		{name: "armhf", in: "armhf", want: "linux/arm/v7"},
		{name: "upper case", in: "Linux/AMD64", want: "linux/amd64"},
		{name: "windows", in: "windows/amd64", want: "windows/amd64"},
		{name: "s390x", in: "linux/s390x", want: "linux/s390x"},
		{name: "riscv64", in: "linux/riscv64", want: "linux/riscv64"},
		{name: "empty", in: "", wantErr: "empty"},
		{name: "typo arch", in: "linux/amd46", wantErr: "amd46"},
		{name: "typo os", in: "linxu/amd64", wantErr: "linxu"},
		{name: "os only", in: "linux", wantErr: "needs an architecture"},
		{name: "too many parts", in: "linux/arm/v7/extra", wantErr: "more than"},
		{name: "empty part", in: "linux//amd64", wantErr: "empty component"},
		{name: "spaces", in: " linux/amd64", wantErr: "spaces"},
		{name: "bad arm variant", in: "linux/arm/v9", wantErr: "variant"},
		{name: "bad amd64 variant", in: "linux/amd64/v7", wantErr: "variant"},
		{name: "wildcard", in: "linux/*", wantErr: "wildcard"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrInvalid) {
					t.Fatalf("Parse(%q) = %v, %v; want error containing %q", tt.in, p, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := Format(p); got != tt.want {
				t.Errorf("Parse(%q) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseAllDuplicates(t *testing.T) {
	_, err := ParseAll([]string{"arm64", "linux/amd64", "linux/arm64/v8"})
	if !errors.Is(err, ErrDuplicate) || !strings.Contains(err.Error(), `"arm64"`) || !strings.Contains(err.Error(), `"linux/arm64/v8"`) {
		t.Fatalf("err = %v", err)
	}
	ps, err := ParseAll([]string{"linux/amd64", "linux/arm/v6", "linux/arm/v7"})
	if err != nil || len(ps) != 3 {
		t.Fatalf("ParseAll = %v, %v", ps, err)
	}
}

func TestCanExecute(t *testing.T) {
	tests := []struct {
		host, p string
		want    bool
	}{
		{"linux/amd64", "linux/amd64", true},
		{"linux/amd64", "linux/386", true},
		{"linux/amd64", "linux/arm64", false},
		{"linux/amd64/v3", "linux/amd64/v2", true},
		{"linux/amd64", "linux/amd64/v3", false},
		{"linux/arm64", "linux/arm64/v8", true},
		{"linux/arm64", "linux/arm/v7", false},
		{"linux/arm64", "linux/amd64", false},
		{"linux/arm/v7", "linux/arm/v6", true},
		{"linux/amd64", "windows/amd64", false},
	}
	for _, tt := range tests {
		if got := CanExecute(MustParse(tt.host), MustParse(tt.p)); got != tt.want {
			t.Errorf("CanExecute(%s, %s) = %v, want %v", tt.host, tt.p, got, tt.want)
		}
	}
	if !CanExecute(Host(), Host()) {
		t.Error("the host cannot execute its own platform")
	}
}

func TestV1RoundTrip(t *testing.T) {
	for _, s := range []string{"linux/amd64", "linux/arm64", "linux/arm/v7", "windows/amd64"} {
		p := MustParse(s)
		if got := FromV1(ToV1(p)); !Equal(got, p) {
			t.Errorf("round trip of %s gave %s", s, Format(got))
		}
	}
	if got := FromV1(&v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}); Format(got) != "linux/arm64" {
		t.Errorf("FromV1 arm64/v8 = %s", Format(got))
	}
	if z := FromV1(nil); z.OS != "" || z.Architecture != "" {
		t.Error("FromV1(nil) not zero")
	}
}

func desc(p string) v1.Descriptor {
	if p == "" {
		return v1.Descriptor{}
	}
	parts := strings.Split(p, "/")
	vp := &v1.Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) > 2 {
		vp.Variant = parts[2]
	}
	return v1.Descriptor{Platform: vp, Size: int64(len(p))}
}

func TestSelect(t *testing.T) {
	index := []v1.Descriptor{
		desc("linux/amd64"), desc("linux/arm64/v8"), desc("linux/arm/v6"), desc("unknown/unknown"), desc(""),
	}
	tests := []struct {
		want    string
		got     string
		wantErr bool
	}{
		{want: "linux/amd64", got: "linux/amd64"},
		{want: "arm64", got: "linux/arm64/v8"},
		{want: "linux/arm/v7", got: "linux/arm/v6"}, // v7 runs v6 binaries
		{want: "linux/amd64/v3", got: "linux/amd64"},
		{want: "linux/s390x", wantErr: true},
		{want: "linux/386", wantErr: true}, // never an amd64 image for 386
	}
	for _, tt := range tests {
		d, err := Select(MustParse(tt.want), index)
		if tt.wantErr {
			if !errors.Is(err, ErrNoMatch) || !strings.Contains(err.Error(), "linux/amd64 linux/arm64 linux/arm/v6") {
				t.Errorf("Select(%s) = %v, %v; want ErrNoMatch listing the platforms", tt.want, d.Platform, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Select(%s): %v", tt.want, err)
			continue
		}
		if got := d.Platform.Architecture + "/" + d.Platform.Variant; !strings.HasPrefix(tt.got, "linux/"+d.Platform.Architecture) {
			t.Errorf("Select(%s) = %s, want %s", tt.want, got, tt.got)
		}
	}
}
