package run

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestRunHostileRoot runs steps on roots whose paths point at the host: all
// of it must resolve inside the root, and the host must not change.
func TestRunHostileRoot(t *testing.T) {
	requireChroot(t)
	hostDir := t.TempDir() // stands for any host directory
	writeFile(t, filepath.Join(hostDir, "secret"), "host secret\n")
	tests := []struct {
		name    string
		setup   func(t *testing.T, root string)
		spec    Spec
		want    string
		wantErr error
	}{
		{name: "proc links to a host path",
			setup: func(t *testing.T, root string) { mustSymlink(t, hostDir, filepath.Join(root, "proc")) },
			spec:  Spec{Args: sh("test -d /proc/self && echo ok")}, want: "ok\n"},
		{name: "dev climbs out with dot dots",
			setup: func(t *testing.T, root string) {
				mustSymlink(t, "../../../../../../.."+hostDir+"/dev", filepath.Join(root, "dev"))
			},
			spec: Spec{Args: sh("echo x > /dev/null && echo ok")}, want: "ok\n"},
		{name: "sys links to itself", wantErr: errAny,
			setup: func(t *testing.T, root string) { mustSymlink(t, "/sys", filepath.Join(root, "sys")) },
			spec:  Spec{Args: sh("true")}},
		{name: "working directory links to a host path",
			setup: func(t *testing.T, root string) {
				mustSymlink(t, hostDir, filepath.Join(root, "app"))
				mustMkdir(t, filepath.Join(root, hostDir))
			},
			spec: Spec{Args: sh("pwd -P; cat secret 2>/dev/null || echo confined"), Dir: "/app"},
			want: hostDir + "\nconfined\n"},
		{name: "command links to a host binary",
			setup: func(t *testing.T, root string) { mustSymlink(t, "/usr/bin/env", filepath.Join(root, "bin/hostenv")) },
			spec:  Spec{Args: []string{"hostenv"}, Env: []string{"PATH=/bin"}}, wantErr: ErrSetup},
		{name: "resolv.conf links out",
			setup: func(t *testing.T, root string) {
				mustSymlink(t, filepath.Join(hostDir, "resolv.conf"), filepath.Join(root, "etc/resolv.conf"))
			},
			spec: Spec{Args: sh("cat /etc/resolv.conf >/dev/null && echo ok")}, want: "ok\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := makeRoot(t)
			tt.setup(t, root)
			before := listDir(t, hostDir)
			var out, errOut bytes.Buffer
			spec := tt.spec
			spec.Root, spec.Stdout, spec.Stderr = root, &out, &errOut
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := Run(ctx, Chroot, spec)
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("Run: %v (stderr %q)", err, errOut.String())
			case tt.wantErr != nil && (err == nil || (tt.wantErr != errAny && !errors.Is(err, tt.wantErr))):
				t.Fatalf("Run error = %v, want %v", err, tt.wantErr)
			}
			if out.String() != tt.want {
				t.Errorf("stdout = %q, want %q", out.String(), tt.want)
			}
			if after := listDir(t, hostDir); after != before {
				t.Errorf("host directory changed: %s, was %s", after, before)
			}
		})
	}
}

func listDir(t *testing.T, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for _, e := range ents {
		b.WriteString(e.Name() + " ")
	}
	return b.String()
}
