package archcheck

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"strings"
	"testing"

	"kiln/platform"
)

func TestCheckLayerNativeBinaries(t *testing.T) {
	t.Parallel()
	for _, arch := range testArches {
		t.Run(arch, func(t *testing.T) {
			want := platform.MustParse("linux/" + arch)
			layer := layerTar(t, dir("usr/"), dir("usr/bin/"), exe("usr/bin/hello", bin(t, arch)))
			rep, err := CheckLayer(context.Background(), bytes.NewReader(layer), want, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Checked != 1 || len(rep.Findings) != 0 || rep.Err() != nil {
				t.Errorf("report %+v, Err %v", rep, rep.Err())
			}
		})
	}
}

func TestCheckLayer(t *testing.T) {
	t.Parallel()
	amd64, arm64, arm, i386 := bin(t, "amd64"), bin(t, "arm64"), bin(t, "arm"), bin(t, "386")
	x86Object := elfHeader(elf.ELFCLASS64, elf.ELFDATA2LSB, elf.ET_REL, elf.EM_X86_64, 0)
	tests := []struct {
		name    string
		want    string
		opts    Options
		layer   []entry
		checked int
		skipped int
		notELF  int
		found   []string // "path got"
	}{
		{
			name:    "matching binary passes",
			want:    "linux/arm64",
			layer:   []entry{exe("usr/bin/app", arm64)},
			checked: 1,
		},
		{
			name:    "x86-64 binary in an arm64 image",
			want:    "linux/arm64",
			layer:   []entry{exe("usr/bin/ok", arm64), exe("./usr/local/bin/app", amd64)},
			checked: 2,
			found:   []string{"/usr/local/bin/app linux/amd64"},
		},
		{
			name:    "arm64 binary in an amd64 image",
			want:    "linux/amd64",
			layer:   []entry{exe("/app", arm64)},
			checked: 1,
			found:   []string{"/app linux/arm64"},
		},
		{
			name:    "386 binary in an amd64 image runs natively",
			want:    "linux/amd64",
			layer:   []entry{exe("usr/bin/app32", i386)},
			checked: 1,
		},
		{
			name:    "32-bit arm binary in an arm64 image",
			want:    "linux/arm64",
			layer:   []entry{exe("usr/bin/app32", arm)},
			checked: 1,
			found:   []string{"/usr/bin/app32 linux/arm"},
		},
		{
			name:    "any arm variant for arm",
			want:    "linux/arm/v6",
			layer:   []entry{exe("usr/bin/app", arm)},
			checked: 1,
		},
		{
			name: "scripts and data are not ELF",
			want: "linux/arm64",
			layer: []entry{
				exe("usr/bin/run.sh", []byte("#!/bin/sh\nexec /usr/bin/app \"$@\"\n")),
				exe("usr/bin/empty", nil),
				exe("usr/bin/blob", bytes.Repeat([]byte{0}, 4096)),
				exe("usr/lib/x86.o", x86Object),
			},
			notELF: 4,
		},
		{
			name:  "non-executable files are not candidates",
			want:  "linux/arm64",
			layer: []entry{file("usr/share/app/amd64-binary", amd64), file("etc/app.conf", []byte("x=1\n"))},
		},
		{
			name: "shared objects are checked whatever their mode",
			want: "linux/arm64",
			layer: []entry{
				file("usr/lib/libfoo.so", amd64),
				file("usr/lib/libfoo.so.1.2.3", amd64),
				file("usr/lib/libbar.so.1", arm64),
				file("usr/lib/libfoo.sobad", amd64), // not a shared object name
			},
			checked: 3,
			found:   []string{"/usr/lib/libfoo.so linux/amd64", "/usr/lib/libfoo.so.1.2.3 linux/amd64"},
		},
		{
			name: "truncated ELF header is skipped",
			want: "linux/arm64",
			layer: []entry{
				exe("usr/bin/short", amd64[:40]),
				exe("usr/bin/magic", amd64[:4]),
			},
			notELF: 2,
		},
		{
			name: "Max samples the first files of the layer",
			want: "linux/arm64",
			opts: Options{Max: 2},
			layer: []entry{
				exe("bin/a", amd64), exe("bin/b", arm64),
				exe("bin/c", amd64), exe("bin/d", amd64), file("lib/e.so", amd64),
			},
			checked: 2,
			skipped: 3,
			found:   []string{"/bin/a linux/amd64"},
		},
		{
			name:    "negative Max reads everything",
			want:    "linux/arm64",
			opts:    Options{Max: -1},
			layer:   []entry{exe("bin/a", amd64), exe("bin/b", amd64), exe("bin/c", amd64)},
			checked: 3,
			found:   []string{"/bin/a linux/amd64", "/bin/b linux/amd64", "/bin/c linux/amd64"},
		},
		{
			name:   "whiteouts are not read",
			want:   "linux/arm64",
			layer:  []entry{exe("usr/bin/.wh.app", amd64), exe("usr/.wh..wh..opq", amd64)},
			notELF: 0,
		},
		{
			name: "hardlink is not read again but reported",
			want: "linux/arm64",
			layer: []entry{
				exe("usr/bin/app", amd64), hardlink("usr/bin/app2", "usr/bin/app"),
				exe("usr/bin/ok", arm64), hardlink("usr/bin/ok2", "./usr/bin/ok"),
				hardlink("usr/bin/dangling", "usr/bin/nothing"),
			},
			checked: 2,
			found:   []string{"/usr/bin/app linux/amd64", "/usr/bin/app2 linux/amd64"},
		},
		{
			name:  "symlinks are not followed",
			want:  "linux/arm64",
			layer: []entry{symlink("usr/bin/app", "/opt/x86/app")},
		},
		{
			name: "a later entry for the same path replaces the earlier one",
			want: "linux/arm64",
			layer: []entry{
				exe("usr/bin/app", amd64), exe("usr/bin/app", arm64),
				exe("usr/bin/tool", amd64), symlink("usr/bin/tool", "app"),
			},
			checked: 3,
		},
		{
			name: "ignored trees",
			want: "linux/amd64",
			opts: Options{Ignore: []string{"/usr/aarch64-linux-gnu", "opt/*/sysroot", "/usr/bin/qemu-*"}},
			layer: []entry{
				file("usr/aarch64-linux-gnu/lib/libc.so.6", arm64),
				file("opt/sdk/sysroot/usr/lib/libm.so", arm64),
				exe("usr/bin/qemu-arm-helper", arm),
				hardlink("usr/aarch64-linux-gnu/lib/libc-2.so", "usr/aarch64-linux-gnu/lib/libc.so.6"),
				exe("opt/sdk/bin/tool", arm64),
			},
			checked: 1,
			found:   []string{"/opt/sdk/bin/tool linux/arm64"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := CheckLayer(context.Background(), bytes.NewReader(layerTar(t, tt.layer...)), platform.MustParse(tt.want), tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Checked != tt.checked || rep.Skipped != tt.skipped || rep.NotELF != tt.notELF {
				t.Errorf("checked/skipped/notELF = %d/%d/%d, want %d/%d/%d",
					rep.Checked, rep.Skipped, rep.NotELF, tt.checked, tt.skipped, tt.notELF)
			}
			var found []string
			for _, f := range rep.Findings {
				found = append(found, f.Path+" "+f.Got)
				if f.Want != platform.Format(platform.MustParse(tt.want)) || f.Machine == "" {
					t.Errorf("finding %+v", f)
				}
			}
			if fmt.Sprint(found) != fmt.Sprint(tt.found) {
				t.Errorf("findings %q, want %q", found, tt.found)
			}
			if (rep.Err() != nil) != (len(tt.found) > 0) {
				t.Errorf("Err() = %v", rep.Err())
			}
		})
	}
}

func TestReportErr(t *testing.T) {
	rep := &Report{}
	for i := range 25 {
		rep.Findings = append(rep.Findings, Finding{
			Path: fmt.Sprintf("/usr/bin/app%02d", i), Got: "linux/amd64", Machine: "x86-64", Want: "linux/arm64",
		})
	}
	rep.Findings[1].Got, rep.Findings[1].Machine = "", "EM_BPF 64-bit LSB"
	err := rep.Err()
	if !errors.Is(err, ErrForeignArchitecture) {
		t.Fatalf("Err() = %v, not ErrForeignArchitecture", err)
	}
	var me *MismatchError
	if !errors.As(err, &me) || me.Want != "linux/arm64" || len(me.Findings) != 25 {
		t.Fatalf("MismatchError %+v", me)
	}
	msg := err.Error()
	for _, want := range []string{
		"image for linux/arm64 contains binaries for another architecture: /usr/bin/app00 (x86-64, linux/amd64), /usr/bin/app01 (EM_BPF 64-bit LSB), ",
		"/usr/bin/app19 (x86-64, linux/amd64) and 5 more (cross-compile for TARGETARCH, or build this platform on a matching node)",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q\nlacks %q", msg, want)
		}
	}
	if strings.Contains(msg, "app20") {
		t.Errorf("message lists more than 20 paths: %q", msg)
	}

	if err := (&Report{Checked: 3}).Err(); err != nil {
		t.Errorf("no findings: Err() = %v", err)
	}
	var nilReport *Report
	if err := nilReport.Err(); err != nil {
		t.Errorf("nil report: Err() = %v", err)
	}
}

func TestReportErrRealBinary(t *testing.T) {
	t.Parallel()
	layer := layerTar(t, exe("usr/bin/app", bin(t, "amd64")))
	rep, err := CheckLayer(context.Background(), bytes.NewReader(layer), platform.MustParse("arm64"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := "image for linux/arm64 contains binaries for another architecture: /usr/bin/app (x86-64, linux/amd64)" +
		" (cross-compile for TARGETARCH, or build this platform on a matching node)"
	if got := fmt.Sprint(rep.Err()); got != want {
		t.Errorf("Err() = %q\nwant     %q", got, want)
	}
}

func TestOptionsInvalid(t *testing.T) {
	tests := []struct {
		name string
		want string
		opts Options
	}{
		{"bad ignore pattern", "linux/amd64", Options{Ignore: []string{"/usr/[a-"}}},
		{"no architecture", "", Options{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var want = platformOrZero(tt.want)
			if _, err := CheckLayer(context.Background(), bytes.NewReader(nil), want, tt.opts); err == nil {
				t.Error("no error")
			}
			if _, err := CheckImageLayers(context.Background(), nil, want, tt.opts); err == nil {
				t.Error("CheckImageLayers: no error")
			}
		})
	}
}
