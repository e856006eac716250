// Package runner builds one platform of one image somewhere and says where
// it ended up. It is the seam between `kiln build-all`'s coordinator
// (builder/buildall) and the machines that do the work: Local builds in this
// process; a Kubernetes runner, later, will build on a node of the platform's
// architecture and push the result by digest.
//
//	local := runner.NewLocal(
//		runner.WithBaseImages(builder.CacheThenRemote(cache, client, false)),
//		runner.WithWorkDir(scratch),
//	)
//	out, err := local.Run(ctx, runner.Job{
//		Image:    "api",
//		Platform: platform.MustParse("linux/arm64"),
//		Request:  builder.Request{Context: "./api"},
//		Log:      os.Stderr,
//	})
//	if err != nil {
//		return err // an *ExecutionError when a stage would need to run arm64 code here
//	}
//	defer out.Close()
//	fmt.Println(out.Digest, out.Where) // sha256:... local
//
// kiln never emulates by accident. Decide tells, from the Dockerfile alone,
// whether building a platform on a host runs foreign code: a RUN in a stage
// the target needs whose filesystem starts from an image of another
// architecture. COPY-only stages, and stages FROM --platform=$BUILDPLATFORM,
// build anywhere; anything else needs a matching node, or an explicit opt-in
// to emulation with a registered binfmt_misc handler (BinfmtHandler).
//
// After a build, Local reads the ELF headers of the binaries the build added
// (builder/archcheck): an arm64 image whose new binaries are x86-64 fails
// with their paths.
package runner
