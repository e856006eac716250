package run

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestRunCancelKillsTheTree(t *testing.T) {
	requireChroot(t)
	root := makeRoot(t)
	ctx, cancel := context.WithCancel(context.Background())
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Chroot, Spec{Root: root, Args: sh("sleep 42421 & sleep 42422 & echo started; wait"), Stdout: &out})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for len(sleepers()) < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := len(sleepers()); n < 2 {
		t.Fatalf("%d sleeps running, want 2 (output %q)", n, out.String())
	}
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run error = %v, want context.Canceled", err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("Run returned %v after the cancel", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after the cancel")
	}
	time.Sleep(100 * time.Millisecond)
	if left := sleepers(); len(left) > 0 {
		t.Errorf("processes left running: %v", left)
	}
}

// sleepers lists the pids of the sleeps TestRunCancelKillsTheTree starts.
func sleepers() []string {
	ents, _ := os.ReadDir("/proc")
	var pids []string
	for _, e := range ents {
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		if s := string(b); s == "sleep\x0042421\x00" || s == "sleep\x0042422\x00" {
			pids = append(pids, e.Name())
		}
	}
	return pids
}

func TestRunLeavesHostMountsAlone(t *testing.T) {
	requireChroot(t)
	root := makeRoot(t)
	src := t.TempDir()
	before := mountinfo(t)
	for _, network := range []string{NetworkHost, NetworkNone} {
		err := Run(context.Background(), Chroot, Spec{
			Root: root, Args: sh("mount | wc -l >/dev/null"), Network: network,
			Mounts: []Mount{{Source: src, Target: "/a"}, {Source: src, Target: "/b", ReadOnly: true}},
		})
		if err != nil {
			t.Fatalf("Run with network %s: %v", network, err)
		}
	}
	if after := mountinfo(t); !slices.Equal(before, after) {
		t.Errorf("host mount table changed:\nbefore %d lines\nafter %d lines\n%s",
			len(before), len(after), strings.Join(after, "\n"))
	}
}

func TestRunConfinesMountTargets(t *testing.T) {
	requireChroot(t)
	root := makeRoot(t)
	outside := t.TempDir() // a host directory the root points at
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "data"), "bound\n")
	if err := os.Symlink(outside, filepath.Join(root, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../../../../../../../../..", filepath.Join(root, "up")); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err := Run(context.Background(), Chroot, Spec{
		Root: root, Stdout: &out,
		Args: sh("cat /escape/sub/data /up/tmp/bound/data"),
		Mounts: []Mount{
			{Source: src, Target: "/escape/sub", ReadOnly: true},
			{Source: src, Target: "/up/tmp/bound", ReadOnly: true},
		},
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if out.String() != "bound\nbound\n" {
		t.Errorf("stdout = %q", out.String())
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("mount point created outside the root: %v", ents)
	}
	if _, err := os.Stat(filepath.Join(root, outside)); err == nil {
		t.Errorf("created mount point %s not removed", outside)
	}
}

func TestRunRejects(t *testing.T) {
	root := t.TempDir()
	file := filepath.Join(root, "file")
	writeFile(t, file, "")
	tests := []struct {
		name    string
		iso     Isolation
		spec    Spec
		wantErr error
	}{
		{name: "no args", iso: Chroot, spec: Spec{Root: root}, wantErr: ErrBadSpec},
		{name: "relative root", iso: Chroot, spec: Spec{Root: "rootfs", Args: []string{"true"}}, wantErr: ErrBadSpec},
		{name: "unknown network", iso: Chroot, spec: Spec{Root: root, Args: []string{"true"}, Network: "bridge"}, wantErr: ErrBadSpec},
		{name: "unknown isolation", iso: "vm", spec: Spec{Root: root, Args: []string{"true"}}, wantErr: ErrBadSpec},
		{name: "relative dir", iso: Chroot, spec: Spec{Root: root, Args: []string{"true"}, Dir: "src"}, wantErr: ErrBadSpec},
		{name: "relative mount target", iso: Chroot,
			spec: Spec{Root: root, Args: []string{"true"}, Mounts: []Mount{{Source: root, Target: "x"}}}, wantErr: ErrBadSpec},
		{name: "mount over the root", iso: Chroot,
			spec: Spec{Root: root, Args: []string{"true"}, Mounts: []Mount{{Source: root, Target: "/.."}}}, wantErr: ErrBadSpec},
		{name: "missing mount source", iso: Chroot,
			spec: Spec{Root: root, Args: []string{"true"}, Mounts: []Mount{{Source: root + "/none", Target: "/x"}}}, wantErr: ErrBadSpec},
		{name: "directory mounted on a file", iso: Chroot,
			spec: Spec{Root: root, Args: []string{"true"}, Mounts: []Mount{{Source: root, Target: "/file"}}}},
		{name: "container mode with another root", iso: Container,
			spec: Spec{Root: root, Args: []string{"true"}, Force: true}, wantErr: ErrBadSpec},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Run(context.Background(), tt.iso, tt.spec)
			if err == nil {
				t.Fatal("Run succeeded")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("Run error = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestMountPoints(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
		want []string
	}{
		{name: "host network", spec: Spec{}, want: []string{"/proc", "/dev", "/sys", "/etc/resolv.conf", "/etc/hosts"}},
		{name: "no network, mounts", spec: Spec{Network: NetworkNone, Mounts: []Mount{{Target: "/cache/"}}},
			want: []string{"/proc", "/dev", "/sys", "/cache"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.spec.MountPoints(); !slices.Equal(got, tt.want) {
				t.Errorf("MountPoints() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestTail(t *testing.T) {
	tests := []struct {
		name   string
		writes []string
		want   string
	}{
		{name: "short", writes: []string{"a\nb\n"}, want: "a\nb"},
		{name: "split writes and unfinished line", writes: []string{"a", "b\nc", "d"}, want: "ab\ncd"},
		{name: "last 20 lines", writes: []string{strings.Repeat("x\n", 30) + "end\n"},
			want: strings.Repeat("x\n", 19) + "end"},
		{name: "long line cut", writes: []string{strings.Repeat("y", 5000) + "\n"}, want: strings.Repeat("y", tailLineMax)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w tailWriter
			for _, s := range tt.writes {
				_, _ = w.Write([]byte(s))
			}
			if got := w.String(); got != tt.want {
				t.Errorf("tail = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseMountinfo(t *testing.T) {
	tests := []struct {
		name    string
		table   string
		want    []string
		wantErr bool
	}{
		{name: "pod", table: `1 0 0:1 / / rw - overlay overlay rw
2 1 0:2 / /proc rw,nosuid - proc proc rw
3 1 0:3 / /kiln/cache rw - ext4 /dev/sda1 rw
4 1 0:4 / /var/run/secrets/kubernetes.io/serviceaccount ro - tmpfs tmpfs ro
5 2 0:5 / /proc/sys ro - proc proc ro
6 1 0:3 /x /kiln/cache rw - ext4 /dev/sda1 rw
`, want: []string{"/proc", "/kiln/cache", "/var/run/secrets/kubernetes.io/serviceaccount", "/proc/sys"}},
		{name: "escaped", table: `7 1 0:7 / /mnt/with\040space\134x rw - tmpfs tmpfs rw
`, want: []string{`/mnt/with space\x`}},
		{name: "truncated line", table: "1 0 0:1 /\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMountinfo(strings.NewReader(tt.table))
			if (err != nil) != tt.wantErr {
				t.Fatalf("error = %v, wantErr %v", err, tt.wantErr)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("mount points = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestContainerMountPoints(t *testing.T) {
	pts, err := ContainerMountPoints()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(pts, "/proc") {
		t.Errorf("no /proc in %v", pts)
	}
}
