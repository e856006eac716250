package run

import (
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseUlimit(t *testing.T) {
	tests := []struct {
		in      string
		want    Rlimit
		wantErr string
	}{
		{in: "nofile=1024:4096", want: Rlimit{Resource: unix.RLIMIT_NOFILE, Name: "nofile", Soft: 1024, Hard: 4096}},
		{in: "nproc=512", want: Rlimit{Resource: unix.RLIMIT_NPROC, Name: "nproc", Soft: 512, Hard: 512}},
		{in: "CORE=unlimited", want: Rlimit{Resource: unix.RLIMIT_CORE, Name: "core", Soft: unix.RLIM_INFINITY, Hard: unix.RLIM_INFINITY}},
		{in: "stack=-1:-1", want: Rlimit{Resource: unix.RLIMIT_STACK, Name: "stack", Soft: unix.RLIM_INFINITY, Hard: unix.RLIM_INFINITY}},
		{in: "nofile", wantErr: "want NAME=SOFT[:HARD]"},
		{in: "files=3", wantErr: `unknown name "files"`},
		{in: "nofile=x", wantErr: "soft limit"},
		{in: "nofile=1:y", wantErr: "hard limit"},
		{in: "nofile=9:1", wantErr: "above the hard limit"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseUlimit(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseUlimit(%q) = %v, %v; want an error with %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseUlimit(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestChoosePidsParent(t *testing.T) {
	v1 := []cgroupMount{
		{point: "/sys/fs/cgroup/memory", root: "/", controllers: []string{"rw", "memory"}},
		{point: "/sys/fs/cgroup/pids", root: "/", controllers: []string{"rw", "pids"}},
		{point: "/sys/fs/cgroup/unified", root: "/", v2: true},
	}
	v2 := []cgroupMount{{point: "/sys/fs/cgroup", root: "/", v2: true}}
	files := func(m map[string]string) func(string) string { return func(p string) string { return m[p] } }
	tests := []struct {
		name    string
		mounts  []cgroupMount
		self    string
		files   map[string]string
		want    string
		wantErr string
	}{
		{name: "v1 pids below our own", mounts: v1, self: "8:pids:/ci/job\n4:memory:/x\n0::/", want: "/sys/fs/cgroup/pids/ci/job"},
		{name: "v1 mount root trimmed", self: "8:pids:/docker/abc\n0::/",
			mounts: []cgroupMount{{point: "/sys/fs/cgroup/pids", root: "/docker/abc", controllers: []string{"rw", "pids"}}},
			want:   "/sys/fs/cgroup/pids"},
		{name: "v2 delegating below us", mounts: v2, self: "0::/",
			files: map[string]string{"/sys/fs/cgroup/cgroup.subtree_control": "cpu pids memory\n"}, want: "/sys/fs/cgroup"},
		{name: "v2 beside us", mounts: v2, self: "0::/user.slice/session-1.scope",
			files: map[string]string{"/sys/fs/cgroup/user.slice/session-1.scope/cgroup.controllers": "cpu pids\n"},
			want:  "/sys/fs/cgroup/user.slice"},
		{name: "v2 no pids", mounts: v2, self: "0::/", files: map[string]string{"/sys/fs/cgroup/cgroup.controllers": "cpu pids"},
			wantErr: "does not delegate"},
		{name: "no cgroupfs", self: "0::/", wantErr: "no pids cgroup hierarchy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := choosePidsParent(tt.mounts, tt.self, files(tt.files))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %q, %v; want an error with %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestCgroupMounts(t *testing.T) {
	table := `25 1 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
33 25 0:30 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
34 25 0:31 /docker/x /sys/fs/cgroup/cpu\040set rw,relatime - cgroup cgroup rw,cpu,cpuacct
40 1 0:40 / /tmp rw - tmpfs tmpfs rw
`
	got, err := cgroupMounts(strings.NewReader(table))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || !got[0].v2 || got[1].point != "/sys/fs/cgroup/pids" || got[2].point != "/sys/fs/cgroup/cpu set" ||
		got[2].root != "/docker/x" || strings.Join(got[1].controllers, ",") != "rw,pids" {
		t.Fatalf("cgroupMounts = %+v", got)
	}
}

func TestDevMounts(t *testing.T) {
	table := `1 0 0:1 / / rw - ext4 /dev/sda rw
2 1 0:2 / /r rw,relatime - overlay overlay rw
3 2 0:3 / /r/proc rw,nosuid,nodev,noexec - proc proc rw
4 2 0:4 / /r/dev rw,nosuid,nodev - tmpfs tmpfs rw
5 4 0:5 /null /r/dev/null rw,nosuid - devtmpfs udev rw
6 2 0:6 / /r/data\040x rw - ext4 /dev/sdb rw
7 1 0:7 / /rx rw - ext4 /dev/sdc rw
`
	got, err := devMounts(strings.NewReader(table), "/r")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, "|") != "/r|/r/dev/null|/r/data x" {
		t.Fatalf("devMounts = %q", got)
	}
}
