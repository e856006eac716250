#!/usr/bin/env bash
# kiln's build benchmarks (issue 4, "Measure"): one run, side by side with
# buildah, against a local registry process seeded with deterministic base
# images and a deterministic build context (bench/buildseed).
#
#   a. COPY-only build: ~2,000 files, ~150 MB incompressible, 3 COPY
#      instructions onto a small base image; kiln build with the base from a
#      warm cache and with no cache (base pulled) vs buildah build (vfs,
#      chroot isolation, --layers=false) alone and followed by buildah push
#      to an OCI layout (kiln's time includes writing its layout)
#   b. multi-stage build: stage 1 copies src/ and assets/, stage 2 takes src/
#      from it with COPY --from, copies data/, sets WORKDIR/ENV/LABEL/CMD;
#      the same four rows
#   c. peak RSS (/usr/bin/time -v) and time building a COPY-only Dockerfile
#      (COPY src/) on a 200 MiB one-layer base image
#
# Median of BENCH_RUNS, ratios buildah/kiln. Every buildah run starts from an
# empty storage folder (vfs: the base image is pulled and its layers copied
# on every run, which is buildah's cost on a fresh CI machine).
#
# Usage: bash bench/build.sh          (or: make bench, after bench/run.sh)
#   BENCH_RUNS=5        runs per measurement (median reported)
#   KILN=bin/kiln       the kiln binary to measure
#   BENCH_SKIP="..."    leave out some of: buildah nocache rss
#
# Writes only under bench/.work/build/ (scratch, wiped at start; TMPDIR of
# every measured command points there too) and bench/results/build.md.
# Servers listen on 127.0.0.1 only; only processes started here are stopped,
# by PID. The page cache is not dropped: the context and the registry's
# blobs are read from memory (see bench/README.md).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench
WORK=$BENCH/.work/build
RESULTS=$BENCH/results
RUNS=${BENCH_RUNS:-5}
KILN=${KILN:-$ROOT/bin/kiln}
case $KILN in /*) ;; *) KILN=$PWD/$KILN ;; esac

. "$BENCH/lib.sh" # log, die, cleanup of PIDS, apt_install, median, ratio, wipe...

preflight

# ---------------------------------------------------------------- tools
declare -A SKIP=() # tool -> why it is not measured

install_tools() {
	local need=() s
	for s in ${BENCH_SKIP:-}; do
		case $s in
		buildah | nocache | rss) SKIP[$s]="BENCH_SKIP" ;;
		*) die "BENCH_SKIP: unknown '$s' (buildah nocache rss)" ;;
		esac
	done
	command -v docker-registry >/dev/null 2>&1 || [ -x /usr/bin/docker-registry ] || need+=(docker-registry)
	[ -n "${SKIP[buildah]:-}" ] || command -v buildah >/dev/null 2>&1 || need+=(buildah)
	[ -x /usr/bin/time ] || need+=(time)
	command -v jq >/dev/null 2>&1 || need+=(jq)
	if [ ${#need[@]} -gt 0 ]; then
		apt_install "${need[@]}" || log "could not apt-get install ${need[*]} (need root or sudo)"
	fi
	command -v docker-registry >/dev/null 2>&1 || [ -x /usr/bin/docker-registry ] ||
		die "docker-registry is required (apt-get install docker-registry)"
	[ -n "${SKIP[buildah]:-}" ] || command -v buildah >/dev/null 2>&1 ||
		SKIP[buildah]="buildah not installed (apt-get install buildah failed)"
	[ -n "${SKIP[rss]:-}" ] || [ -x /usr/bin/time ] ||
		SKIP[rss]="/usr/bin/time not installed (apt-get install time failed)"
	[ -x /usr/bin/time ] || SKIP[cpu]="/usr/bin/time not installed (apt-get install time failed)"
	command -v jq >/dev/null 2>&1 || die "jq is required (the output layouts are summarised with it)"

	log "building bench/buildseed"
	(cd "$ROOT" && go build -o "$WORK/tools/buildseed" ./bench/buildseed)

	cat >"$WORK/policy.json" <<-'EOF'
		{"default": [{"type": "insecureAcceptAnything"}]}
	EOF
}

# ---------------------------------------------------------------- helpers

declare -A T=()    # measurement -> " s1 s2 ..." (seconds)
declare -A TS=()   # measurement -> " s1 s2 ..." (seconds, including a sync after it)
declare -A FAIL=() # measurement -> failures
declare -A RSS=()  # measurement -> " kb1 kb2 ..."
declare -A CPU=()  # measurement -> " s1 s2 ..." (CPU seconds: user + system)
declare -A NOTE=() # measurement -> what it produced (last run)
LAST=""            # seconds of the last successful timed/rss
CMD=()             # the command kiln_build, buildah_build and buildah_push set
LASTS=""           # the same, including the sync after it
LASTC=""           # its CPU seconds ("" without /usr/bin/time)

# rss NAME LOG CMD...: like timed, under /usr/bin/time -v; adds the peak RSS
# (KiB) to RSS[NAME] and the wall time to T[NAME].
rss() {
	local name=$1 logf=$2 kb
	shift 2
	run_in_work "$name" "$logf" /usr/bin/time -v -o "$logf.time" "$@" || return 1
	kb=$(peak_rss "$logf")
	CPU[$name]+=" $(cpu_of "$logf")"
	RSS[$name]+=" $kb"
	log "$name: peak RSS $((kb / 1024)) MiB, ${LAST}s"
}

# layout DIR: "N layers, X MB" for the one image of the OCI layout DIR.
layout() {
	local m
	m=$(jq -r '.manifests[0].digest' "$1/index.json" 2>/dev/null) || { echo "?"; return; }
	jq -r '"\(.layers | length) layers, \((.layers | map(.size) | add) / 1e6 * 10 | floor / 10) MB"' \
		"$1/blobs/${m%%:*}/${m#*:}" 2>/dev/null || echo "?"
}

# ---------------------------------------------------------------- the tools
# The commands, as arrays (rss runs them under /usr/bin/time, which cannot
# run shell functions).
kiln_build() { # DOCKERFILE OUT CACHE: sets CMD
	CMD=("$KILN" build --context "$CTX" --dockerfile "$1" --output "oci:$2" --no-push --cache-dir "$3" --progress plain)
}

buildah_build() { # STORAGE DOCKERFILE TAG: sets CMD (buildah on its own vfs storage)
	CMD=(buildah --root "$1/root" --runroot "$1/runroot" --storage-driver vfs
		build --isolation chroot --layers=false --tls-verify=false
		--signature-policy "$WORK/policy.json" -f "$CTX/$2" -t "$3" "$CTX")
}

buildah_push() { # STORAGE TAG OUT: sets CMD
	CMD=(buildah --root "$1/root" --runroot "$1/runroot" --storage-driver vfs
		push --signature-policy "$WORK/policy.json" "$2" "oci:$3")
}

# ---------------------------------------------------------------- start
wipe "$WORK"
mkdir -p "$WORK/logs" "$WORK/out" "$WORK/tmp" "$RESULTS"
install_tools
export TMPDIR=$WORK/tmp # kiln's --work-dir default and buildah's big temporary files, alike
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

mkfifo "$WORK/hold"
exec 3<>"$WORK/hold" # our children's standard input: EOF when this script dies
log "seeding the registry and writing the context (deterministic, ~370 MB)"
"$WORK/tools/buildseed" -dir "$WORK/registry" -context "$WORK/context" -ready "$WORK/buildseed.json" \
	-lists "$WORK/lists" -log "$WORK/logs/registry.log" \
	<"$WORK/hold" >"$WORK/logs/buildseed.out" 2>"$WORK/logs/buildseed.err" 3>&- &
SEED_PID=$!
PIDS+=("$SEED_PID")
wait_ready buildseed "$SEED_PID"
REG=$(cat "$WORK/lists/registry")
PLAT=$(cat "$WORK/lists/platform")
BASE=$(cat "$WORK/lists/base.ref")
BIG=$(cat "$WORK/lists/big.ref")
BIG_BYTES=$(cat "$WORK/lists/big.bytes")
CTX=$(cat "$WORK/lists/context")
CTX_FILES=$(cat "$WORK/lists/context.files")
CTX_BYTES=$(cat "$WORK/lists/context.bytes")
TIERS=$(jq -r '[.tiers[] | "\(.name)/ \(.files) files \(.bytes / 1e6 * 10 | floor / 10) MB"] | join(", ")' "$WORK/buildseed.json")

# The warm cache kiln's "cached" rows build from: both bases, this platform.
CACHE=$WORK/cache
log "kiln warm of the two base images into $CACHE"
"$KILN" warm --image "$BASE" --image "$BIG" --platform "$PLAT" --cache-dir "$CACHE" --progress plain \
	>"$WORK/logs/warm.log" 2>&1 || { tail -n 5 "$WORK/logs/warm.log" >&2; die "kiln warm failed"; }

# ---------------------------------------------------------------- a, b. builds
TOOLS=(kiln kiln_nocache buildah)
ROWS=(kiln kiln_nocache buildah_build buildah_total)
declare -A LABEL=(
	[kiln]="kiln build, base from the warm cache (writes oci:)"
	[kiln_nocache]="kiln build, no cache (base pulled; writes oci:)"
	[buildah_build]="buildah build (vfs, chroot, --layers=false)"
	[buildah_total]="buildah build + buildah push oci:"
)
declare -A DOCKERFILE=([a]=Dockerfile.copy [b]=Dockerfile.multi)

build_run() { # M TOOL RUN
	local m=$1 t=$2 n=$3 out=$WORK/out/$1-$2 s=$WORK/buildah-storage b bs bc
	wipe "$out"
	case $t in
	kiln)
		kiln_build "${DOCKERFILE[$m]}" "$out" "$CACHE"
		timed "$m-kiln" "$WORK/logs/$m-kiln-$n.log" "${CMD[@]}" &&
			NOTE[$m-kiln]=$(layout "$out") || true
		;;
	kiln_nocache)
		[ -z "${SKIP[nocache]:-}" ] || return 0
		wipe "$WORK/nocache"
		kiln_build "${DOCKERFILE[$m]}" "$out" "$WORK/nocache"
		timed "$m-kiln_nocache" "$WORK/logs/$m-kiln-nocache-$n.log" "${CMD[@]}" &&
			NOTE[$m-kiln_nocache]=$(layout "$out") || true
		[ ! -e "$WORK/nocache" ] || NOTE[$m-kiln_nocache]+=" (kiln created the cache folder)"
		wipe "$WORK/nocache"
		;;
	buildah)
		[ -z "${SKIP[buildah]:-}" ] || return 0
		wipe "$s"
		buildah_build "$s" "${DOCKERFILE[$m]}" "localhost/bench-$m"
		if timed "$m-buildah_build" "$WORK/logs/$m-buildah-build-$n.log" "${CMD[@]}"; then
			b=$LAST bs=$LASTS bc=$LASTC
			NOTE[$m-buildah_build]="vfs storage after the build: $(mb "$(disk "$s")") MB"
			buildah_push "$s" "localhost/bench-$m" "$out"
			if timed "$m-buildah_push" "$WORK/logs/$m-buildah-push-$n.log" "${CMD[@]}"; then
				T[$m-buildah_total]+=" $(add "$b" "$LAST")"
				TS[$m-buildah_total]+=" $(add "$bs" "$LASTS")"
				[ -z "$LASTC" ] || CPU[$m-buildah_total]+=" $(awk -v a="$bc" -v b="$LASTC" 'BEGIN { printf "%.2f", a + b }')"
				NOTE[$m-buildah_total]=$(layout "$out")
			else
				FAIL[$m-buildah_total]=$((${FAIL[$m-buildah_total]:-0} + 1))
			fi
		fi
		wipe "$s"
		;;
	esac
	wipe "$out"
}

for m in a b; do
	for n in $(seq 1 "$RUNS"); do
		log "$m. ${DOCKERFILE[$m]}, run $n/$RUNS"
		k=${#TOOLS[@]}
		for i in $(seq 0 $((k - 1))); do # rotate the order from run to run
			build_run "$m" "${TOOLS[$(((i + n - 1) % k))]}" "$n"
		done
	done
done

# ---------------------------------------------------------------- c. peak RSS
C_ROWS=(kiln kiln_nocache buildah_build buildah_push)
declare -A C_LABEL=(
	[kiln]="kiln build, base from the warm cache"
	[kiln_nocache]="kiln build, no cache (base pulled)"
	[buildah_build]="buildah build (vfs, chroot, --layers=false)"
	[buildah_push]="buildah push oci: (a process of its own)"
)
c_run() { # TOOL RUN
	local t=$1 n=$2 out=$WORK/out/c-$1 s=$WORK/buildah-storage
	[ -z "${SKIP[rss]:-}" ] || return 0
	wipe "$out"
	case $t in
	kiln)
		kiln_build Dockerfile.big "$out" "$CACHE"
		rss c-kiln "$WORK/logs/c-kiln-$n.log" "${CMD[@]}" &&
			NOTE[c-kiln]=$(layout "$out") || true
		;;
	kiln_nocache)
		[ -z "${SKIP[nocache]:-}" ] || return 0
		wipe "$WORK/nocache"
		kiln_build Dockerfile.big "$out" "$WORK/nocache"
		rss c-kiln_nocache "$WORK/logs/c-kiln-nocache-$n.log" "${CMD[@]}" &&
			NOTE[c-kiln_nocache]=$(layout "$out") || true
		wipe "$WORK/nocache"
		;;
	buildah)
		[ -z "${SKIP[buildah]:-}" ] || return 0
		wipe "$s"
		buildah_build "$s" Dockerfile.big localhost/bench-big
		if rss c-buildah_build "$WORK/logs/c-buildah-build-$n.log" "${CMD[@]}"; then
			NOTE[c-buildah_build]="vfs storage after the build: $(mb "$(disk "$s")") MB"
			buildah_push "$s" localhost/bench-big "$out"
			rss c-buildah_push "$WORK/logs/c-buildah-push-$n.log" "${CMD[@]}" &&
				NOTE[c-buildah_push]=$(layout "$out") || true
		fi
		wipe "$s"
		;;
	esac
	wipe "$out"
}
for n in $(seq 1 "$RUNS"); do
	log "c. peak RSS, COPY onto the $((BIG_BYTES / 1048576)) MiB base, run $n/$RUNS"
	k=${#TOOLS[@]}
	for i in $(seq 0 $((k - 1))); do
		c_run "${TOOLS[$(((i + n - 1) % k))]}" "$n"
	done
done

# ---------------------------------------------------------------- report

skip_of() { # ROW: why the row was not measured, if it was not
	case $1 in
	kiln_nocache) echo "${SKIP[nocache]:-}" ;;
	buildah*) echo "${SKIP[buildah]:-}" ;;
	esac
}

build_table() { # M
	local m=$1 row k kn ks kns kc knc v vs vc why
	k=$(median ${T[$m-kiln]:-})
	kn=$(median ${T[$m-kiln_nocache]:-})
	ks=$(median ${TS[$m-kiln]:-})
	kns=$(median ${TS[$m-kiln_nocache]:-})
	kc=$(median ${CPU[$m-kiln]:-})
	knc=$(median ${CPU[$m-kiln_nocache]:-})
	echo "| tool | median s | ratio to kiln (cache) | ratio to kiln (no cache) | median s incl. sync | ratio incl. sync, to kiln (cache) | to kiln (no cache) | median CPU s | CPU ratio to kiln (cache) | to kiln (no cache) | output (last run) | runs (s) |"
	echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"
	for row in "${ROWS[@]}"; do
		why=$(skip_of "$row")
		if [ -n "$why" ]; then
			echo "| ${LABEL[$row]} | skipped: $why | | | | | | | | | | |"
			continue
		fi
		v=$(median ${T[$m-$row]:-})
		vs=$(median ${TS[$m-$row]:-})
		if [ -z "$v" ]; then
			echo "| ${LABEL[$row]} | failed (${FAIL[$m-$row]:-0}/$RUNS runs) | | | | | | | | | | |"
			continue
		fi
		vc=$(median ${CPU[$m-$row]:-})
		echo "| ${LABEL[$row]} | $v | $(ratio "$v" "$k") | $(ratio "$v" "$kn") | $vs | $(ratio "$vs" "$ks") | $(ratio "$vs" "$kns") | ${vc:--} | $(ratio "$vc" "$kc") | $(ratio "$vc" "$knc") | ${NOTE[$m-$row]:--} | $(fmt_runs "${T[$m-$row]:-}")|"
	done
}

report() {
	local row m k why
	echo "# kiln build benchmarks"
	echo
	echo "- when: $(date -u +%Y-%m-%dT%H:%M:%SZ); kiln $("$KILN" version 2>/dev/null | head -n 1)"
	echo "- commit: $(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo '?')"
	echo "- machine: $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -sr)"
	echo "- peer: $(buildah --version 2>/dev/null || echo 'buildah n/a'), vfs storage driver, --isolation chroot, --layers=false; fresh storage folder every run"
	echo "- runs: $RUNS (median shown); registry: docker-registry on $REG, plain HTTP on loopback; platform $PLAT"
	echo "- load average (1, 5, 15 min) at start: $LOAD_START; at end: $(cut -d' ' -f1-3 /proc/loadavg) — anything above ~0.5 means other work shared the CPUs, so compare ratios within this run only"
	echo "- page cache: not dropped (context and registry blobs are read from memory); a sync (not timed) precedes every timed command; TMPDIR of every command is bench/.work/build/tmp"
	echo "- context: $CTX_FILES files, $(mb "$CTX_BYTES") MB of incompressible data ($TIERS); base image ${BASE#"$REG"/}: 2 layers, 2.6 MB; big base ${BIG#"$REG"/}"
	echo
	echo "\"CPU s\" is user + system time of the command and its children (/usr/bin/time): on a busy machine it moves much less than the wall time, so prefer its ratios when the load average above is high."
	echo
	echo "Ratio = row time / kiln time: above 1 means kiln is faster. \"cache\": the base image comes from a cache filled by \`kiln warm\` beforehand (how kiln is meant to run); \"no cache\": an empty cache folder, the base is pulled, like buildah's fresh storage."
	echo
	echo "## a. COPY-only build: 3 COPY instructions (src/, assets/, data/) onto a small base"
	echo
	build_table a
	echo
	k=$(median ${T[a-kiln]:-})
	[ -z "$k" ] || echo "kiln (cache) copies $(awk -v b="$CTX_BYTES" -v s="$k" 'BEGIN { printf "%.0f", b / 1e6 / s }') MB/s of context into layers."
	echo
	echo "## b. Multi-stage build: stage 1 COPY src/ + assets/; stage 2 COPY --from=stage1 src/, COPY data/, WORKDIR, ENV, LABEL, CMD"
	echo
	build_table b
	echo
	echo "buildah --layers=false commits each stage's changes as one layer; kiln writes one layer per COPY (and one for WORKDIR's folder), as docker build does."
	echo
	echo "## c. Peak RSS: COPY src/ onto the $((BIG_BYTES / 1048576)) MiB one-layer base (8 files)"
	echo
	if [ -n "${SKIP[rss]:-}" ]; then
		echo "skipped: ${SKIP[rss]}"
	else
		echo "| tool | median peak RSS MiB | RSS ratio to kiln (cache) | median s | median s incl. sync | median CPU s | output (last run) | runs (RSS MiB) | runs (s) |"
		echo "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |"
		local kiln_rss m
		kiln_rss=$(median ${RSS[c-kiln]:-})
		for row in "${C_ROWS[@]}"; do
			why=$(skip_of "$row")
			if [ -n "$why" ]; then
				echo "| ${C_LABEL[$row]} | skipped: $why | | | | | | | |"
				continue
			fi
			m=$(median ${RSS[c-$row]:-})
			if [ -z "$m" ]; then
				echo "| ${C_LABEL[$row]} | failed (${FAIL[c-$row]:-0}/$RUNS runs) | | | | | | | |"
				continue
			fi
			echo "| ${C_LABEL[$row]} | $(awk -v k="$m" 'BEGIN { printf "%.1f", k / 1024 }') | $(ratio "$m" "$kiln_rss") | $(median ${T[c-$row]}) | $(median ${TS[c-$row]}) | $(median ${CPU[c-$row]:-}) | ${NOTE[c-$row]:--} | $(for v in ${RSS[c-$row]}; do awk -v k="$v" 'BEGIN { printf "%.0f ", k / 1024 }'; done)| $(fmt_runs "${T[c-$row]}")|"
		done
		echo
		echo "Peak RSS is \`Maximum resident set size\` of /usr/bin/time -v: the largest single process of the command (buildah re-executes itself for COPY; the figure is its biggest process, not a sum)."
	fi
	local s
	for s in "${!SKIP[@]}"; do echo; echo "skipped $s: ${SKIP[$s]}"; done
	for s in "${!FAIL[@]}"; do echo; echo "failures $s: ${FAIL[$s]} of $RUNS runs (logs in bench/.work/build/logs/)"; done
}

report | tee "$RESULTS/build.md.tmp"
mv "$RESULTS/build.md.tmp" "$RESULTS/build.md"
log "written to bench/results/build.md; logs in bench/.work/build/logs/"
# Exit non-zero only if kiln itself failed somewhere; buildah's failures are in the report.
for s in "${!FAIL[@]}"; do
	case $s in *-kiln | *-kiln_nocache) die "kiln failed in $s (see bench/.work/build/logs/)" ;; esac
done
