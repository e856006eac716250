// Package builder builds one platform of an image from a Dockerfile and a
// build context, in userspace, with no daemon: the heart of `kiln build`.
//
// It evaluates the Dockerfile with builder/dockerfile, builds only the stages
// the target needs, takes base images through a small BaseImages interface
// (the warm cache first, the registry second: CacheThenRemote), turns COPY and
// ADD into layers made directly from the copied files, and metadata
// instructions into the image config, with BuildKit's history entries.
//
//	cache, _ := manifest.OpenLayout("/var/cache/kiln")
//	client, _ := manifest.NewClient()
//	res, err := builder.Build(ctx, builder.Request{
//		Context:   "./api",
//		Platform:  platform.MustParse("linux/arm64"),
//		BuildArgs: map[string]string{"VERSION": "1.4.2"},
//	}, builder.WithBaseImages(builder.CacheThenRemote(cache, client, false)),
//		builder.WithWorkDir(scratchDir))
//	if err != nil {
//		return err // a *dockerfile.Error names the Dockerfile line at fault
//	}
//	fmt.Println(res.Digest) // res.Image is a v1.Image to push or write
//
// RUN executes natively (builder/run: chroot, rootless or container
// isolation, chosen at the first RUN and logged) and its change becomes a
// layer (builder/snapshot: overlay upper dir or stat walk, WithSnapshot).
// A RUN in a stage this machine cannot execute fails before the stage
// starts, with ErrForeignRun naming the line, unless WithAllowEmulation. A
// step that exits non-zero is a *RunError (exit code, last output lines).
// Programs that call Build must call run.MaybeInit first thing in main (and
// in TestMain): RUN re-executes the program as the step's init. ADD of a git
// repository matches ErrNotSupported.
//
// Release what a build holds once its image is written or pushed: the
// Result's layer files (Result.Close) and the cache's shared lock
// (CachedBases.Close).
//
// Stage filesystems live under the work directory as builder/rootfs trees,
// unpacked only when an instruction needs to look at them (COPY into an
// existing folder, --chown by name, WORKDIR, COPY --from a stage, RUN).
package builder
