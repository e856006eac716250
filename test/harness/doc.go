// Package harness is kiln's shared end-to-end test harness: a real registry
// process, a fault-injecting proxy to put in front of it, and deterministic
// fixture images to push into it. It serves both `go test` and benchmark
// programs, so every core function takes a context and returns an error; the
// New* functions are thin testing.TB wrappers that fail the test and register
// cleanup.
//
// Typical use in a test:
//
//	reg := harness.NewRegistry(t) // Debian's docker-registry on 127.0.0.1
//	fixtures, err := harness.PushStandardFixtures(t.Context(), reg.Addr)
//	if err != nil {
//		t.Fatal(err)
//	}
//	flaky := harness.NewFaultProxy(t, reg.Addr, harness.Faults{Seed: 1, Status500: 0.3})
//	// point the code under test at flaky.Addr instead of reg.Addr ...
//	t.Log(flaky.Counts()) // map[requests:17 status500:5]
//	tlsReg, pki := harness.NewTLSRegistry(t, true) // https with a new CA; true: client certificates required
//	// pki.CA, pki.ClientCert, pki.ClientKey are PEM files for the code under test
//
// In a benchmark program:
//
//	reg, err := harness.StartRegistry(ctx, dir, os.Stderr)
//	if err != nil { ... }
//	defer reg.Close()
//	big, err := harness.PushLargeFixture(ctx, reg.Addr, 512)
//
// Images are built from specs (ImageSpec, LayerSpec): the same spec always
// gives the same digest, and reusing a LayerSpec in two images makes them
// share that blob. Layers are generated as streams, so a multi-gigabyte layer
// never sits in memory.
//
// Machine safety: every server listens on 127.0.0.1 only, files are written
// only under the folder the caller passes, and only processes started here
// are signalled, by PID.
package harness
