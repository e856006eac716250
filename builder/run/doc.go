// Package run executes one RUN step's command inside a stage's root
// filesystem, isolated from the host: the part of a userspace builder that
// needs the kernel's help.
//
// Three isolation modes exist. Chroot (root on a host) re-executes the
// current program as a small init in new mount, PID, UTS and IPC namespaces
// (and a network namespace for Network "none"), mounts a fresh /proc, a
// minimal /dev and a read-only /sys inside the root, pivots into it and execs
// the command. Rootless does the same inside a user namespace; a program
// that ReexecInUserNamespace ran in a user namespace of its own (where it
// is root over the caller's subordinate ids) isolates rootless steps there
// as chroot steps. Container
// runs the command directly, with the process's own / as the root, for a
// dedicated pod that may not create namespaces.
//
// In chroot and rootless mode a step is confined as Docker confines a
// container (Spec.Security, whose zero value is that default): every mount
// of the step is nodev but kiln's binds of /dev/null and friends, so a
// device node the step makes is recorded but never opened; runc's masked
// paths (/proc/kcore, /proc/keys, ...) are hidden and its read-only ones
// (/proc/sys, ...) read-only; moby's default seccomp profile, compiled by
// package seccomp, is installed just before exec; the step runs in a pids
// cgroup (DefaultPidsLimit) where one can be made; Rlimits are set. In
// container mode all of this is the container runtime's to do.
//
// The init is the small program of builder/run/initexe where the binary
// embeds one of its own build (the Makefile builds it first: see
// InitProgram), started from a sealed memory file; else this program
// re-executed. Either way main (and TestMain) must call MaybeInit first
// thing:
//
//	func main() {
//		run.MaybeInit() // never returns in the re-executed init
//		...
//	}
//
// The package's own init function makes the same call as soon as the
// package and its imports are initialized, so the re-executed init does not
// wait for the rest of the program's packages to initialize.
//
// A step then runs as:
//
//	iso, why := run.Detect() // once per build
//	log.Info("isolation", "mode", iso, "why", why)
//	uid, gid, groups, err := run.ResolveUser(root, "app:app")
//	...
//	err = run.Run(ctx, iso, run.Spec{
//		Root: root, Args: []string{"/bin/sh", "-c", "make install"},
//		Env: env, Dir: "/src", UID: uid, GID: gid, Groups: groups,
//		Stdout: os.Stdout, Stderr: os.Stderr,
//	})
//	var exit *run.ExitError
//	if errors.As(err, &exit) {
//		// exit.Code, exit.Tail: the last lines of the command's output
//	}
//
// A build that runs many steps uses a Runner instead (NewRunner(iso), then
// r.Run(ctx, spec) for each step, r.Close() at the end): in chroot mode it
// starts the next step's init while a step runs, so a step does not wait for
// this program to start. That init waits, confined by nothing but its PID,
// UTS and IPC namespaces, until a step hands it its config; every init, the
// ones Run starts included, makes its mount (and network) namespace only
// then, from kiln's mounts as they are when the step starts.
//
// Every mount lives in the step's own mount namespace and vanishes with it:
// nothing is left mounted on the host. Mount points the root lacks (/proc,
// /dev, /sys, /etc/resolv.conf, /etc/hosts, Spec.Mounts targets) are created
// before the step and removed after it when they are still empty, so a
// snapshot taken afterwards does not see them; Spec.MountPoints lists the
// paths a snapshot should ignore while a step runs. In container mode,
// ContainerMountPoints lists what the snapshot must leave alone instead.
//
// Detect starts a probe process: call it once per build, or call
// DetectAhead as soon as a build knows it has RUN steps and Detected when
// the first one runs: the probe, and (as root) the first step's init, then
// start while the build does other work, once per process.
package run
