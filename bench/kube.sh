#!/usr/bin/env bash
# bench/kube.sh: kiln build-all through Kubernetes Jobs vs the local runner,
# on the test cluster of test/harness/kube (a real control plane and a real
# node on this machine; arm64 on a kwok node run by the test's agent). It
# runs the end-to-end test that does both and reports its timings: the wall
# time of build-all for 2 images x 2 platforms with each runner, and the
# time from each Job's creation to its first log line. Needs root and the
# cluster's binaries (.ci/k8s.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
[ "$(id -u)" = 0 ] || die "needs root (the test cluster runs a kubelet)"
bash .ci/k8s.sh
make -s build
out=$(mktemp)
trap 'rm -f "$out"' EXIT
runs=${BENCH_RUNS:-3}
for i in $(seq "$runs"); do
  go test -count=1 -run 'TestBuildAllKubernetes$' -v ./test/ >"$out" 2>&1 || { tail -50 "$out"; die "the test failed"; }
  grep -o 'kubernetes runner [0-9.]*s, local runner [0-9.]*s' "$out" | sed "s/^/run $i: build-all 2 images x 2 platforms: /"
  grep -o 'first log line [0-9.]*s after the Job was created' "$out" | sed "s/^/run $i: /" | sort | uniq -c
done
