#!/bin/sh
# Puts a static busybox for ARCH in OUT, with a link per applet: the debug
# image's /busybox (make image). The binary is the machine's own
# /bin/busybox when ARCH is the machine's, else Debian's busybox-static for
# ARCH (a .deb kept in $KILN_TEST_CACHE by make deps, or fetched here).
#   sh deploy/image/busybox.sh arm64 deploy/image/bin/busybox-arm64
set -eu
arch=$1 out=$2
deb=${KILN_TEST_CACHE:-/var/cache/kiln-test}/busybox-static_$arch.deb
command -v busybox >/dev/null 2>&1 || [ -x /bin/busybox ] || { echo "busybox.sh: install busybox-static (make deps)" >&2; exit 1; }
host_busybox=$(command -v busybox 2>/dev/null || echo /bin/busybox)
rm -rf "$out"
mkdir -p "$out"
if [ "$arch" = "$(dpkg --print-architecture 2>/dev/null || uname -m)" ]; then
  cp "$host_busybox" "$out/busybox"
else
  if [ ! -s "$deb" ]; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    chmod 0777 "$tmp"
    (cd "$tmp" && apt-get download -qq "busybox-static:$arch" >/dev/null) ||
      { echo "busybox.sh: no busybox-static for $arch (dpkg --add-architecture $arch && apt-get update, or make deps)" >&2; exit 1; }
    deb=$(ls "$tmp"/busybox-static_*.deb)
  fi
  dpkg-deb --fsys-tarfile "$deb" | tar -xO ./bin/busybox >"$out/busybox"
fi
chmod 0755 "$out/busybox"
# The applets of the machine's busybox: the same Debian version, the same list.
for applet in $("$host_busybox" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$out/$applet"
done
