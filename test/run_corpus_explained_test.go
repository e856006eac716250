package test

// runKnownBugs are the expectations of case.json kiln fails today: the
// case passes while every problem it finds holds one of these texts and
// each text matches a problem; a bug fixed (or a new problem) fails it:
// remove the entry then.
var runKnownBugs = map[string]knownBug{}

// knownBug is a kiln bug a test expects, and the texts of the problems it
// causes.
type knownBug struct {
	why      string
	problems []string
}

var runDiffExplained = map[string]explainedDiff{
	"hardlink-lower": {
		why: "a new link to a file of the base: BuildKit's differ sees the base file's link count change and writes it with the new name " +
			"as a hardlink to it (continuity fs.Changes, archive hardlink tracking by inode), as kiln does; buildah's vfs diff writes only the new name, as a copy",
		diffs: []string{"- /etc/motd-link hardlink 0644 0:0 -> /etc/motd", "+ /etc/motd-link file 0644 0:0 10B 45c03e2bfe7b5921"},
	},
	"cache-twice": {
		why:   "BuildKit removes the mount points it made for a step, parents included (executor/stubs.go MountStubsCleaner; client/llb/exec.go sets RemoveMountStubsRecursive); buildah 1.28 leaves /var/cache",
		diffs: []string{"+ /var dir 0755 0:0", "+ /var/cache dir 0755 0:0"},
	},
	"bind-context": {
		why:   "BuildKit removes the mount points it made for a step, parents included (executor/stubs.go MountStubsCleaner, RemoveMountStubsRecursive); buildah 1.28 leaves /mnt",
		diffs: []string{"+ /mnt dir 0755 0:0"},
	},
	"bind-rw": {
		why:   "BuildKit removes the mount points it made for a step, parents included (executor/stubs.go MountStubsCleaner, RemoveMountStubsRecursive); buildah 1.28 leaves /mnt",
		diffs: []string{"+ /mnt dir 0755 0:0"},
	},
	"mount-stub-parents": {
		why: "BuildKit removes a mount target and the folders it made for it, deepest first, each while empty, so a folder the step wrote into stays " +
			"(executor/stubs.go MountStubsCleaner, RemoveMountStubsRecursive); buildah 1.28 removes only the target itself",
		diffs: []string{"+ /opt/base/new dir 0755 0:0", "+ /srv dir 0755 0:0", "+ /srv/ctx dir 0755 0:0", "+ /var/cache dir 0755 0:0"},
	},
	"add-archive-xz": {
		why: "folders an archive implies without entries of their own are 0755 root's under ADD --chown (go-archive createImpliedDirectories: " +
			"IDMap.RootPair, which BuildKit's unpack uses); buildah 1.28 gives them --chown's owner",
		diffs: []string{"- /z/deep dir 0755 0:0", "+ /z/deep dir 0755 1000:1000", "- /z/deep/nested dir 0755 0:0", "+ /z/deep/nested dir 0755 1000:1000"},
	},
	"kill-pid-one": {
		why: "BuildKit runs a step as PID 1 of a new PID namespace (runc, the default spec's namespaces), where the kernel drops a SIGKILL " +
			"the process sends itself, as kiln's chroot isolation does; buildah's chroot isolation makes no PID namespace, so the shell dies",
		diffs: []string{"- build succeeds", "+ build fails"},
	},
	"arg-after-env": {
		why: "an ARG with a value declared after an ENV of the same name sets the variable for the later RUN steps: BuildKit's dispatchArg " +
			"adds it to the step environment (d.state.AddEnv), after the ENV, so the ARG wins in RUN (the config keeps the ENV); " +
			"buildah, like Docker's classic builder, lets the ENV win whatever the order",
		diffs: []string{"- /x file 0644 0:0 10B af5cee80a9f81cb0", "+ /x file 0644 0:0 9B 90542cd7c20c4ab6"},
	},
}

// snapshotExplained are the differences between the overlay and the walk
// snapshot of a case the corpus expects, exactly: lines of compareSnapshots
// ("- " overlay, "+ " walk).
var snapshotExplained = map[string]explainedDiff{}
