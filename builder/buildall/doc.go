// Package buildall builds images for many platforms and stitches each
// image's platforms into one OCI image index: the library behind
// `kiln build-all`.
//
// A Coordinator plans first, from the Dockerfiles alone and before any work:
// which (image, platform) pairs build natively, which cross-build because no
// stage they need runs code, and which would have to execute another
// architecture's code and so need a matching node (or --allow-emulation with
// a registered binfmt_misc handler). A required platform that cannot build
// fails its image up front; an optional one is dropped.
//
// Run then builds every planned pair through a runner.Runner, a bounded
// number at a time, each with its own work folder and log prefix
// ("[api linux/arm64] "). A failed build stops nothing independent, but an
// image's index is pushed only when every required platform built; failed
// optional platforms are left out and reported.
//
//	c := buildall.New(runner.NewLocal(runner.WithBaseImages(bases)),
//		buildall.WithJobs(2), buildall.WithClient(client), buildall.WithLogWriter(os.Stderr))
//	plan, err := c.Plan(ctx, []buildall.Image{{
//		Name:      "api",
//		Request:   builder.Request{Context: "./api"},
//		Platforms: []specs.Platform{platform.MustParse("linux/amd64"), platform.MustParse("linux/arm64")},
//		Tags:      tags,
//		Push:      true,
//	}})
//	if err != nil {
//		return err // bad input: no platforms, a stdin context, a duplicate name
//	}
//	fmt.Print(plan) // what would be built where, and why
//	rep, err := c.Run(ctx, plan)
//	for _, img := range rep.Images {
//		fmt.Println(img.Name, img.Index, img.Err) // the index digest, pushed to every tag
//	}
//
// The index is manifest.BuildIndex's: children in platform order, so the
// same builds give the same index digest. Platform images are pushed by
// digest into the first tag's repository before the index goes to every tag,
// mounted across repositories where the registry allows. An image with
// OCIDir set is also written there as an OCI layout holding the index.
package buildall
