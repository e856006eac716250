// Package buildcontext gives the builder a read-only, confined view of a build
// context, whatever its source, with .dockerignore applied as Docker does.
//
// A context may be a directory ("dir://PATH" too, as kaniko writes it), a tar
// file (plain, gzip or bzip2, detected by its magic bytes; "tar://PATH"),
// "-" or "tar://stdin" for a tar on stdin (or a lone Dockerfile, as with
// `docker build - < Dockerfile`), an http(s) URL of a tarball, or a git URL:
// Docker's "repo.git#ref:subdir" or kaniko's "git://host/repo#ref#commit",
// fetched over HTTPS (see ParseGitURL and GitOptions). Git runs as the system
// git binary when there is one, else as go-git in process (BuiltinGit).
// s3:// and gs:// are refused with ErrUnsupportedSource. Everything but a
// directory is materialised under Options.TempDir and removed by Close.
// Options.SubPath then picks a folder of it as the root, and
// Options.Dockerfile may name a host file outside it, as `docker build -f`.
//
//	bc, err := buildcontext.Open(ctx, "https://github.com/acme/api.git#v1.4.2:svc", buildcontext.Options{
//		Dockerfile: "Dockerfile",
//		TempDir:    workDir,
//	})
//	if err != nil {
//		return err
//	}
//	defer bc.Close()
//	dockerfile, err := bc.Dockerfile()      // sent even when .dockerignore excludes it
//	srcs, err := bc.Glob("cmd/*/main.go")   // COPY sources, excluded paths removed
//	host, err := bc.Resolve(srcs[0])        // a host path, never outside bc.Root()
//	err = bc.Walk("cmd", func(rel string, info fs.FileInfo) error { ... })
//
// Paths given to and returned by a Context are slash-separated and relative to
// the context root; the root acts as "/" for "..", absolute paths and absolute
// symlink targets, exactly as Docker resolves COPY sources. A path that
// .dockerignore excludes does not exist for Resolve, Glob and Walk, except that
// an excluded directory still holding re-included ("!") entries is kept as
// their parent, as BuildKit sends it.
//
// Methods of a Context are safe for concurrent use.
package buildcontext
