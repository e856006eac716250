#!/usr/bin/env bash
# Installs the Debian packages kiln's tests and benchmarks need, if missing.
# Idempotent and quiet when everything is there.
set -euo pipefail
need=()
command -v docker-registry >/dev/null 2>&1 || [ -x /usr/bin/docker-registry ] || need+=(docker-registry)
command -v skopeo >/dev/null 2>&1 || need+=(skopeo)
[ -x /bin/busybox ] || command -v busybox >/dev/null 2>&1 || need+=(busybox-static)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v buildah >/dev/null 2>&1 || need+=(buildah)
command -v umoci >/dev/null 2>&1 || need+=(umoci)
command -v git >/dev/null 2>&1 || need+=(git)
# newuidmap/newgidmap: rootless RUN with a subordinate id range.
command -v newuidmap >/dev/null 2>&1 || need+=(uidmap)
# zsh, fish: test/completion_test.go loads kiln's completion scripts into them.
command -v zsh >/dev/null 2>&1 || need+=(zsh)
command -v fish >/dev/null 2>&1 || need+=(fish)
# The RUN corpus (test/run_corpus_test.go) also builds an arm64 base image
# from Debian's busybox-static:arm64 package, kept as a .deb in this folder
# (the tests read KILN_TEST_CACHE, default the same path).
cache=${KILN_TEST_CACHE:-/var/cache/kiln-test}
arm64_deb=$cache/busybox-static_arm64.deb
# Optional: test/run_docker_test.go runs kiln's image under a Docker engine
# started by hand when Debian's docker.io is there (it skips otherwise).
optional=()
command -v dockerd >/dev/null 2>&1 || optional+=(docker.io)
# Last, .ci/k8s.sh builds (once, cached) the Kubernetes test cluster's
# binaries and installs containerd, runc and the CNI plugins if missing.
k8s() { bash "$(dirname "$0")/k8s.sh"; }
[ ${#need[@]} -eq 0 ] && [ ${#optional[@]} -eq 0 ] && [ -s "$arm64_deb" ] && { k8s; exit 0; }
sudo=""
if [ "$(id -u)" != 0 ] && ! command -v sudo >/dev/null 2>&1 && [ ${#need[@]} -eq 0 ] && [ -s "$arm64_deb" ]; then
  k8s
  exit 0 # only optional packages missing, and no way to install them
fi
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "deps: need root (or sudo) to apt-get install ${need[*]} and fetch $arm64_deb" >&2; exit 1; }
  sudo=sudo
fi
export DEBIAN_FRONTEND=noninteractive
if [ ${#need[@]} -gt 0 ] || [ ${#optional[@]} -gt 0 ]; then
  $sudo apt-get update -qq
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "deps: installing ${need[*]}"
  $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if [ ${#optional[@]} -gt 0 ]; then
  echo "deps: installing ${optional[*]} (optional)"
  $sudo apt-get install -y -qq --no-install-recommends "${optional[@]}" >/dev/null 2>&1 ||
    echo "deps: could not install ${optional[*]}; the tests that need it will skip" >&2
fi
if [ ! -s "$arm64_deb" ]; then
  echo "deps: fetching busybox-static:arm64 into $cache"
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    $sudo dpkg --add-architecture arm64
    $sudo apt-get update -qq
  fi
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  # apt-get download runs as _apt where it can: give it a folder it may write.
  chmod 0777 "$tmp"
  (cd "$tmp" && $sudo apt-get download -qq busybox-static:arm64 >/dev/null 2>&1) ||
    (cd "$tmp" && $sudo apt-get update -qq && $sudo apt-get download -qq busybox-static:arm64 >/dev/null)
  $sudo mkdir -p "$cache"
  $sudo cp "$tmp"/busybox-static_*_arm64.deb "$arm64_deb.tmp"
  $sudo mv "$arm64_deb.tmp" "$arm64_deb"
fi
k8s
