package run

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestResolveUser(t *testing.T) {
	hostEtc := t.TempDir()
	writeFile(t, filepath.Join(hostEtc, "passwd"), "evil:x:4242:4242::/:/bin/sh\n")
	tests := []struct {
		name    string
		user    string
		setup   func(t *testing.T, root string)
		uid     uint32
		gid     uint32
		groups  []uint32
		wantErr error
	}{
		{name: "empty is root", user: "", groups: []uint32{0, 10}},
		{name: "root by name", user: "root", groups: []uint32{0, 10}},
		{name: "name", user: "app", uid: 1000, gid: 1000, groups: []uint32{1000, 10, 50}},
		{name: "uid with an entry", user: "1000", uid: 1000, gid: 1000, groups: []uint32{1000, 10, 50}},
		{name: "uid without an entry", user: "1234", uid: 1234, groups: []uint32{0}},
		{name: "name and group name drops the member groups", user: "app:staff", uid: 1000, gid: 50, groups: []uint32{50}},
		{name: "name and gid drops the member groups", user: "app:5678", uid: 1000, gid: 5678, groups: []uint32{5678}},
		{name: "uid and gid", user: "1234:5678", uid: 1234, gid: 5678, groups: []uint32{5678}},
		{name: "uid with an entry and gid", user: "1000:5678", uid: 1000, gid: 5678, groups: []uint32{5678}},
		{name: "unknown name", user: "ghost", wantErr: ErrUnknownUser},
		{name: "unknown group", user: "app:ghosts", wantErr: ErrUnknownUser},
		{name: "empty group", user: "app:", wantErr: ErrBadSpec},
		{name: "empty user", user: ":staff", wantErr: ErrBadSpec},
		{name: "uid beyond 32 bits is a name", user: "99999999999", wantErr: ErrUnknownUser},
		{name: "no passwd file", user: "app", wantErr: ErrUnknownUser,
			setup: func(t *testing.T, root string) { mustRemove(t, filepath.Join(root, "etc/passwd")) }},
		{name: "no passwd file, numeric", user: "7:8", uid: 7, gid: 8, groups: []uint32{8},
			setup: func(t *testing.T, root string) { mustRemove(t, filepath.Join(root, "etc/passwd")) }},
		{name: "passwd symlinked to a host path is confined", user: "evil", wantErr: ErrUnknownUser,
			setup: func(t *testing.T, root string) {
				mustRemove(t, filepath.Join(root, "etc/passwd"))
				mustSymlink(t, filepath.Join(hostEtc, "passwd"), filepath.Join(root, "etc/passwd"))
			}},
		{name: "relative symlink climbing out stays in the root", user: "inroot", uid: 7, gid: 7, groups: []uint32{7},
			setup: func(t *testing.T, root string) {
				mustRemove(t, filepath.Join(root, "etc/passwd"))
				mustMkdir(t, filepath.Join(root, "srv"))
				writeFile(t, filepath.Join(root, "srv/passwd"), "inroot:x:7:7::/:/bin/sh\n")
				mustSymlink(t, "../../../../../../srv/passwd", filepath.Join(root, "etc/passwd"))
			}},
		{name: "symlink loop", user: "app", wantErr: errAny,
			setup: func(t *testing.T, root string) {
				mustRemove(t, filepath.Join(root, "etc/passwd"))
				mustSymlink(t, "passwd", filepath.Join(root, "etc/passwd"))
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			mustMkdir(t, filepath.Join(root, "etc"))
			writeFile(t, filepath.Join(root, "etc/passwd"),
				"# comment\nroot:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n")
			writeFile(t, filepath.Join(root, "etc/group"),
				"root:x:0:\napp:x:1000:\nstaff:x:50:app,other\nwheel:x:10:root,app\n")
			if tt.setup != nil {
				tt.setup(t, root)
			}
			uid, gid, groups, err := ResolveUser(root, tt.user)
			if tt.wantErr != nil {
				if err == nil || (tt.wantErr != errAny && !errors.Is(err, tt.wantErr)) {
					t.Fatalf("ResolveUser(%q) error = %v, want %v", tt.user, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ResolveUser(%q): %v", tt.user, err)
			}
			if uid != tt.uid || gid != tt.gid || !slices.Equal(groups, tt.groups) {
				t.Errorf("ResolveUser(%q) = %d, %d, %v; want %d, %d, %v", tt.user, uid, gid, groups, tt.uid, tt.gid, tt.groups)
			}
		})
	}
}

// errAny in a wantErr means any error.
var errAny = errors.New("any error")

func TestSecurePath(t *testing.T) {
	root := t.TempDir()
	mustMkdir(t, filepath.Join(root, "usr/lib"))
	mustSymlink(t, "/usr/lib", filepath.Join(root, "abs"))
	mustSymlink(t, "../..", filepath.Join(root, "usr/up"))
	mustSymlink(t, "lib/../../etc", filepath.Join(root, "usr/etc"))
	tests := []struct {
		name, path, want string
	}{
		{name: "plain", path: "/usr/lib", want: "/usr/lib"},
		{name: "dot dot clamps", path: "/../../etc/passwd", want: "/etc/passwd"},
		{name: "absolute link is rooted", path: "/abs/x", want: "/usr/lib/x"},
		{name: "relative link climbing out clamps", path: "/usr/up/usr/up/etc", want: "/etc"},
		{name: "link through a link", path: "usr/etc/hosts", want: "/etc/hosts"},
		{name: "missing parts kept", path: "/new/../dir/./f", want: "/dir/f"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := securePath(root, tt.path)
			if err != nil {
				t.Fatal(err)
			}
			if want := filepath.Join(root, tt.want); got != want {
				t.Errorf("securePath(%q) = %s, want %s", tt.path, got, want)
			}
		})
	}
}

func TestRunAsResolvedUser(t *testing.T) {
	requireChroot(t)
	tests := []struct {
		user string
		want string
	}{
		{user: "app", want: "1000\n1000\napp\n1000 10 50\n"},
		{user: "1234:5678", want: "1234\n5678\n1234\n5678\n"},
		{user: "app:staff", want: "1000\n50\napp\n50\n"},
		{user: "root", want: "0\n0\nroot\n0 10\n"},
	}
	for _, tt := range tests {
		t.Run(tt.user, func(t *testing.T) {
			root := makeRoot(t)
			uid, gid, groups, err := ResolveUser(root, tt.user)
			if err != nil {
				t.Fatal(err)
			}
			script := "id -u; id -g; id -un 2>/dev/null; id -G"
			var out bytes.Buffer
			err = Run(context.Background(), Chroot, Spec{Root: root, Args: sh(script), UID: uid, GID: gid, Groups: groups, Stdout: &out})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if out.String() != tt.want {
				t.Errorf("output = %q, want %q", out.String(), tt.want)
			}
		})
	}
}

func mustRemove(t *testing.T, p string) {
	t.Helper()
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
}

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}
