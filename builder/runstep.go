package builder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	specs "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"kiln/builder/dockerfile"
	"kiln/builder/layercache"
	"kiln/builder/layerstore"
	"kiln/builder/rootfs"
	"kiln/builder/run"
	"kiln/builder/snapshot"
	"kiln/platform"
)

// Snapshot strategies for RUN steps (WithSnapshot).
const (
	SnapshotAuto    = "auto"    // overlay where this process may mount it, else walk
	SnapshotOverlay = "overlay" // the step runs on an overlay: its upper dir is the diff
	SnapshotWalk    = "walk"    // stat-compare the tree before and after the step
)

// RunError is a RUN step that ran and failed.
type RunError struct {
	Args   []string
	Code   int    // exit status (128+n when killed by signal n)
	Signal string // "SIGKILL" when killed by a signal
	Tail   string // the last lines of the step's output
}

func (e *RunError) Error() string {
	how := fmt.Sprintf("exit code %d", e.Code)
	if e.Signal != "" {
		how = "killed by " + e.Signal
	}
	msg := fmt.Sprintf("%q failed: %s", strings.Join(e.Args, " "), how)
	if e.Tail != "" {
		msg += "; last lines of its output:\n" + indent(e.Tail)
	}
	return msg
}

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = "    " + l
	}
	return strings.Join(lines, "\n")
}

// runEnvironment is what every RUN of one build shares: the isolation and
// snapshot strategy, chosen once and logged.
type runEnvironment struct {
	once      sync.Once
	isolation run.Isolation
	overlay   bool
	mapIDs    func(uid, gid int) (int, int) // rootless: host ids back to the namespace's
	security  run.Security                  // the seccomp filter compiled once
	runner    *run.Runner                   // starts each step's init ahead; closed by cleanup
	err       error
}

// detectAhead starts run.Detect in the background (run.DetectAhead) when
// the isolation was not asked for and a stage has a RUN step: its probe
// process, and the first step's init, then start while the bases are
// fetched and mounted, not in front of the first RUN.
func (b *builder) detectAhead() {
	if b.o.isolation != "" {
		return
	}
	for _, st := range b.plan.Stages {
		for _, cmd := range st.Commands {
			if _, ok := cmd.(*instructions.RunCommand); ok {
				run.DetectAhead()
				return
			}
		}
	}
}

// runEnv picks (once per build) the isolation and the snapshot strategy.
func (b *builder) runEnv() (*runEnvironment, error) {
	e := &b.runState
	e.once.Do(func() {
		iso, why := b.o.isolation, "asked for"
		if iso == "" {
			iso, why = run.Detected()
		}
		switch iso {
		case run.Chroot, run.Rootless:
		case run.Container:
			if err := b.checkContainerRoot(); err != nil {
				e.err = err
				return
			}
		default:
			e.err = fmt.Errorf("unknown isolation %q (want chroot, rootless or container)", iso)
			return
		}
		e.isolation = iso
		if iso == run.Rootless {
			e.mapIDs = run.ContainerIDs() // the step's files belong to host ids standing for the namespace's
		}
		snap, swhy := b.o.snapshot, "asked for"
		switch snap {
		case "", SnapshotAuto:
			ok, reason := snapshot.Supported()
			snap, swhy = SnapshotWalk, reason
			if ok {
				snap = SnapshotOverlay
			}
		case SnapshotOverlay, SnapshotWalk:
		default:
			e.err = fmt.Errorf("unknown snapshot strategy %q (want auto, overlay or walk)", snap)
			return
		}
		if iso == run.Container && snap == SnapshotOverlay {
			if b.o.snapshot == SnapshotOverlay {
				e.err = fmt.Errorf("--snapshot overlay needs chroot or rootless isolation: in container mode the step runs on / itself")
				return
			}
			snap, swhy = SnapshotWalk, "container isolation: the step runs on / itself"
		}
		e.overlay = snap == SnapshotOverlay
		_, initWhy := run.InitProgram()
		b.o.log.Info("RUN steps", "isolation", string(iso), "why", why, "snapshot", snap, "snapshot_why", swhy, "init", initWhy)
		e.security, e.err = b.runSecurity(iso)
		if e.err == nil {
			e.runner = run.NewRunner(iso)
		}
	})
	return e, e.err
}

// runSecurity compiles the steps' seccomp filter once and says how the
// steps are confined.
func (b *builder) runSecurity(iso run.Isolation) (run.Security, error) {
	sec := b.o.security
	if iso == run.Container {
		b.o.log.Info("RUN confinement comes from the container runtime in container isolation: "+
			"its seccomp profile (seccompProfile: RuntimeDefault), masked /proc paths, pids limit and device rules",
			"ignored", securityFlags(sec))
		return sec, nil
	}
	seccompMode := "default"
	switch {
	case sec.SeccompUnconfined:
		seccompMode = "unconfined"
		b.o.log.Warn("RUN steps run with no seccomp filter (--security-opt seccomp=unconfined): every syscall the capabilities allow is open to them")
	case sec.Seccomp != nil:
		seccompMode = "custom"
	default:
		f, err := run.DefaultSeccomp()
		if err != nil {
			return sec, err
		}
		sec.Seccomp = f
	}
	if sec.SystemPathsUnconfined {
		b.o.log.Warn("RUN steps see /proc and /sys unmasked (--security-opt systempaths=unconfined)")
	}
	pids := "none"
	if limit := sec.EffectivePidsLimit(); limit >= 0 {
		pids = strconv.FormatInt(limit, 10)
		if err := run.CheckPidsLimit(); err != nil {
			pids = "none"
			b.o.log.Warn("RUN steps' processes are not limited: no pids cgroup can be made here", "reason", err.Error())
		}
	}
	b.o.log.Info("RUN confinement", "seccomp", seccompMode, "masked_paths", !sec.SystemPathsUnconfined,
		"pids_limit", pids, "nodev", true)
	return sec, nil
}

// securityFlags lists the confinement settings that differ from the
// default, for a message.
func securityFlags(sec run.Security) string {
	var out []string
	if sec.SeccompUnconfined || sec.Seccomp != nil {
		out = append(out, "seccomp")
	}
	if sec.SystemPathsUnconfined {
		out = append(out, "systempaths")
	}
	if sec.PidsLimit != 0 {
		out = append(out, "pids-limit")
	}
	if len(sec.Rlimits) > 0 {
		out = append(out, "ulimit")
	}
	return strings.Join(out, ",")
}

// canRun refuses a stage whose RUN steps this machine cannot execute
// natively, before the stage starts, unless emulation was allowed (the
// caller checked that a binfmt handler exists).
func (b *builder) canRun(ps dockerfile.Stage) error {
	for _, cmd := range ps.Commands {
		if _, ok := cmd.(*instructions.RunCommand); ok {
			if err := b.canExecute(ps.Name, ps.Platform); err != nil {
				return b.plan.Errorf(dockerfile.Line(cmd), "RUN", err)
			}
			return nil
		}
	}
	return nil
}

// canExecute says why code of platform p cannot run here, if it cannot.
func (b *builder) canExecute(stage string, p specs.Platform) error {
	if b.o.allowEmulation || platform.CanExecute(platform.Host(), p) {
		return nil
	}
	if stage == "" {
		stage = "this stage"
	} else {
		stage = "stage " + stage
	}
	return fmt.Errorf("%w: %s is %s and this %s machine cannot execute its code natively; "+
		"build this platform on a matching node (kiln build-all --runner kubernetes), or allow emulation (--allow-emulation, with a binfmt handler registered)",
		ErrForeignRun, stage, platform.Format(p), platform.Format(platform.Host()))
}

// runCmd executes a RUN instruction in the stage's filesystem and turns
// what it changed into a layer.
func (b *builder) runCmd(ctx context.Context, s *stageState, c *instructions.RunCommand) error {
	b.runsLeft--
	if err := b.canExecute(s.name, s.platform); err != nil {
		return err // a RUN from a base image's ONBUILD triggers
	}
	var key layercache.Key
	if b.o.cache.CachesRun() {
		args, script, err := runArgs(s, c)
		if err != nil {
			return err
		}
		if key, err = b.runKey(ctx, s, c, args, script); err != nil {
			return err
		}
		createdBy := "RUN " + runHistory(args, s.buildArgs, s.vars) + " # buildkit"
		if hit, err := b.cacheLookup(ctx, s, "RUN", key, createdBy); hit || err != nil {
			return err
		}
	}
	env, err := b.runEnv()
	if err != nil {
		return err
	}
	// Stages the mounts read from are built first: in container isolation
	// a stage with RUN takes "/", which must then be this stage's.
	if err := b.mountStages(ctx, c); err != nil {
		return err
	}
	var root *rootfs.Root
	if env.isolation == run.Container {
		root, err = b.containerRoot(ctx, s)
	} else {
		root, err = b.ensureRoot(ctx, s)
	}
	if err != nil {
		return err
	}
	spec, cleanup, err := b.runSpec(ctx, s, c, root.Dir())
	defer cleanup()
	if err != nil {
		return err
	}
	if s.root != root || (env.isolation == run.Container && b.onSlash != s) {
		return fmt.Errorf("internal error: stage %s lost its filesystem while its RUN was prepared", s.name)
	}
	out := &lineLogger{log: b.o.log, stage: s.name, step: b.step}
	spec.Stdout, spec.Stderr = out, out
	if b.o.runOutput != nil {
		spec.Stdout, spec.Stderr = b.o.runOutput, b.o.runOutput
	}
	if env.isolation == run.Container {
		if err := b.checkContainerMounts(spec.Mounts); err != nil {
			return err
		}
		spec.Force, spec.Keep = b.o.force, b.protected
	}
	exclude := append(spec.MountPoints(), b.o.runExclude...)
	if env.isolation == run.Container {
		exclude = append(exclude, b.protected...)
	}
	layerPath := b.layerPath()
	var stepTime time.Duration
	start := time.Now()
	env.runner.SetLast(b.runsLeft <= 0) // an init started ahead for no step is waste
	stats, lf, err := b.snapshotStep(ctx, env, s, layerPath, exclude, func(dir string) error {
		spec.Root = dir
		t0 := time.Now()
		err := env.runner.Run(ctx, spec)
		stepTime = time.Since(t0)
		out.flush()
		var ee *run.ExitError
		if errors.As(err, &ee) {
			return &RunError{Args: spec.Args, Code: ee.Code, Signal: ee.Signal, Tail: ee.Tail}
		}
		return err
	})
	if err != nil {
		_ = os.Remove(layerPath)
		return err
	}
	for _, w := range stats.Warnings {
		b.o.log.Warn("RUN snapshot", "stage", s.name, "warning", w)
	}
	b.o.log.Info("RUN done", "stage", s.name, "seconds", roundSeconds(time.Since(start)), "step_seconds", roundSeconds(stepTime),
		"snapshot_seconds", roundSeconds(time.Since(start)-stepTime), "files", stats.Files, "dirs", stats.Dirs,
		"whiteouts", stats.Whiteouts+stats.Opaque, "bytes", stats.Bytes, "scanned", stats.Scanned, "layer_behind", lf.done != nil)
	createdBy := "RUN " + runHistory(spec.Args, s.buildArgs, s.vars) + " # buildkit"
	if stats.Empty() {
		_ = os.Remove(layerPath)
		s.history(b.created, createdBy, true)
		switch {
		case b.o.cache.CachesRun():
			b.cacheStore(s, key, nil, createdBy)
		case b.o.cache != nil:
			return b.advanceKey(s, nil)
		}
		return nil
	}
	l := lf.layer(s.layerType)
	s.layers = append(s.layers, l) // the root holds the change already
	s.history(b.created, createdBy, false)
	switch {
	case b.o.cache.CachesRun():
		b.cacheStore(s, key, l, createdBy)
	case b.o.cache != nil:
		return b.advanceKey(s, l)
	}
	return nil
}

// runHistory is RUN's created_by as BuildKit writes it (dockerfile2llb
// runCommandString): "|N K=V ..." for the N ARGs in scope, with their
// values in the step's environment ("" when unset), then the argv.
func runHistory(args, buildArgs []string, env *vars) string {
	var parts []string
	for _, k := range buildArgs {
		v, _ := env.Get(k)
		parts = append(parts, k+"="+v)
	}
	if len(parts) > 0 {
		parts = append([]string{fmt.Sprintf("|%d", len(parts))}, parts...)
	}
	return strings.Join(append(parts, args...), " ")
}

// snapshotStep runs step on the stage's root (or on an overlay of it) and
// writes the change as a gzipped layer at layerPath; when the change is
// stacked on the root (stackChange) the layer is written behind, while the
// build goes on.
func (b *builder) snapshotStep(ctx context.Context, env *runEnvironment, s *stageState, layerPath string, exclude []string, step func(dir string) error) (*snapshot.Stats, *layerFile, error) {
	lf, err := newLayerFile(layerPath, b.o)
	if err != nil {
		return nil, nil, err
	}
	root := s.root.Dir()
	opts := snapshot.Options{Exclude: exclude, SourceDateEpoch: b.epoch, MapIDs: env.mapIDs}
	var stats *snapshot.Stats
	if env.overlay {
		stats, err = b.overlayStep(ctx, s, opts, lf, step)
	} else {
		stats, err = walkStep(ctx, root, opts, lf, step)
	}
	if err != nil {
		lf.abort()
		return nil, nil, err
	}
	if lf.done != nil { // written behind (stackChange)
		return stats, lf, nil
	}
	if err := lf.close(); err != nil {
		return nil, nil, err
	}
	return stats, lf, nil
}

func walkStep(ctx context.Context, root string, opts snapshot.Options, out io.Writer, step func(string) error) (*snapshot.Stats, error) {
	w := snapshot.NewWalk(root, opts)
	if err := w.Before(ctx); err != nil {
		return nil, fmt.Errorf("recording the filesystem before RUN: %w", err)
	}
	if err := step(root); err != nil {
		return nil, err
	}
	stats, err := w.Diff(ctx, out)
	if err != nil {
		return nil, fmt.Errorf("snapshotting the change (walk): %w", err)
	}
	return stats, nil
}

// overlayStep runs step on an overlay of the stage's root. Its change is
// stacked on the root when the root is a stack of layer folders and the
// change can be (see stackChange): then the layer may be being written to
// lf behind the build (lf.done is set); else it is applied to the root and
// written to lf (still open) before overlayStep returns.
func (b *builder) overlayStep(ctx context.Context, s *stageState, opts snapshot.Options, lf *layerFile, step func(string) error) (*snapshot.Stats, error) {
	root := s.root.Dir()
	scratch, err := os.MkdirTemp(b.work, "overlay-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(scratch) // a stacked change is moved out of it first
	if s.stack != nil {
		// The stage's folders, if its upper holds nothing: the step's
		// overlay is then one overlay, not one on the stage's.
		if empty, err := emptyDir(s.stack.Upper); err == nil && empty {
			opts.Lowers, opts.UserXattr = s.stack.Lowers, layerstore.UserXattr()
		}
	}
	o, err := snapshot.NewOverlay(root, scratch, opts)
	if err != nil {
		return nil, err
	}
	defer func() { _ = o.Close() }()
	merged, err := o.Mount(ctx)
	if err != nil && len(opts.Lowers) > 0 {
		b.o.log.Debug("RUN step's overlay mounted on the stage, not on its folders", "stage", s.name, "reason", err.Error())
		opts.Lowers = nil
		if err := o.Close(); err != nil {
			return nil, err
		}
		if o, err = snapshot.NewOverlay(root, scratch, opts); err != nil {
			return nil, err
		}
		merged, err = o.Mount(ctx)
	}
	if err != nil {
		if errors.Is(err, snapshot.ErrOverlayUnsupported) && (b.o.snapshot == "" || b.o.snapshot == SnapshotAuto) {
			b.o.log.Warn("overlay snapshot refused here; walking the filesystem instead", "err", err)
			return walkStep(ctx, root, opts, lf, step)
		}
		return nil, fmt.Errorf("mounting the overlay for RUN: %w", err)
	}
	if err := step(merged); err != nil {
		return nil, err
	}
	c, err := o.Detach(ctx)
	if err != nil {
		return nil, fmt.Errorf("snapshotting the change (overlay): %w", err)
	}
	stats, stacked, err := b.stackChange(ctx, s, c, lf)
	if stacked || err != nil {
		return stats, err
	}
	stats, err = c.Apply(ctx, lf)
	if err != nil {
		return nil, fmt.Errorf("snapshotting the change (overlay): %w", err)
	}
	return stats, nil
}

// stackChange lays a RUN step's change over the stage's root instead of
// applying it, where the root is an overlay of layer folders (a stage
// mounted from the layer store): the root is mounted again with the step's
// change as its top lower, above what the stage's upper folder held (a
// lower too, when it holds anything: a COPY, a layer cache hit), under a
// fresh upper folder. The change is then read-only, and its layer is
// written behind the build (lf.writeBehind) while the next steps run: a
// step costs its run and a scan of what it changed, not the compression
// of its layer nor a copy of its files into the root. (A change of sockets
// alone, which makes no layer, is written at once.) false: the change is
// for Apply (the root is not a stack, the change is empty or has
// hardlinked names only a layer holds, the stack would not fit one mount,
// the root is busy); the root then shows what it showed before.
//
// Every folder of the new mount is new (the changes are moved into new
// folders, entry by entry): one that was an overlay's upper may still be
// "in use" by a copy of that mount in a mount namespace made meanwhile
// (another build's step, before it detached its copy of the host's
// mounts), and overlay (index=on) refuses such a folder as a lower or
// upper.
func (b *builder) stackChange(ctx context.Context, s *stageState, c *snapshot.Change, lf *layerFile) (*snapshot.Stats, bool, error) {
	if s.stack == nil || c.Empty() || !c.Stackable() {
		return nil, false, nil
	}
	root := s.root.Dir()
	old := *s.stack
	var dirs [2]string // the change, what the stage's upper held
	for i, prefix := range []string{"layer-", "stage-lower-"} {
		d, err := os.MkdirTemp(b.work, prefix)
		if err != nil {
			return nil, false, err
		}
		b.roots = append(b.roots, d)
		dirs[i] = d
	}
	step, prev := dirs[0], dirs[1]
	to := layerstore.Stack{Lowers: append([]string{step, prev}, old.Lowers...)}
	if err := b.freshUpper(&to, root); err != nil {
		return nil, false, err
	}
	if err := layerstore.CanMount(to.Lowers, to.Upper, to.Work); err != nil {
		b.o.log.Debug("RUN step's change applied, not stacked", "stage", s.name, "reason", err.Error())
		return nil, false, nil
	}
	if err := unix.Unmount(root, 0); err != nil {
		b.o.log.Debug("RUN step's change applied, not stacked", "stage", s.name, "reason", "unmounting the stage: "+err.Error())
		return nil, false, nil
	}
	// The stage is unmounted: it is mounted again below, stacked or as it
	// was (less the folders' identities), or the build fails.
	if err := moveEntries(old.Upper, prev); err != nil {
		return nil, false, fmt.Errorf("stage %s: stacking a RUN step's change: %w (the stage is left unmounted)", s.name, err)
	}
	if empty, err := emptyDir(prev); err != nil {
		return nil, false, err
	} else if empty {
		to.Lowers = append(to.Lowers[:1], old.Lowers...)
	}
	err := moveEntries(c.Dir(), step)
	if err == nil {
		err = layerstore.Mount(to.Lowers, to.Upper, to.Work, root)
	}
	if err != nil {
		if merr := moveEntries(step, c.Dir()); merr != nil {
			return nil, false, fmt.Errorf("stage %s: stacking a RUN step's change: %w; and moving it back: %v", s.name, err, merr)
		}
		// Fresh folders again: the failed mount may have marked its own.
		back := layerstore.Stack{Lowers: to.Lowers[1:]}
		merr := b.freshUpper(&back, to.Upper)
		if merr == nil {
			merr = layerstore.Mount(back.Lowers, back.Upper, back.Work, root)
		}
		if merr != nil {
			return nil, false, fmt.Errorf("stage %s: stacking a RUN step's change: %w; and mounting the stage back: %v", s.name, err, merr)
		}
		s.stack = &back
		_ = os.RemoveAll(old.Upper)
		_ = os.RemoveAll(old.Work)
		b.o.log.Debug("RUN step's change applied, not stacked", "stage", s.name, "reason", err.Error())
		return nil, false, nil
	}
	s.stack = &to
	_ = os.RemoveAll(old.Upper)
	_ = os.RemoveAll(old.Work)
	stats, err := c.Keep(step)
	if err != nil {
		return nil, true, err
	}
	if stats.Empty() {
		// Sockets alone: runCmd drops the layer, which must be done by then.
		if err := c.Write(ctx, lf); err != nil {
			return nil, true, err
		}
		return stats, true, nil
	}
	lf.writeBehind(&b.pending, func(w io.Writer) error { return c.Write(ctx, w) })
	return stats, true, nil
}

// freshUpper gives st a new upper folder, with the root attributes of the
// folder like (the merged root shows its upper folder's owner, mode and
// times), and a new work folder.
func (b *builder) freshUpper(st *layerstore.Stack, like string) error {
	for _, d := range []*string{&st.Upper, &st.Work} {
		dir, err := os.MkdirTemp(b.work, "stage-")
		if err != nil {
			return err
		}
		b.roots = append(b.roots, dir)
		*d = dir
	}
	return layerstore.CopyRootAttrs(like, st.Upper)
}

// moveEntries moves the entries of folder from into folder to (on the
// same filesystem), which must not hold the same names.
func moveEntries(from, to string) error {
	f, err := os.Open(from)
	if err != nil {
		return err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return fmt.Errorf("reading %s: %w", from, err)
	}
	for _, n := range names {
		if err := unix.Renameat2(unix.AT_FDCWD, filepath.Join(from, n), unix.AT_FDCWD, filepath.Join(to, n), unix.RENAME_NOREPLACE); err != nil {
			return fmt.Errorf("moving %s into %s: %w", filepath.Join(from, n), to, err)
		}
	}
	return nil
}

// emptyDir tells a folder with no entries.
func emptyDir(dir string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if errors.Is(err, io.EOF) {
		return true, nil
	}
	return len(names) == 0, err
}

// runSpec assembles the step: argv through SHELL, ENV and in-scope ARGs,
// USER, WORKDIR, network and mounts.
func (b *builder) runSpec(ctx context.Context, s *stageState, c *instructions.RunCommand, root string) (run.Spec, func(), error) {
	cleanup := func() {}
	args, script, err := runArgs(s, c)
	if err != nil {
		return run.Spec{}, cleanup, err
	}
	user := s.cfg.Config.User
	if user == "" {
		user = "0"
	}
	uid, gid, groups, err := run.ResolveUser(root, user)
	if err != nil {
		return run.Spec{}, cleanup, fmt.Errorf("USER %s: %w", user, err)
	}
	env := runEnviron(s)
	if !slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "HOME=") }) {
		env = append(env, "HOME="+run.HomeDir(root, uid)) // as runc, and so Docker, sets it
	}
	spec := run.Spec{
		Args: args, Env: env, Dir: workdirOf(s), UID: uid, GID: gid, Groups: groups,
		Hostname: "kiln", Log: b.o.log, Security: b.runState.security,
	}
	switch n := instructions.GetNetwork(c); n {
	case instructions.NetworkNone:
		spec.Network = run.NetworkNone
	case instructions.NetworkHost, instructions.NetworkDefault, "":
		spec.Network = run.NetworkHost
	default:
		return run.Spec{}, cleanup, fmt.Errorf("%w: RUN --network=%s", ErrNotSupported, n)
	}
	mounts, secretEnv, cleanup, err := b.runMounts(ctx, s, c)
	spec.Mounts = mounts
	spec.Env = withEnv(spec.Env, secretEnv...) // the step's only: never in the config, the history or a log
	if err == nil && script != nil {
		var dir string
		if dir, err = os.MkdirTemp(b.work, "heredoc-"); err == nil {
			mountsCleanup := cleanup
			cleanup = func() { mountsCleanup(); _ = os.RemoveAll(dir) }
			err = os.WriteFile(filepath.Join(dir, filepath.Base(script.Name)), []byte(script.Data), 0o755)
			spec.Mounts = append(spec.Mounts, run.Mount{Source: dir, Target: heredocDir, ReadOnly: true})
		}
	}
	return spec, cleanup, err
}

// runArgs is RUN's argv, as BuildKit makes it (dockerfile2llb dispatchRun):
// exec form as written, shell form through SHELL. A command that is only a
// heredoc runs its text as the shell's script (or, starting with "#!", as
// a file of its own: script is then that file's name and content, to mount
// at heredocDir); other heredocs are put back after the command line for
// the shell to read.
func runArgs(s *stageState, c *instructions.RunCommand) (args []string, script *instructions.ShellInlineFile, err error) {
	cl := c.ShellDependantCmdLine
	if len(cl.Files) > 0 {
		if len(cl.CmdLine) != 1 || !cl.PrependShell {
			return nil, nil, fmt.Errorf("a heredoc needs the shell form of RUN")
		}
		if parser.MustParseHeredoc(cl.CmdLine[0]) != nil {
			f := cl.Files[0]
			data := f.Data
			if f.Chomp {
				data = parser.ChompHeredocContent(data)
			}
			if strings.HasPrefix(data, "#!") {
				f.Data = data
				cl = instructions.ShellDependantCmdLine{CmdLine: []string{path.Join(heredocDir, f.Name)}, PrependShell: true}
				return s.commandLine(cl), &f, nil
			}
			cl = instructions.ShellDependantCmdLine{CmdLine: []string{data}, PrependShell: true}
		} else {
			var b strings.Builder
			b.WriteString(cl.CmdLine[0])
			for _, f := range cl.Files {
				b.WriteByte('\n')
				b.WriteString(f.Data)
				b.WriteString(f.Name)
			}
			cl = instructions.ShellDependantCmdLine{CmdLine: []string{b.String()}, PrependShell: true}
		}
	}
	return s.commandLine(cl), nil, nil
}

// heredocDir is where a RUN heredoc that starts with "#!" is mounted, as its
// own executable file (BuildKit mounts it at /dev/pipes; kiln's /dev is a
// fresh tmpfs of the step's, so it takes a folder of its own, made and
// removed around the step like every mount point).
const heredocDir = "/.kiln-heredoc"

// runEnviron is the step's environment: the stage's ENV and the ARGs in
// scope (ARGs reach the step, never the image), with a default PATH.
func runEnviron(s *stageState) []string {
	var env []string
	hasPath := false
	for _, k := range s.vars.Keys() {
		v, _ := s.vars.Get(k)
		env = append(env, k+"="+v)
		hasPath = hasPath || k == "PATH"
	}
	if !hasPath {
		env = append(env, "PATH="+defaultPath)
	}
	return env
}

func workdirOf(s *stageState) string {
	if s.cfg.Config.WorkingDir == "" {
		return "/"
	}
	return s.cfg.Config.WorkingDir
}

// mountStages builds the stages RUN --mount=from= names.
func (b *builder) mountStages(ctx context.Context, c *instructions.RunCommand) error {
	for _, m := range instructions.GetMounts(c) {
		if m.From == "" {
			continue
		}
		if i := b.plan.StageIndex(m.From, true); i >= 0 {
			if _, err := b.stage(ctx, i); err != nil {
				return err
			}
		}
	}
	return nil
}

// runMounts turns RUN --mount flags into bind mounts, and secret mounts
// with env=NAME into NAME=value for the step's environment. cleanup removes
// the temporary files (secrets, tmpfs folders) and releases the cache
// folders after the step.
func (b *builder) runMounts(ctx context.Context, s *stageState, c *instructions.RunCommand) (out []run.Mount, secretEnv []string, cleanup func(), err error) {
	var temps []string
	var releases []func()
	heldCaches := map[string]string{}
	cleanup = func() {
		for _, t := range temps {
			_ = os.RemoveAll(t)
		}
		for _, r := range releases {
			r()
		}
	}
	for _, m := range instructions.GetMounts(c) {
		target := m.Target
		if target != "" && !path.IsAbs(target) {
			target = path.Join(workdirOf(s), target)
		}
		switch m.Type {
		case instructions.MountTypeCache:
			dir, held := heldCaches[cacheKey(m)]
			if !held { // one step naming one cache twice holds it once
				var release func()
				var err error
				if dir, release, err = b.cacheMountDir(ctx, m); err != nil {
					return nil, nil, cleanup, err
				}
				releases = append(releases, release)
				heldCaches[cacheKey(m)] = dir
			}
			out = append(out, run.Mount{Source: dir, Target: target, ReadOnly: m.ReadOnly, Shared: true})
		case instructions.MountTypeSecret:
			mount, kv, temp, err := b.stepSecret(m, workdirOf(s))
			if err != nil {
				return nil, nil, cleanup, err
			}
			if temp != "" {
				temps = append(temps, temp)
			}
			if mount != nil {
				out = append(out, *mount)
			}
			if kv != "" {
				secretEnv = append(secretEnv, kv)
			}
		case instructions.MountTypeBind:
			src, err := b.copySource(ctx, s, m.From)
			if err != nil {
				return nil, nil, cleanup, err
			}
			host, err := src.Resolve(m.Source)
			if err != nil {
				return nil, nil, cleanup, fmt.Errorf("RUN --mount=type=bind,source=%s: %w", m.Source, err)
			}
			if !m.ReadOnly {
				// rw: the step may write, and its writes are thrown away
				// (BuildKit): it gets a copy, never the context or a stage.
				dir, err := os.MkdirTemp(b.work, "bind-")
				if err != nil {
					return nil, nil, cleanup, err
				}
				temps = append(temps, dir)
				cp := filepath.Join(dir, "src")
				if err := run.CopyTree(ctx, host, cp); err != nil {
					return nil, nil, cleanup, fmt.Errorf("RUN --mount=type=bind,source=%s,rw: %w", m.Source, err)
				}
				host = cp
			}
			out = append(out, run.Mount{Source: host, Target: target, ReadOnly: m.ReadOnly})
		case instructions.MountTypeTmpfs:
			dir, err := os.MkdirTemp(b.work, "tmpfs-")
			if err != nil {
				return nil, nil, cleanup, err
			}
			temps = append(temps, dir)
			out = append(out, run.Mount{Source: dir, Target: target})
		default:
			return nil, nil, cleanup, fmt.Errorf("%w: RUN --mount=type=%s", ErrNotSupported, m.Type)
		}
	}
	return out, secretEnv, cleanup, nil
}

// lineLogger logs a step's output line by line.
type lineLogger struct {
	log   interface{ Info(string, ...any) }
	stage string
	step  *stepTracker // the display's step, if any
	mu    sync.Mutex
	buf   []byte
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.emit(string(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
	if len(l.buf) > 64<<10 { // a very long line: log it in pieces
		l.emit(string(l.buf))
		l.buf = l.buf[:0]
	}
	return len(p), nil
}

func (l *lineLogger) emit(line string) {
	line = strings.TrimRight(line, "\r")
	l.log.Info("RUN output", "stage", l.stage, "out", line)
	l.step.output(line)
}

// flush logs a last line without a newline.
func (l *lineLogger) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		l.emit(string(l.buf))
		l.buf = nil
	}
}
