package run

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestRun(t *testing.T) {
	requireChroot(t)
	hostDir := t.TempDir()
	writeFile(t, filepath.Join(hostDir, "data"), "from the host\n")
	hostResolv, _ := os.ReadFile("/etc/resolv.conf")

	tests := []struct {
		name    string
		spec    Spec
		stdin   string
		want    string // stdout, exactly
		wantIn  string // stdout contains
		wantNot string // stdout does not contain
		wantErr error
		code    int    // with wantErr: the *ExitError's code; 0 for any
		tail    string // with wantErr: the *ExitError's tail; "" for any; ending in \n: its start
		// combined gives the command one writer for stdout and stderr.
		combined bool
		setup    func(t *testing.T, root string)
		check    func(t *testing.T, root string)
	}{
		{name: "echo output captured", spec: Spec{Args: sh("echo hello")}, want: "hello\n"},
		{name: "exec form without a shell", spec: Spec{Args: []string{"echo", "a b", "c"}}, want: "a b c\n"},
		{name: "exit code and tail", spec: Spec{Args: sh("echo before; echo oops >&2; exit 3")},
			wantErr: &ExitError{}, code: 3, tail: "before\noops", combined: true},
		{name: "tail keeps the last 20 lines", spec: Spec{Args: sh("i=0; while [ $i -lt 30 ]; do i=$((i+1)); echo line$i; done; echo end >&2; false")},
			wantErr: &ExitError{}, code: 1, tail: "line12\n", combined: true},
		{name: "PID 1 inside", spec: Spec{Args: sh("echo $$")}, want: "1\n"},
		{name: "hostname set", spec: Spec{Args: sh("hostname"), Hostname: "kiln-step"}, want: "kiln-step\n"},
		{name: "fresh proc", spec: Spec{Args: sh("ls /proc/self/")}, wantIn: "status\n"},
		{name: "host processes invisible", spec: Spec{Args: sh("test ! -e /proc/" + strconv.Itoa(os.Getpid()) + " && echo none")},
			want: "none\n"},
		{name: "dev null writable", spec: Spec{Args: sh("echo x > /dev/null && echo ok && ls /dev")},
			wantIn: "ok\n", wantNot: "sda"},
		{name: "cwd is Dir", spec: Spec{Args: sh("pwd"), Dir: "/work"}, want: "/work\n"},
		{name: "missing Dir fails the setup", spec: Spec{Args: sh("pwd"), Dir: "/nope"}, wantErr: ErrSetup},
		{name: "unknown command fails the setup", spec: Spec{Args: []string{"no-such-tool"}}, wantErr: ErrSetup},
		{name: "env passed and nothing else", spec: Spec{Args: []string{"env"}, Env: []string{"FOO=bar baz", "PATH=/bin"}},
			want: "FOO=bar baz\nPATH=/bin\n"},
		{name: "PATH from Env", spec: Spec{Args: []string{"busybox", "echo", "found"}, Env: []string{"PATH=/nowhere:/bin"}},
			want: "found\n"},
		{name: "user by uid and gid", spec: Spec{Args: sh("id -u; id -g; id -G"), UID: 1234, GID: 5678},
			want: "1234\n5678\n5678\n"},
		{name: "supplementary groups", spec: Spec{Args: sh("id -G"), UID: 1000, GID: 1000, Groups: []uint32{10, 50}},
			want: "1000 10 50\n"},
		{name: "stdin passed", spec: Spec{Args: []string{"cat"}}, stdin: "piped\n", want: "piped\n"},
		{name: "network none leaves only lo", spec: Spec{Args: sh("grep : /proc/net/dev | cut -d: -f1 | tr -d ' '"), Network: NetworkNone},
			want: "lo\n"},
		{name: "network none brings lo up", spec: Spec{Args: sh("cat /sys/class/net/lo/operstate /sys/class/net/lo/flags"), Network: NetworkNone},
			wantIn: "0x9"},
		{name: "host network shares resolv.conf", spec: Spec{Args: sh("cat /etc/resolv.conf")}, want: string(hostResolv)},
		{name: "resolv.conf read-only", spec: Spec{Args: sh("echo x >> /etc/resolv.conf")}, wantErr: &ExitError{}},
		{name: "read-only bind refuses writes",
			spec: Spec{Args: sh("cat /mnt/ro/data && touch /mnt/ro/new"), Mounts: []Mount{{Source: hostDir, Target: "/mnt/ro", ReadOnly: true}}},
			want: "from the host\n", wantErr: &ExitError{}, code: 1,
			check: func(t *testing.T, root string) {
				if _, err := os.Stat(filepath.Join(hostDir, "new")); err == nil {
					t.Error("a read-only mount was written")
				}
				if _, err := os.Stat(filepath.Join(root, "mnt")); err == nil {
					t.Error("the mount point Run created is still in the root")
				}
			}},
		{name: "writable bind writes through",
			spec: Spec{Args: sh("echo made > /cache/out"), Mounts: []Mount{{Source: hostDir, Target: "/cache"}}},
			check: func(t *testing.T, root string) {
				if b, err := os.ReadFile(filepath.Join(hostDir, "out")); err != nil || string(b) != "made\n" {
					t.Errorf("cache file = %q, %v", b, err)
				}
			}},
		{name: "sys read-only", spec: Spec{Args: sh("ls /sys/class >/dev/null && touch /sys/x")}, wantErr: &ExitError{}},
		{name: "capabilities bounded", spec: Spec{Args: sh("grep CapBnd /proc/self/status")},
			want: "CapBnd:\t00000000a80425fb\n"},
		{name: "proc sys read-only", spec: Spec{Args: sh("echo 10 > /proc/sys/vm/swappiness")}, wantErr: &ExitError{}},
		{name: "seccomp filter on", spec: Spec{Args: sh("grep Seccomp: /proc/self/status")}, want: "Seccomp:\t2\n"},
		{name: "seccomp unconfined", spec: Spec{Args: sh("grep Seccomp: /proc/self/status"), Security: Security{SeccompUnconfined: true}},
			want: "Seccomp:\t0\n"},
		{name: "proc keys masked", spec: Spec{Args: sh("wc -c < /proc/keys")}, want: "0\n"},
		{name: "device nodes made but not opened", spec: Spec{Args: sh("mknod /tmp/z c 1 5 && cat /tmp/z")}, wantErr: &ExitError{}},
		{name: "ulimit set", spec: Spec{Args: sh("ulimit -n"), Security: Security{Rlimits: []Rlimit{{Resource: unix.RLIMIT_NOFILE, Name: "nofile", Soft: 77, Hard: 77}}}},
			want: "77\n"},
		{name: "files land in the root",
			spec: Spec{Args: sh("echo in > /tmp/kiln-run-test-file && mkdir -p /made/here && cd / && cd .. && echo up > ../../escape")},
			check: func(t *testing.T, root string) {
				for _, p := range []string{"tmp/kiln-run-test-file", "made/here", "escape"} {
					if _, err := os.Stat(filepath.Join(root, p)); err != nil {
						t.Errorf("%s not in the root: %v", p, err)
					}
				}
				for _, p := range []string{"/tmp/kiln-run-test-file", "/made", "/escape", filepath.Dir(root) + "/escape"} {
					if _, err := os.Stat(p); err == nil {
						t.Errorf("%s written on the host", p)
					}
				}
			}},
		{name: "mount points created then removed",
			spec: Spec{Args: sh("test -d /proc/1 && test -c /dev/null && test -d /sys/class"),
				Mounts: []Mount{{Source: hostDir, Target: "/work/deep/cache"}}},
			setup: func(t *testing.T, root string) {
				for _, d := range []string{root, root + "/etc", root + "/work"} {
					if err := os.Chtimes(d, oldTime, oldTime); err != nil {
						t.Fatal(err)
					}
				}
			},
			check: func(t *testing.T, root string) {
				for _, p := range []string{"proc", "dev", "sys", "etc/resolv.conf", "etc/hosts", "work/deep"} {
					if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
						t.Errorf("/%s left in the root", p)
					}
				}
				for _, d := range []string{root, root + "/etc", root + "/work"} {
					if fi, err := os.Stat(d); err != nil || !fi.ModTime().Equal(oldTime) {
						t.Errorf("%s mtime not restored: %v %v", d, fi.ModTime(), err)
					}
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := makeRoot(t)
			if tt.setup != nil {
				tt.setup(t, root)
			}
			var stdout, stderr bytes.Buffer
			spec := tt.spec
			spec.Root, spec.Stdout, spec.Stderr = root, &stdout, &stderr
			if tt.combined {
				spec.Stderr = &stdout
			}
			if tt.stdin != "" {
				spec.Stdin = strings.NewReader(tt.stdin)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := Run(ctx, Chroot, spec)
			checkErr(t, err, tt.wantErr, tt.code, stderr.String())
			if exit := (*ExitError)(nil); tt.tail != "" && errors.As(err, &exit) && !tailMatches(exit.Tail, tt.tail) {
				t.Errorf("tail = %q, want %q", exit.Tail, tt.tail)
			}
			if tt.want != "" && stdout.String() != tt.want {
				t.Errorf("stdout = %q, want %q (stderr %q)", stdout.String(), tt.want, stderr.String())
			}
			if tt.wantIn != "" && !strings.Contains(stdout.String(), tt.wantIn) {
				t.Errorf("stdout = %q, want it to contain %q (stderr %q)", stdout.String(), tt.wantIn, stderr.String())
			}
			if tt.wantNot != "" && strings.Contains(stdout.String(), tt.wantNot) {
				t.Errorf("stdout = %q, want no %q", stdout.String(), tt.wantNot)
			}
			if tt.check != nil {
				tt.check(t, root)
			}
		})
	}
}

func sh(script string) []string { return []string{"/bin/sh", "-c", script} }

// checkErr compares err with want: nil, a sentinel, or an *ExitError
// (with code when code is not 0).
func checkErr(t *testing.T, err, want error, code int, stderr string) {
	t.Helper()
	var wantExit *ExitError
	switch {
	case want == nil:
		if err != nil {
			t.Fatalf("Run: %v (stderr %q)", err, stderr)
		}
	case errors.As(want, &wantExit):
		var exit *ExitError
		if !errors.As(err, &exit) {
			t.Fatalf("Run error = %v, want an *ExitError", err)
		}
		if code != 0 && exit.Code != code {
			t.Errorf("exit code = %d, want %d (tail %q)", exit.Code, code, exit.Tail)
		}
	case !errors.Is(err, want):
		t.Fatalf("Run error = %v, want %v", err, want)
	}
}

// oldTime is a modification time no test run produces.
var oldTime = time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)

func TestRunConcurrently(t *testing.T) {
	requireChroot(t)
	const n = 8
	outs := make([]bytes.Buffer, n)
	errs := make([]error, n)
	roots := make([]string, n)
	for i := range roots {
		roots[i] = makeRoot(t)
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			errs[i] = Run(context.Background(), Chroot, Spec{
				Root: roots[i], Args: sh("echo " + strconv.Itoa(i) + " $$ > /tmp/out; cat /tmp/out"), Stdout: &outs[i],
				Network: []string{NetworkHost, NetworkNone}[i%2],
			})
		})
	}
	wg.Wait()
	for i := range n {
		if want := strconv.Itoa(i) + " 1\n"; errs[i] != nil || outs[i].String() != want {
			t.Errorf("step %d: %q, %v; want %q", i, outs[i].String(), errs[i], want)
		}
	}
}

func tailMatches(got, want string) bool {
	if strings.HasSuffix(want, "\n") {
		return strings.HasPrefix(got, want) && strings.Count(got, "\n") == tailLines-1
	}
	return got == want
}

// The seccomp filter crosses to the init packed: every field of every
// instruction arrives as it left.
func TestSeccompFilterInConfig(t *testing.T) {
	prog, err := DefaultSeccomp()
	if err != nil {
		t.Fatal(err)
	}
	prog = append(prog, unix.SockFilter{Code: 0xffff, Jt: 0xfe, Jf: 0x01, K: 0xdeadbeef})
	data, err := json.Marshal(initConfig{Seccomp: prog})
	if err != nil {
		t.Fatal(err)
	}
	var got initConfig
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual([]unix.SockFilter(got.Seccomp), prog) {
		t.Fatalf("the filter changed on its way: %d instructions in, %d out", len(prog), len(got.Seccomp))
	}
	if err := json.Unmarshal([]byte(`{"Seccomp":"AAAA"}`), &got); err == nil {
		t.Error("a filter of 3 bytes was taken")
	}
	t.Logf("%d instructions: %d bytes of config", len(prog), len(data))
}
