// Package manifest is kiln's view of images at rest and on the wire: OCI image
// layouts on disk (the warm cache and build outputs), registry access with
// retries and mirrors, and selecting a platform out of an image index.
//
// The warm cache is an OCI image layout shared by many processes: warmers add
// to it, builds read from it, a nightly prune deletes from it. Layout gives
// every one of them the same guarantees: a blob appears whole or not at all,
// index.json is replaced atomically under an exclusive lock, and a process that
// holds the shared "in use" lock never sees a blob vanish under it.
//
//	l, err := manifest.OpenLayout("/var/cache/kiln")
//	unlock, err := l.LockShared(ctx)      // builds and warmers: keep blobs alive
//	defer unlock()
//	img, err := l.Image("busybox:1.36", platform.MustParse("linux/arm64"))
//
// Registry access goes through a Client, which knows each registry's
// settings (insecure, TLS: CA, client certificate, unverified; mirrors), the
// Docker credential chain, and retries what
// is worth retrying (5xx, 429 with Retry-After, resets, stalls) and nothing
// else (401, 403, 404):
//
//	c := manifest.NewClient(manifest.WithRegistries(cfg))
//	desc, src, err := c.Get(ctx, "busybox:1.36")
package manifest
