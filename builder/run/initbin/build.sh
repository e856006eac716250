#!/bin/sh
# build.sh GOARCH: builds kiln's small RUN step init (builder/run/initexe)
# for linux/GOARCH into builder/run/initbin/GOARCH/kiln-init, writes its
# stamp beside it (kiln-init.stamp) and prints the stamp. The stamp is a
# hash of what the init is made of: the Go toolchain, go.mod and go.sum,
# and the sources of package run and its seccomp compiler. kiln uses the
# embedded init only when it was built with the same stamp
# (-X kiln/builder/run.initStamp=STAMP, as the Makefile and the e2e tests
# build it); otherwise, a plain `go build` included, it starts itself.
set -eu
arch=${1:?usage: build.sh GOARCH}
root=$(cd "$(dirname "$0")/../../.." && pwd)
cd "$root"
go=${GO:-go}
stamp=$( {
	"$go" env GOVERSION
	cat go.mod go.sum
	for f in $(ls builder/run/*.go builder/run/seccomp/*.go builder/run/initexe/*.go | grep -v '_test\.go$' | LC_ALL=C sort); do
		echo "$f"
		cat "$f"
	done
} | sha256sum | cut -c1-32)
out=builder/run/initbin/$arch
mkdir -p "$out"
CGO_ENABLED=0 GOOS=linux GOARCH=$arch "$go" build -trimpath -ldflags '-s -w' -o "$out/kiln-init.tmp" ./builder/run/initexe
mv "$out/kiln-init.tmp" "$out/kiln-init"
printf '%s\n' "$stamp" >"$out/kiln-init.stamp.tmp"
mv "$out/kiln-init.stamp.tmp" "$out/kiln-init.stamp"
echo "$stamp"
