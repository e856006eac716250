#!/usr/bin/env bash
# kiln's benchmarks (issue 3, "Measure"): one run, side by side, against a
# local registry process seeded with deterministic images (bench/seed).
#
#   a. cold warm of 4 images × 2 platforms (536 MiB distinct): kiln vs crane
#      pull --format oci vs skopeo copy --all vs the raw limit (parallel curl
#      of every blob to /dev/null); median of BENCH_RUNS, ratios peer/kiln
#   b. re-warm of 20 small images with nothing changed: --refresh --max-age 0s
#      (a HEAD per image), --max-age 1h (no network) and plain re-warm; wall
#      time, requests and bytes through a counting proxy (bench/countproxy)
#   c. peak RSS (/usr/bin/time -v) while warming a 220 MiB one-layer image:
#      kiln vs crane vs skopeo
#
# Usage: bash bench/run.sh            (or: make bench)
#   BENCH_RUNS=5        runs per measurement (median reported)
#   BENCH_CURL_JOBS=8   parallel curls for the raw limit
#   BENCH_KILN_JOBS=    pass --jobs N to kiln (default: kiln's own default)
#   KILN=bin/kiln       the kiln binary to measure
#   BENCH_SKIP="..."    leave out some of: crane skopeo raw rss
#
# Writes only under bench/.work/warm/ (scratch, wiped at start), bench/.bin/
# (crane) and bench/results/latest.md. Servers listen on 127.0.0.1 only;
# only processes started here are stopped, by PID. The page cache is not
# dropped: the registry's blobs are served from memory after seeding, so
# these are loopback, warm-page-cache numbers (see bench/README.md).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench
WORK=$BENCH/.work/warm
BIN=$BENCH/.bin
RESULTS=$BENCH/results
RUNS=${BENCH_RUNS:-5}
CURL_JOBS=${BENCH_CURL_JOBS:-8}
KILN=${KILN:-$ROOT/bin/kiln}
CRANE_VERSION=v0.22.1
PLATS=(--platform linux/amd64 --platform linux/arm64)
KILN_EXTRA=()
[ -n "${BENCH_KILN_JOBS:-}" ] && KILN_EXTRA=(--jobs "$BENCH_KILN_JOBS")

. "$BENCH/lib.sh" # log, die, cleanup of PIDS, apt_install, median, ratio, wipe...

preflight

# ---------------------------------------------------------------- tools
declare -A SKIP=() # tool -> why it is not measured

install_tools() {
	local need=() s
	for s in ${BENCH_SKIP:-}; do
		case $s in
		crane) SKIP[crane]="BENCH_SKIP" SKIP[crane_index]="BENCH_SKIP" ;;
		skopeo | raw | rss) SKIP[$s]="BENCH_SKIP" ;;
		*) die "BENCH_SKIP: unknown '$s' (crane skopeo raw rss)" ;;
		esac
	done
	command -v docker-registry >/dev/null 2>&1 || [ -x /usr/bin/docker-registry ] || need+=(docker-registry)
	[ -n "${SKIP[skopeo]:-}" ] || command -v skopeo >/dev/null 2>&1 || need+=(skopeo)
	[ -n "${SKIP[rss]:-}" ] || [ -x /usr/bin/time ] || need+=(time)
	command -v curl >/dev/null 2>&1 || need+=(curl)
	command -v jq >/dev/null 2>&1 || need+=(jq)
	if [ ${#need[@]} -gt 0 ]; then
		apt_install "${need[@]}" || log "could not apt-get install ${need[*]} (need root or sudo)"
	fi
	command -v docker-registry >/dev/null 2>&1 || [ -x /usr/bin/docker-registry ] ||
		die "docker-registry is required (apt-get install docker-registry)"
	[ -n "${SKIP[skopeo]:-}" ] || command -v skopeo >/dev/null 2>&1 ||
		SKIP[skopeo]="skopeo not installed (apt-get install skopeo failed)"
	[ -n "${SKIP[rss]:-}" ] || [ -x /usr/bin/time ] ||
		SKIP[rss]="/usr/bin/time not installed (apt-get install time failed)"
	command -v curl >/dev/null 2>&1 || die "curl is required (the raw limit, and the counting proxy's stats are read with it)"

	[ -n "${SKIP[crane]:-}" ] || install_crane

	log "building bench/seed and bench/countproxy"
	(cd "$ROOT" && go build -o "$WORK/tools/seed" ./bench/seed && go build -o "$WORK/tools/countproxy" ./bench/countproxy)

	cat >"$WORK/policy.json" <<-'EOF'
		{"default": [{"type": "insecureAcceptAnything"}]}
	EOF
}

CRANE=$BIN/crane
install_crane() {
	if ! { [ -x "$CRANE" ] && "$CRANE" version 2>/dev/null | grep -qx "$CRANE_VERSION"; }; then
		log "go install github.com/google/go-containerregistry/cmd/crane@$CRANE_VERSION"
		mkdir -p "$BIN"
		if ! (cd "$BENCH" && GOBIN=$BIN GOFLAGS= go install "github.com/google/go-containerregistry/cmd/crane@$CRANE_VERSION") >"$WORK/crane-install.log" 2>&1; then
			log "crane install failed: $(tail -1 "$WORK/crane-install.log")"
		fi
	fi
	if [ -x "$CRANE" ]; then
		CRANE_V=$("$CRANE" version 2>/dev/null || echo '?')
	else
		SKIP[crane]="crane not installed (go install failed, see bench/.work/warm/crane-install.log)"
		SKIP[crane_index]=${SKIP[crane]}
	fi
}

# ---------------------------------------------------------------- helpers

declare -A T=()    # measurement -> " s1 s2 ..." (seconds)
declare -A TS=()   # measurement -> " s1 s2 ..." (seconds, including a sync after it)
declare -A FAIL=() # measurement -> failures
declare -A DISK=() # measurement -> bytes on disk after the last run
declare -A RSS=()  # measurement -> " kb1 kb2 ..."
declare -A REQ=()  # phase -> " n1 n2 ..." requests through the proxy
declare -A BYT=()  # phase -> " b1 b2 ..." bytes through the proxy
declare -A NOTE=() # measurement -> a note for the table (e.g. kiln's counts)
declare -A METHODS=() # phase -> requests by method through the proxy (last run)

# timed_wall NAME LOG CMD...: run_in_work, logging the wall time.
timed_wall() {
	run_in_work "$@" || return 1
	log "$1: ${LAST}s"
}

# rss NAME LOG CMD...: run_in_work under /usr/bin/time -v; adds the peak RSS
# (KiB) to RSS[NAME].
rss() {
	local name=$1 logf=$2 kb
	shift 2
	run_in_work "$name" "$logf" /usr/bin/time -v -o "$logf.time" "$@" || return 1
	kb=$(peak_rss "$logf")
	RSS[$name]+=" $kb"
	log "$name: peak RSS $((kb / 1024)) MiB, ${LAST}s"
}

# ---------------------------------------------------------------- the peers
kiln_warm() { # CACHE REPORT REF...
	local cache=$1 report=$2 r args=()
	shift 2
	for r in "$@"; do args+=(--image "$r"); done
	"$KILN" warm "${args[@]}" "${PLATS[@]}" "${KILN_EXTRA[@]}" --cache-dir "$cache" --progress plain --report "$report"
}

crane_per_platform() { # DIR REF...
	local dir=$1
	shift
	"$CRANE" pull --insecure --format oci --platform linux/amd64 "$@" "$dir" &&
		"$CRANE" pull --insecure --format oci --platform linux/arm64 "$@" "$dir"
}

crane_index() { # DIR REF...: no --platform: crane pulls each whole index
	local dir=$1
	shift
	"$CRANE" pull --insecure --format oci "$@" "$dir"
}

skopeo_all() { # DIR REF...: one skopeo copy --all per ref, into one layout
	local dir=$1 i=0 r
	shift
	for r in "$@"; do
		i=$((i + 1))
		skopeo --policy "$WORK/policy.json" copy --quiet --all --src-tls-verify=false "docker://$r" "oci:$dir:img$i" || return
	done
}

raw_curl() { # BLOBLIST: "SIZE PATH" lines
	awk -v base="http://$REG" '{ print base $2 }' "$1" | xargs -P "$CURL_JOBS" -n 1 curl -sf -o /dev/null
}

proxy_stats() { # PHASE: read and reset the proxy's counts, record them
	local js
	js=$(curl -sf "http://$PROXY/_countproxy/stats?reset=1")
	REQ[$1]+=" $(sed -n 's/.*"requests":\([0-9]*\).*/\1/p' <<<"$js")"
	BYT[$1]+=" $(sed -n 's/.*"bytes":\([0-9]*\).*/\1/p' <<<"$js")"
	echo "$js" >"$WORK/logs/$1.proxy.json"
	METHODS[$1]=$(sed -n 's/.*"by_method":{\([^}]*\)}.*/\1/p' <<<"$js" | tr -d '"' | sed 's/,/ /g')
}

kiln_counts() { # REPORT: "pulled=N fresh=N ..." from kiln's --report
	command -v jq >/dev/null 2>&1 || { echo "?"; return; }
	jq -r '[(.counts // {} | to_entries[] | "\(.key)=\(.value)"),
		"revalidated=\([.results[]? | select(.revalidated)] | length)"] | join(" ")' "$1" 2>/dev/null || echo "?"
}

# ---------------------------------------------------------------- start
rm -rf "$WORK"
mkdir -p "$WORK/logs" "$WORK/out" "$RESULTS"
install_tools
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

mkfifo "$WORK/hold"
exec 3<>"$WORK/hold" # our children's standard input: EOF when this script dies
log "seeding the registry (deterministic images, ~770 MiB)"
"$WORK/tools/seed" -dir "$WORK/registry" -ready "$WORK/seed.json" -lists "$WORK/lists" \
	-log "$WORK/logs/registry.log" <"$WORK/hold" >"$WORK/logs/seed.out" 2>"$WORK/logs/seed.err" 3>&- &
SEED_PID=$!
PIDS+=("$SEED_PID")
wait_ready seed "$SEED_PID"
REG=$(cat "$WORK/lists/registry")
mapfile -t MULTI < "$WORK/lists/multi.refs"
mapfile -t BIG < "$WORK/lists/big.ref"
mapfile -t SMALL < "$WORK/lists/small.refs"
MULTI_BYTES=$(cat "$WORK/lists/multi.bytes")
BIG_BYTES=$(cat "$WORK/lists/big.bytes")
SMALL_BYTES=$(cat "$WORK/lists/small.bytes")
NBLOBS=$(wc -l <"$WORK/lists/multi.blobs")

"$WORK/tools/countproxy" -target "$REG" -addr-file "$WORK/proxy.addr" -access-log "$WORK/logs/proxy-access.log" \
	<"$WORK/hold" >"$WORK/logs/proxy.out" 2>"$WORK/logs/proxy.err" 3>&- &
PIDS+=("$!")
for _ in $(seq 1 100); do [ -f "$WORK/proxy.addr" ] && break; sleep 0.1; done
[ -f "$WORK/proxy.addr" ] || die "countproxy did not start: $(cat "$WORK/logs/proxy.err")"
PROXY=$(cat "$WORK/proxy.addr")
mapfile -t SMALL_P < <(printf '%s\n' "${SMALL[@]}" | sed "s#^$REG/#$PROXY/#")
SMALL_ARGS=()
for r in "${SMALL_P[@]}"; do SMALL_ARGS+=(--image "$r"); done

# ---------------------------------------------------------------- a. cold warm
A_TOOLS=(kiln crane crane_index skopeo raw)
declare -A A_LABEL=(
	[kiln]="kiln warm (both platforms, one process)"
	[crane]="crane pull --format oci, --platform ×2"
	[crane_index]="crane pull --format oci, whole index"
	[skopeo]="skopeo copy --all, ×4 refs"
	[raw]="raw limit: curl every blob, -P $CURL_JOBS"
)
a_run() { # TOOL RUN
	local t=$1 n=$2 dir=$WORK/out/$1
	[ -z "${SKIP[$t]:-}" ] || return 0
	rm -rf "$dir"
	case $t in
	kiln) timed_wall kiln "$WORK/logs/a-kiln-$n.log" kiln_warm "$dir" "$WORK/logs/a-kiln-$n.json" "${MULTI[@]}" &&
		NOTE[kiln]=$(kiln_counts "$WORK/logs/a-kiln-$n.json") || true ;;
	crane) timed_wall crane "$WORK/logs/a-crane-$n.log" crane_per_platform "$dir" "${MULTI[@]}" || true ;;
	crane_index) timed_wall crane_index "$WORK/logs/a-crane-index-$n.log" crane_index "$dir" "${MULTI[@]}" || true ;;
	skopeo) timed_wall skopeo "$WORK/logs/a-skopeo-$n.log" skopeo_all "$dir" "${MULTI[@]}" || true ;;
	raw) timed_wall raw "$WORK/logs/a-raw-$n.log" raw_curl "$WORK/lists/multi.blobs" || true ;;
	esac
	[ "$t" = raw ] || DISK[$t]=$(disk "$dir")
	rm -rf "$dir"
}
for n in $(seq 1 "$RUNS"); do
	log "a. cold warm, run $n/$RUNS"
	k=${#A_TOOLS[@]}
	for i in $(seq 0 $((k - 1))); do # rotate the order from run to run
		a_run "${A_TOOLS[$(((i + n - 1) % k))]}" "$n"
	done
done

# ---------------------------------------------------------------- b. re-warm
B_PHASES=(cold refresh0 refresh1h rewarm)
declare -A B_LABEL=(
	[cold]="cold warm (through the proxy)"
	[refresh0]="re-warm --refresh --max-age 0s (HEAD each tag)"
	[refresh1h]="re-warm --refresh --max-age 1h (all young)"
	[rewarm]="re-warm, no --refresh"
)
for n in $(seq 1 "$RUNS"); do
	log "b. re-warm of 20 images, run $n/$RUNS"
	c=$WORK/out/small
	rm -rf "$c"
	curl -sf "http://$PROXY/_countproxy/stats?reset=1" >/dev/null
	for ph in "${B_PHASES[@]}"; do
		extra=()
		case $ph in
		refresh0) extra=(--refresh --max-age 0s) ;;
		refresh1h) extra=(--refresh --max-age 1h) ;;
		esac
		timed_wall "b-$ph" "$WORK/logs/b-$ph-$n.log" "$KILN" warm "${extra[@]}" \
			"${SMALL_ARGS[@]}" "${PLATS[@]}" "${KILN_EXTRA[@]}" \
			--cache-dir "$c" --progress plain --report "$WORK/logs/b-$ph-$n.json" &&
			NOTE[b-$ph]=$(kiln_counts "$WORK/logs/b-$ph-$n.json") || true
		proxy_stats "b-$ph"
	done
	rm -rf "$c"
done

# ---------------------------------------------------------------- c. peak RSS
C_TOOLS=(kiln crane skopeo)
declare -A C_LABEL=(
	[kiln]="kiln warm --platform linux/amd64"
	[crane]="crane pull --format oci --platform linux/amd64"
	[skopeo]="skopeo copy --all"
)
c_run() { # TOOL RUN
	local t=$1 n=$2 dir=$WORK/out/big-$1
	[ -z "${SKIP[rss]:-}" ] && [ -z "${SKIP[$t]:-}" ] || return 0
	rm -rf "$dir"
	case $t in
	kiln) rss c-kiln "$WORK/logs/c-kiln-$n.log" "$KILN" warm --image "${BIG[0]}" --platform linux/amd64 \
		"${KILN_EXTRA[@]}" --cache-dir "$dir" --progress plain || true ;;
	crane) rss c-crane "$WORK/logs/c-crane-$n.log" "$CRANE" pull --insecure --format oci --platform linux/amd64 \
		"${BIG[0]}" "$dir" || true ;;
	skopeo) rss c-skopeo "$WORK/logs/c-skopeo-$n.log" skopeo --policy "$WORK/policy.json" copy --quiet --all \
		--src-tls-verify=false "docker://${BIG[0]}" "oci:$dir:big" || true ;;
	esac
	rm -rf "$dir"
}
for n in $(seq 1 "$RUNS"); do
	log "c. peak RSS, 220 MiB image, run $n/$RUNS"
	k=${#C_TOOLS[@]}
	for i in $(seq 0 $((k - 1))); do
		c_run "${C_TOOLS[$(((i + n - 1) % k))]}" "$n"
	done
done

# ---------------------------------------------------------------- report
cell_or_skip() { # NAME KEY: the median, or "skipped: ..."/"failed"
	local m
	m=$(median ${T[$1]:-})
	if [ -n "${SKIP[$2]:-}" ]; then echo "skipped: ${SKIP[$2]}"
	elif [ -z "$m" ]; then echo "failed (${FAIL[$1]:-0}/$RUNS runs)"
	else echo "$m"; fi
}

report() {
	local kiln_m t m r rate
	echo "# kiln benchmarks"
	echo
	echo "- when: $(date -u +%Y-%m-%dT%H:%M:%SZ); kiln $("$KILN" version 2>/dev/null | head -n 1)"
	echo "- commit: $(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo '?')"
	echo "- machine: $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -sr)"
	echo "- peers: crane ${CRANE_V:-n/a}; $(skopeo --version 2>/dev/null || echo 'skopeo n/a'); $(curl --version 2>/dev/null | head -n 1 | cut -d' ' -f1-2)"
	echo "- runs: $RUNS (median shown); registry: docker-registry on $REG, plain HTTP on loopback"
	echo "- load average (1, 5, 15 min) at start: $LOAD_START; at end: $(cut -d' ' -f1-3 /proc/loadavg) — anything above ~0.5 means other work shared the CPUs, so compare ratios within this run only"
	echo "- page cache: not dropped (the registry's blobs stay in memory after seeding); every run starts from an empty output folder; a sync (not timed) precedes every timed command"
	echo
	echo "## a. Cold warm: 4 images × 2 platforms (linux/amd64, linux/arm64)"
	echo
	echo "$NBLOBS distinct blobs, $(mb "$MULTI_BYTES") MB ($((MULTI_BYTES / 1048576)) MiB) of incompressible data; 2 of the 96 MiB layers are each shared by 4 images, one 8 MiB layer by all 8 manifests."
	echo "Ratio = peer time / kiln time: above 1 means kiln is faster; for the raw limit, it is the share of the limit kiln reaches."
	echo
	echo "| tool | median s | MB/s | ratio peer/kiln | median s incl. sync | ratio incl. sync | on disk MB | runs (s) |"
	echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
	kiln_m=$(median ${T[kiln]:-})
	local kiln_s ms rs
	kiln_s=$(median ${TS[kiln]:-})
	for t in "${A_TOOLS[@]}"; do
		m=$(cell_or_skip "$t" "$t")
		ms=$(median ${TS[$t]:-})
		if [[ $m =~ ^[0-9.]+$ ]]; then
			rate=$(awk -v b="$MULTI_BYTES" -v s="$m" 'BEGIN { printf "%.0f", b / 1e6 / s }')
			r=$(ratio "$m" "$kiln_m")
			rs=$(ratio "$ms" "$kiln_s")
		else
			rate="-" r="-" rs="-" ms="-"
		fi
		echo "| ${A_LABEL[$t]} | $m | $rate | $r | $ms | $rs | $( [ -n "${DISK[$t]:-}" ] && mb "${DISK[$t]}" || echo -) | $(fmt_runs "${T[$t]:-}")|"
	done
	echo
	echo "\"incl. sync\": the command and then sync(1), i.e. until the data is on disk. kiln fsyncs every blob before it renames it into place (its crash-safety contract); crane and skopeo leave the writing-back to the kernel."
	echo
	echo "kiln's report (last run): ${NOTE[kiln]:-?}"
	echo
	echo "## b. Re-warm with nothing changed: 20 images × 2 platforms ($(mb "$SMALL_BYTES") MB)"
	echo
	echo "kiln talks to the registry through bench/countproxy; requests and bytes are what the registry sent back (headers + bodies)."
	echo
	echo "| phase | median s | requests | bytes | by method (last run) | kiln's counts (last run) | runs (s) |"
	echo "| --- | ---: | ---: | ---: | --- | --- | --- |"
	for t in "${B_PHASES[@]}"; do
		m=$(cell_or_skip "b-$t" "b-$t")
		echo "| ${B_LABEL[$t]} | $m | $(median ${REQ[b-$t]:-}) | $(median ${BYT[b-$t]:-}) | ${METHODS[b-$t]:--} | ${NOTE[b-$t]:-?} | $(fmt_runs "${T[b-$t]:-}")|"
	done
	echo
	echo "Every request, phase by phase: bench/.work/warm/logs/proxy-access.log (\"--- reset\" separates phases)."
	echo
	echo "## c. Peak RSS while warming the $((BIG_BYTES / 1048576)) MiB one-layer image (linux/amd64)"
	echo
	if [ -n "${SKIP[rss]:-}" ]; then
		echo "skipped: ${SKIP[rss]}"
	else
		echo "| tool | median peak RSS MiB | RSS ratio peer/kiln | median s | median s incl. sync | runs (RSS MiB) |"
		echo "| --- | ---: | ---: | ---: | ---: | --- |"
		local kiln_rss
		kiln_rss=$(median ${RSS[c-kiln]:-})
		for t in "${C_TOOLS[@]}"; do
			if [ -n "${SKIP[$t]:-}" ]; then
				echo "| ${C_LABEL[$t]} | skipped: ${SKIP[$t]} | | | | |"
				continue
			fi
			m=$(median ${RSS[c-$t]:-})
			if [ -z "$m" ]; then
				echo "| ${C_LABEL[$t]} | failed (${FAIL[c-$t]:-0}/$RUNS runs) | | | | |"
				continue
			fi
			echo "| ${C_LABEL[$t]} | $(awk -v k="$m" 'BEGIN { printf "%.1f", k / 1024 }') | $(ratio "$m" "$kiln_rss") | $(median ${T[c-$t]}) | $(median ${TS[c-$t]}) | $(for v in ${RSS[c-$t]}; do awk -v k="$v" 'BEGIN { printf "%.0f ", k / 1024 }'; done)|"
		done
	fi
	local s
	for s in "${!SKIP[@]}"; do echo; echo "skipped $s: ${SKIP[$s]}"; done
	for s in "${!FAIL[@]}"; do echo; echo "failures $s: ${FAIL[$s]} of $RUNS runs (logs in bench/.work/warm/logs/)"; done
}

report | tee "$RESULTS/latest.md.tmp"
mv "$RESULTS/latest.md.tmp" "$RESULTS/latest.md"
log "written to bench/results/latest.md; logs in bench/.work/warm/logs/"
# Exit non-zero only if kiln itself failed somewhere; a peer's failure is in the report.
for s in "${!FAIL[@]}"; do
	case $s in kiln | b-* | c-kiln) die "kiln failed in $s (see bench/.work/warm/logs/)" ;; esac
done
