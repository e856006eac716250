// Package archcheck catches binaries built for the wrong machine. kiln builds
// each platform natively and never emulates, so a RUN that downloads the
// amd64 release of a tool into an arm64 image succeeds and leaves an image
// that fails only when it is run. After a platform's build, archcheck reads
// the ELF header of every executable and shared object the build added and
// reports those whose architecture the platform cannot run.
//
// Only the first 64 bytes of each candidate file are read, straight from the
// layer stream; nothing is unpacked or held in memory:
//
//	rep, err := archcheck.CheckImageLayers(ctx, newLayers, platform.MustParse("linux/arm64"), archcheck.Options{})
//	if err != nil {
//		return err // the layers could not be read
//	}
//	if err := rep.Err(); err != nil {
//		return err // image for linux/arm64 contains binaries for another architecture: /usr/bin/app (x86-64, linux/amd64) ...
//	}
//
// Candidates are regular files with any execute bit and files named like
// shared objects (*.so, *.so.*), whatever their mode. Scripts, data and
// truncated files are not ELF and are counted, not judged. Only the
// architecture is compared: an ELF header does not say which variant
// (arm/v6 or v7, amd64/v2 or v3) or, reliably, which OS it is for. A 386
// binary is fine in an amd64 image (amd64 CPUs run it natively); 32-bit arm
// in an arm64 image is not (many arm64 server CPUs have dropped AArch32).
//
// Cross toolchains and SDK sysroots hold other architectures' libraries on
// purpose; Options.Ignore names such trees.
package archcheck
