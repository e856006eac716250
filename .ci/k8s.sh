#!/usr/bin/env bash
# Builds, once, the binaries of the Kubernetes test cluster that
# test/harness/kube starts (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubelet, kwok and its stage configs, a static pause program)
# into $KILN_TEST_CACHE/k8s-v1.37.2/bin, and apt-gets Debian's containerd,
# runc, containernetworking-plugins (iproute2, util-linux) if missing.
#
# Every binary is built in a throwaway module under the cache folder (never
# in the repository), written to a temporary name and renamed, and recorded
# by a stamp holding its pinned versions: a second run with everything built
# is a no-op (quiet, well under a second). A cold run took 19 minutes on 2
# CPUs (kube-apiserver ~10 of them; the other Kubernetes commands share its
# module and build cache) and leaves ~7 GB of Go build and module cache and
# ~0.5 GB of binaries. As root only: the cluster needs root.
set -euo pipefail

K8S_VERSION=v1.37.2
STAGING_VERSION=v0.37.2 # every k8s.io staging module of K8S_VERSION
ETCD_VERSION=v3.6.16
KWOK_VERSION=v0.8.0
LDFLAGS="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION"

cache=${KILN_TEST_CACHE:-/var/cache/kiln-test}/k8s-$K8S_VERSION
bin=$cache/bin
work=$cache/work

# The repository's CI exports GOFLAGS=-mod=readonly; the throwaway modules
# below are resolved here, with the toolchain on PATH.
export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0 GOWORK=off

say() { echo "k8s: $*"; }
now() { date +%s; }

# The cluster (kubelet, containerd, cgroups, mounts) runs as root only; its
# tests skip otherwise, so there is nothing to build or install.
if [ "$(id -u)" != 0 ]; then
  echo "k8s: not root: skipping the Kubernetes test cluster's binaries (test/harness/kube skips without root)"
  exit 0
fi

# --- Debian packages: the real node's runtime -------------------------------
need=()
command -v containerd >/dev/null 2>&1 || need+=(containerd)
command -v runc >/dev/null 2>&1 || [ -x /usr/sbin/runc ] || need+=(runc)
[ -x /usr/lib/cni/loopback ] || need+=(containernetworking-plugins)
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || need+=(iproute2)
command -v nsenter >/dev/null 2>&1 || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  t0=$(now)
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # --no-install-recommends: no docker.io or criu pulled in with containerd.
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  say "apt-get install ${need[*]}: $(($(now) - t0))s"
fi

# --- stamps --------------------------------------------------------------
# The stamp of NAME holds the versions it was built from; a binary whose
# stamp differs (or is missing) is rebuilt.
stamp_of() {
  case $1 in
  etcd) echo "etcd $ETCD_VERSION" ;;
  kwok) echo "kwok $KWOK_VERSION" ;;
  kwok-stages.yaml) echo "kwok $KWOK_VERSION stages node-initialize node-heartbeat-with-lease pod-ready pod-complete pod-delete" ;;
  pause) echo "pause 1" ;;
  *) echo "$1 $K8S_VERSION staging $STAGING_VERSION" ;;
  esac
}
built() { [ -s "$bin/$1" ] && [ "$(cat "$bin/.$1.stamp" 2>/dev/null)" = "$(stamp_of "$1")" ]; }
mark() {
  stamp_of "$1" >"$bin/.$1.stamp.tmp"
  mv -f "$bin/.$1.stamp.tmp" "$bin/.$1.stamp"
}

all=(etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kwok kwok-stages.yaml pause)
missing=()
for b in "${all[@]}"; do
  built "$b" || missing+=("$b")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

command -v go >/dev/null 2>&1 || { echo "k8s: go not on PATH" >&2; exit 1; }
mkdir -p "$bin" "$work"
# One build at a time (a second CI job on the machine waits here).
exec 9>"$cache/.lock"
flock 9
rm -f "$bin"/.*.tmp.* # left by a killed run
start=$(now)
say "building ${missing[*]} into $bin"

# install_as NAME SRC: rename SRC (a file next to $bin) into $bin/NAME.
install_as() {
  chmod 0755 "$2"
  mv -f "$2" "$bin/$1"
  mark "$1"
}

# --- etcd ----------------------------------------------------------------
if ! built etcd; then
  t0=$(now)
  d=$work/etcd
  mkdir -p "$d"
  cat >"$d/go.mod" <<EOF
module kiln.test/etcd

go 1.26

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
EOF
  cat >"$d/main.go" <<'EOF'
// Command etcd is etcd's server, built from go.etcd.io/etcd/server/v3.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
  (cd "$d" && go mod tidy && go build -trimpath -ldflags "-s -w" -o "$bin/.etcd.tmp.$$" .)
  install_as etcd "$bin/.etcd.tmp.$$"
  say "etcd $ETCD_VERSION: $(($(now) - t0))s"
fi

# --- pause (the real node's sandbox image) ---------------------------------
if ! built pause; then
  t0=$(now)
  d=$work/pause
  mkdir -p "$d"
  cat >"$d/go.mod" <<'EOF'
module kiln.test/pause

go 1.26
EOF
  cat >"$d/main.go" <<'EOF'
// Command pause holds a pod's namespaces: it sleeps until SIGTERM or SIGINT.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
EOF
  (cd "$d" && go build -trimpath -ldflags "-s -w" -o "$bin/.pause.tmp.$$" .)
  install_as pause "$bin/.pause.tmp.$$"
  say "pause: $(($(now) - t0))s"
fi

# --- kwok and its stages -------------------------------------------------
if ! built kwok; then
  t0=$(now)
  d=$work/kwok
  rm -rf "$d/bin"
  mkdir -p "$d/bin"
  (cd "$work" && GOBIN=$d/bin go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION")
  mv -f "$d/bin/kwok" "$bin/.kwok.tmp.$$"
  rm -rf "$d/bin"
  install_as kwok "$bin/.kwok.tmp.$$"
  say "kwok $KWOK_VERSION: $(($(now) - t0))s"
fi
if ! built kwok-stages.yaml; then
  t0=$(now)
  kdir=$(cd "$work" && go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  s=$kdir/kustomize/stage
  out=$bin/.kwok-stages.yaml.tmp.$$
  : >"$out"
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
    pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    cp "$s/$f" "$bin/$(basename "$f")"
    chmod 0644 "$bin/$(basename "$f")"
    { echo "---"; cat "$s/$f"; } >>"$out"
  done
  chmod 0644 "$out"
  mv -f "$out" "$bin/kwok-stages.yaml"
  mark kwok-stages.yaml
  say "kwok stages: $(($(now) - t0))s"
fi

# --- the Kubernetes commands ---------------------------------------------
k8s=(kube-apiserver kube-controller-manager kube-scheduler kubelet)
todo=()
for b in "${k8s[@]}"; do
  built "$b" || todo+=("$b")
done
if [ ${#todo[@]} -gt 0 ]; then
  t0=$(now)
  d=$work/kubernetes
  mkdir -p "$d"
  # k8s.io/kubernetes replaces every staging module with ./staging/src/...;
  # a module requiring it must pin each of them (33 in v1.37.2).
  gomod=$(cd "$work" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  staging=$(sed -n 's#^[[:space:]]*\(k8s\.io/[A-Za-z0-9._-]*\) => \./staging/src/\1[[:space:]]*$#\1#p' "$gomod" | sort -u)
  [ -n "$staging" ] || { echo "k8s: no staging replaces found in $gomod" >&2; exit 1; }
  {
    printf 'module kiln.test/kubernetes\n\ngo 1.26\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$K8S_VERSION"
    for m in $staging; do printf '\t%s => %s %s\n' "$m" "$m" "$STAGING_VERSION"; done
    printf ')\n'
  } >"$d/go.mod.new"
  if ! cmp -s "$d/go.mod.new" "$d/go.mod.in" 2>/dev/null; then
    cp "$d/go.mod.new" "$d/go.mod"
    rm -f "$d/go.sum"
    cat >"$d/tools.go" <<'EOF'
//go:build tools

// Package tools pins the Kubernetes commands this module builds.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
EOF
    (cd "$d" && go mod tidy)
    mv -f "$d/go.mod.new" "$d/go.mod.in"
    say "kubernetes $K8S_VERSION module ($(echo "$staging" | wc -l) staging replaces): $(($(now) - t0))s"
  fi
  for b in "${todo[@]}"; do
    t0=$(now)
    (cd "$d" && go build -trimpath -ldflags "$LDFLAGS" -o "$bin/.$b.tmp.$$" "k8s.io/kubernetes/cmd/$b")
    install_as "$b" "$bin/.$b.tmp.$$"
    say "$b $K8S_VERSION: $(($(now) - t0))s"
  done
fi

say "done in $(($(now) - start))s"
