// Package layercache is kiln's layer cache: a step of a Dockerfile whose
// inputs did not change is not run again; its layer is taken from a store.
//
// # Keys
//
// Every key is a SHA-256 over length-prefixed fields (Builder), starting
// with the schema version and the kind of key, so no two kinds of input can
// ever hash alike. The builder computes them; this package only hashes.
//
// A stage carries a state key, the identity of the filesystem it has so
// far:
//
//   - FROM an image: the image's manifest digest (the platform's own
//     manifest, not the index) and the platform (os/arch/variant).
//   - FROM scratch: "scratch" and the platform.
//   - FROM another stage: that stage's state key.
//
// Each step that may write files (RUN, COPY, ADD, and WORKDIR: whether its
// folder exists already is known only from the stage's files, so it has an
// entry either way, empty when the folder was there) has a step key, which becomes the stage's state key after
// it. A step key hashes:
//
//   - the state key it starts from, so a change to any earlier step, or a
//     base tag that moved to another digest, changes every key after it;
//   - the platform in full, and whether the build is reproducible (with
//     its SOURCE_DATE_EPOCH: file times in the layer depend on it);
//   - the instruction after ARG and ENV expansion, with every flag;
//   - USER, WORKDIR and SHELL as the step sees them;
//   - RUN: the argv (through SHELL; heredoc text included), the whole
//     environment the step gets (ENV plus the ARGs in scope, with their
//     values; a --build-arg no ARG in scope declares is not seen and is
//     not hashed), --network, and each --mount's spec. A bind mount's
//     source files are hashed as COPY's are; cache and tmpfs mounts by
//     their spec only; secrets by id, target, env and required, never by
//     value;
//   - COPY and ADD from the build context: the files selected, after
//     .dockerignore and globbing, by path, type, mode, owner, size, link
//     target and content (SHA-256), never by modification time; heredocs
//     by their text;
//   - COPY --from=<stage|image>: the same digest of the files actually
//     copied out of that stage. Computing it needs the stage's files, so
//     it is remembered: a value entry keyed by the stage's layer diff_ids
//     and the source patterns maps to that digest, and a later build of
//     the same stage content finds it without unpacking anything. A stage
//     that changed elsewhere gives the same digest (a hit); a changed
//     copied file gives another (a miss);
//   - ADD <url>: the downloaded content (the URL is fetched on every
//     build; with --checksum the content must match it).
//
// A step the cache is told not to keep (--cache-run-layers=false,
// --cache-copy-layers=false) runs every time, and the state key after it
// hashes the diff_id of the layer it made, so later steps hit only if it
// made the same files.
//
// Metadata-only instructions (ENV, ARG, USER, LABEL, CMD, EXPOSE, ...)
// have no entry. They change later keys
// exactly through what later steps see: ENV and ARG values through
// expansion and RUN's environment, USER, WORKDIR and SHELL through the
// fields above. A LABEL or CMD changes the image's config, never a later
// layer, so it changes no key.
//
// # Entries and stores
//
// An entry is a small OCI image: one layer (the step's, byte for byte) or
// none (the step changed no file, or a value entry), a config naming the
// layer's diff_id, and annotations (AnnotationKey, AnnotationCreated,
// AnnotationStep, AnnotationValue). Two stores hold them behind one
// interface: a registry repository (kaniko's --cache-repo), each entry
// tagged with its key, and the warm cache's OCI layout, each entry filed in
// index.json with its key in an annotation (kiln warm --prune drops those
// older than the TTL; --verify checks them like any image). An entry older
// than the TTL is a miss. A store that cannot be read or written is a
// warning and a miss, never a failed build; an entry whose blob does not
// match its digest is a miss, logged, and dropped from the local store.
package layercache
