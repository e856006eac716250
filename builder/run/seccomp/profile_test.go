package seccomp

import (
	"encoding/json"
	"runtime"
	"slices"
	"strings"
	"testing"

	moby "github.com/moby/profiles/seccomp"
	"golang.org/x/sys/unix"
)

// TestDefaultFilter checks that capabilities, architectures and the kernel
// version pick moby's rules as the daemon does.
func TestDefaultFilter(t *testing.T) {
	for _, c := range []struct {
		caps   []string
		kernel moby.KernelVersion
		calls  []call
	}{
		{
			caps: append(slices.Clone(dockerCaps), "CAP_SYS_ADMIN"),
			calls: []call{
				{name: "mount", want: allow},
				{name: "unshare", want: allow},
				{name: "clone", args: [6]uint64{unix.CLONE_NEWUSER}, want: allow},
				{name: "clone3", want: allow},
				{name: "kcmp", want: eperm},
			},
		},
		{
			caps: []string{"sys_ptrace", "SYS_MODULE"}, // normalized to CAP_…
			calls: []call{
				{name: "kcmp", want: allow},
				{name: "finit_module", want: allow},
				{name: "chroot", want: eperm},
				{name: "clone3", want: enosys},
			},
		},
		{
			kernel: moby.KernelVersion{Kernel: 4, Major: 7},
			calls:  []call{{name: "ptrace", want: eperm}, {name: "read", want: allow}},
		},
	} {
		kernel := c.kernel
		if kernel == (moby.KernelVersion{}) {
			kernel = testKernel
		}
		for _, goarch := range []string{"amd64", "arm64"} {
			p, err := defaultFor(goarch, c.caps, kernel)
			if err != nil {
				t.Fatal(err)
			}
			native := natives[goarch].abis[0]
			for i := range c.calls {
				c.calls[i].abi = native
			}
			vm := compileVM(t, p, goarch)
			checkCalls(t, vm, c.calls)
			checkAgainstModel(t, p, goarch, vm)
		}
	}
}

// TestDefaultArchRules checks rules included for one architecture only.
func TestDefaultArchRules(t *testing.T) {
	amd64, _ := defaultFor("amd64", nil, testKernel)
	arm64, _ := defaultFor("arm64", nil, testKernel)
	names := func(p *Profile) []string {
		var all []string
		for _, sc := range p.Syscalls {
			all = append(all, sc.Names...)
		}
		return all
	}
	if n := names(amd64); !slices.Contains(n, "arch_prctl") || slices.Contains(n, "set_tls") {
		t.Errorf("amd64 profile: want arch_prctl and not set_tls")
	}
	if n := names(arm64); slices.Contains(n, "arch_prctl") || !slices.Contains(n, "set_tls") {
		t.Errorf("arm64 profile: want set_tls and not arch_prctl")
	}
}

// TestLoadDefault checks that moby's default profile, as a file, loads to
// what Default gives.
func TestLoadDefault(t *testing.T) {
	if _, ok := natives[runtime.GOARCH]; !ok {
		t.Skip("unsupported GOARCH")
	}
	body, err := json.Marshal(moby.DefaultProfile())
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := Load(body, dockerCaps)
	if err != nil {
		t.Fatal(err)
	}
	def, err := Default(dockerCaps)
	if err != nil {
		t.Fatal(err)
	}
	progLoaded, err := Compile(loaded)
	if err != nil {
		t.Fatal(err)
	}
	progDefault, err := Compile(def)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(progLoaded, progDefault) {
		t.Errorf("the loaded default profile compiles to %d instructions, Default to %d, not the same", len(progLoaded), len(progDefault))
	}
}

func TestLoad(t *testing.T) {
	if _, ok := natives[runtime.GOARCH]; !ok {
		t.Skip("unsupported GOARCH")
	}
	p, err := Load([]byte(`{
		"defaultAction": "SCMP_ACT_ERRNO",
		"defaultErrnoRet": 38,
		"archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
			{"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
		"syscalls": [
			{"name": "read", "action": "SCMP_ACT_ALLOW"},
			{"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
			{"names": ["write"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_SYS_ADMIN"]}}
		]
	}`), []string{"CAP_SYS_ADMIN"})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Architectures) != 2 || p.Architectures[0] != natives[runtime.GOARCH].abis[0] {
		t.Errorf("architectures %v", p.Architectures)
	}
	var got []string
	for _, sc := range p.Syscalls {
		got = append(got, sc.Names...)
	}
	if want := []string{"read", "mount"}; !slices.Equal(got, want) {
		t.Errorf("syscalls %v, want %v", got, want)
	}
	if *p.DefaultErrnoRet != 38 {
		t.Errorf("defaultErrnoRet %d, want 38", *p.DefaultErrnoRet)
	}

	p, err = Load([]byte(`{}`), nil)
	if p != nil || err != nil {
		t.Errorf("empty profile: got %v, %v, want nil, nil (no filter)", p, err)
	}

	for _, c := range []struct{ body, want string }{
		{`{"defaultAction": `, "seccomp profile: unexpected end of JSON input"},
		{`{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"name": "read", "names": ["write"], "action": "SCMP_ACT_ALLOW"}]}`, `syscall "read": both name and names`},
		{`{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86"], "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}`, "both architectures and archMap"},
		{`{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALOW"}]}`, `syscall "read": unknown action "SCMP_ACT_ALOW"`},
		{`{"syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}`, "defaultAction: no action"},
		{`{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQUAL"}]}]}`, `unknown operator "SCMP_CMP_EQUAL"`},
		{`{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [null]}`, "syscalls[0] is null"},
		{`{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4"}}]}`, "invalid kernel version"},
	} {
		_, err := Load([]byte(c.body), nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error with %q", c.body, err, c.want)
		}
	}
}

// TestFilterKeepsInput checks that filtering leaves moby's profile alone,
// so one profile can be filtered for several capability sets.
func TestFilterKeepsInput(t *testing.T) {
	cfg := moby.DefaultProfile()
	before, _ := json.Marshal(cfg)
	if _, err := filter(cfg, "amd64", dockerCaps, testKernel); err != nil {
		t.Fatal(err)
	}
	if after, _ := json.Marshal(cfg); string(after) != string(before) {
		t.Error("filter changed its input")
	}
	if _, err := filter(cfg, "mips64", nil, testKernel); err == nil || !strings.Contains(err.Error(), "unsupported architecture") {
		t.Errorf("mips64: got %v, want ErrUnsupportedArch", err)
	}
}
