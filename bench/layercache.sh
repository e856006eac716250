#!/usr/bin/env bash
# kiln's layer-cache benchmark: the same Dockerfile built three times in a
# row by each tool, side by side, against a local registry process:
#
#   a. cold: an empty cache
#   b. unchanged: the same build again
#   c. edited: one app file changed (only the last step, COPY app/, misses)
#
# The build (bench/cacheseed): FROM a Debian bookworm minbase base
# (debootstrap, made once by minbase_tar and kept in
# bench/.work/runstep-cache/, shared with runstep.sh), three RUN steps that
# need no network (useradd; 2,000 small files; cp -a /usr/share/doc), then
# COPY app/ /app/ of 300 small files. Every tool pushes the image to the
# local registry.
#
# Tools, each starting every run from an empty cache:
#   kaniko          v1.24 executor with --cache=true --cache-repo REG/cache/...
#                   in a fresh jail per build (bench/kaniko.sh): no local state
#                   survives, like a CI pod; the base is pulled every time
#   buildah         bud --layers (vfs storage, chroot isolation), then push;
#                   its storage folder is the cache and is kept for b and c
#   kiln registry   kiln build --cache --cache-repo REG/kilncache/...; a fresh
#                   --cache-dir for every build (no local state, as kaniko)
#   kiln local      kiln build --cache --cache-dir DIR; DIR kept for b and c
# kiln is measured only if `kiln build --help` lists --cache-repo (otherwise
# "skipped: no --cache flag in this binary").
#
# Median of BENCH_RUNS; ratios kiln / peer (below 1: kiln is faster).
#
# Usage: bash bench/layercache.sh       (or: make bench)
#   BENCH_RUNS=5          runs per measurement (median reported)
#   KILN=bin/kiln         the kiln binary to measure
#   KANIKO_EXECUTOR=...   the kaniko executor (default bench/.bin/kaniko-executor)
#   KANIKO_JAIL_FS=disk   kaniko's root: disk (a folder under bench/.work, the
#                         same disk as the others; default here) or tmpfs
#   BENCH_KANIKO_FLAGS    more executor flags (e.g. --cache-copy-layers)
#   BENCH_SKIP="..."      leave out some of: kaniko buildah kiln
#
# Writes only under bench/.work/layercache/ (scratch, wiped at start; TMPDIR
# of every measured command points there too), bench/.work/runstep-cache/
# (the debootstrap tree as a tar, kept across runs) and
# bench/results/layercache.md. Servers listen on 127.0.0.1 only; only
# processes started here are stopped, by PID. The page cache is not dropped.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench
WORK=$BENCH/.work/layercache
KEEP=$BENCH/.work/runstep-cache
RESULTS=$BENCH/results
RUNS=${BENCH_RUNS:-5}
KILN=${KILN:-$ROOT/bin/kiln}
case $KILN in /*) ;; *) KILN=$PWD/$KILN ;; esac
SUITE=bookworm
MIRROR=http://deb.debian.org/debian
export KANIKO_JAIL_FS=${KANIKO_JAIL_FS:-disk}
KANIKO_KEEP_ROOTS=1 # removing the jail's root is not kaniko's time: kaniko_clean after each build

. "$BENCH/lib.sh"    # log, die, cleanup of PIDS, apt_install, median, ratio, wipe...
. "$BENCH/kaniko.sh" # kaniko_run, kaniko_check, kaniko_host_state

preflight

# ---------------------------------------------------------------- tools
declare -A SKIP=() # tool -> why it is not measured

install_tools() {
	local need=() s why
	for s in ${BENCH_SKIP:-}; do
		case $s in
		kaniko | buildah | kiln) SKIP[$s]="BENCH_SKIP" ;;
		*) die "BENCH_SKIP: unknown '$s' (kaniko buildah kiln)" ;;
		esac
	done
	command -v docker-registry >/dev/null 2>&1 || [ -x /usr/bin/docker-registry ] || need+=(docker-registry)
	[ -n "${SKIP[buildah]:-}" ] || command -v buildah >/dev/null 2>&1 || need+=(buildah)
	[ -f "$KEEP/minbase.tar" ] || [ -x /usr/sbin/debootstrap ] || need+=(debootstrap)
	[ -n "${SKIP[kaniko]:-}" ] || [ -x /bin/busybox ] || need+=(busybox-static)
	if [ ${#need[@]} -gt 0 ]; then
		apt_install "${need[@]}" || log "could not apt-get install ${need[*]} (need root or sudo)"
	fi
	command -v docker-registry >/dev/null 2>&1 || [ -x /usr/bin/docker-registry ] ||
		die "docker-registry is required (apt-get install docker-registry)"
	[ -n "${SKIP[buildah]:-}" ] || command -v buildah >/dev/null 2>&1 ||
		SKIP[buildah]="buildah not installed (apt-get install buildah failed)"
	if [ -z "${SKIP[kaniko]:-}" ]; then
		why=$(kaniko_check) || SKIP[kaniko]=$why
	fi
	[ -n "${SKIP[kiln]:-}" ] || "$KILN" build --help 2>/dev/null | grep -q -- --cache-repo ||
		SKIP[kiln]="no --cache flag in this binary"

	log "building bench/cacheseed"
	(cd "$ROOT" && go build -o "$WORK/tools/cacheseed" ./bench/cacheseed)

	cat >"$WORK/policy.json" <<-'EOF'
		{"default": [{"type": "insecureAcceptAnything"}]}
	EOF
}

# ---------------------------------------------------------------- commands
TOOLS=(kaniko buildah kiln_reg kiln_local)
PHASES=(cold unchanged edited)

declare -A LABEL=(
	[kaniko]="kaniko --cache=true --cache-repo (jailed, no local state)"
	[buildah]="buildah bud --layers (vfs) + push"
	[buildah_bud]="buildah bud --layers alone (no push)"
	[kiln_reg]="kiln build --cache --cache-repo (fresh --cache-dir)"
	[kiln_local]="kiln build --cache --cache-repo= --cache-dir (the folder only)"
)

# What a tool logs for a step taken from its cache (counted in each log).
declare -A HITS_RE=(
	[kaniko]='Using caching version of cmd'
	[buildah]='^--> Using cache'
	[kiln_reg]='layer cache hit'
	[kiln_local]='layer cache hit'
)

tool_of() { case $1 in kiln_*) echo kiln ;; buildah*) echo buildah ;; *) echo "$1" ;; esac; }

declare -A T=()    # TOOL-PHASE -> " s1 s2 ..." (seconds)
declare -A TS=()   # the same, including a sync after it
declare -A FAIL=() # TOOL-PHASE -> failures
declare -A HITS=() # TOOL-PHASE -> cache hits logged (last run)
LAST="" LASTS=""

buildah_cmd() { # STORAGE ARGS...: buildah on the vfs storage in STORAGE
	local s=$1
	shift
	buildah --root "$s/root" --runroot "$s/runroot" --storage-driver vfs "$@"
}

# build TOOL PHASE RUN CTX: one timed build; its log is logs/TOOL-PHASE-RUN.log.
build() {
	local tool=$1 phase=$2 n=$3 ctx=$4 key=$1-$2 logf
	logf=$WORK/logs/$key-$n.log
	case $tool in
	kaniko)
		# shellcheck disable=SC2086 # BENCH_KANIKO_FLAGS is a list of flags
		run_in_work "$key" "$logf" kaniko_run "$ctx" --dockerfile /workspace/Dockerfile \
			--insecure-registry "$REG" --destination "$REG/out/kaniko:r$n" \
			--cache=true --cache-repo "$REG/cache/kaniko-r$n" ${BENCH_KANIKO_FLAGS:-} || { kaniko_clean; return 1; }
		kaniko_clean
		kaniko_jail_intact
		;;
	buildah)
		local s=$WORK/state/buildah-r$n bud
		run_in_work buildah_bud-"$phase" "$WORK/logs/buildah_bud-$phase-$n.log" buildah_cmd "$s" \
			bud --layers --isolation chroot --tls-verify=false --signature-policy "$WORK/policy.json" \
			-f "$ctx/Dockerfile" -t "localhost/bench-cache:r$n" "$ctx" || return 1
		bud=$LAST
		run_in_work "$key" "$logf" buildah_cmd "$s" push --tls-verify=false --signature-policy "$WORK/policy.json" \
			"localhost/bench-cache:r$n" "docker://$REG/out/buildah:r$n" || return 1
		# the row is bud + push; the push alone went into T[buildah-PHASE]: fix it
		T[$key]=${T[$key]% *}" $(add "$bud" "$LAST")"
		TS[$key]=${TS[$key]% *}" $(add "$bud" "$LASTS")"
		logf=$WORK/logs/buildah_bud-$phase-$n.log
		;;
	kiln_reg)
		local d=$WORK/state/kiln_reg-r$n-$phase
		run_in_work "$key" "$logf" "$KILN" build --context "$ctx" --dockerfile Dockerfile \
			--insecure-registry "$REG" --destination "$REG/out/kiln-reg:r$n" --work-dir "$TMPDIR" \
			--cache --cache-repo "$REG/kilncache/r$n" --cache-dir "$d" --progress plain || return 1
		wipe "$d"
		;;
	kiln_local)
		run_in_work "$key" "$logf" "$KILN" build --context "$ctx" --dockerfile Dockerfile \
			--insecure-registry "$REG" --destination "$REG/out/kiln-local:r$n" --work-dir "$TMPDIR" \
			--cache --cache-repo= --cache-dir "$WORK/state/kiln_local-r$n" --progress plain || return 1
		;;
	esac
	HITS[$key]=$(grep -ciE "${HITS_RE[$tool]}" "$logf" || true)
	log "$key run $n: ${T[$key]##* }s, ${HITS[$key]} cache hits logged"
}

# kaniko_jail_intact: what kaniko's RUN steps would have changed on this
# host if they had escaped is as it was before the first kaniko build.
kaniko_jail_intact() {
	kaniko_host_state "${SENTINELS[@]}" >"$WORK/host-state.after"
	if ! diff -u "$WORK/host-state.before" "$WORK/host-state.after" >&2; then
		die "the host changed while kaniko ran: the jail leaked (see the diff above)"
	fi
	! grep -q "$KANIKO_JAILS" /proc/self/mountinfo || die "a kaniko jail mount shows on the host"
}

# cycle TOOL RUN: cold, unchanged and edited builds of a fresh copy of the
# context, from an empty cache; then the tool's state is removed.
cycle() {
	local tool=$1 n=$2 ctx=$WORK/ctx/$1 phase
	[ -z "${SKIP[$(tool_of "$tool")]:-}" ] || return 0
	wipe "$ctx"
	cp -a "$CTX" "$ctx"
	for phase in "${PHASES[@]}"; do
		[ "$phase" != edited ] || printf 'edited in run %s\n' "$n" >>"$ctx/$EDIT"
		build "$tool" "$phase" "$n" "$ctx" || break
	done
	wipe "$ctx"
	wipe "$WORK/state"
	mkdir -p "$WORK/state"
}

# ---------------------------------------------------------------- start
wipe "$WORK"
mkdir -p "$WORK/logs" "$WORK/ctx" "$WORK/state" "$WORK/tmp" "$RESULTS"
install_tools
minbase_tar "$KEEP" "$SUITE" "$MIRROR"
[ -z "${SKIP[minbase]:-}" ] || die "no base image: ${SKIP[minbase]}"
export TMPDIR=$WORK/tmp
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

mkfifo "$WORK/hold"
exec 3<>"$WORK/hold"
log "seeding the registry (minbase image, build context)"
"$WORK/tools/cacheseed" -dir "$WORK/registry" -context "$WORK/context" -ready "$WORK/cacheseed.json" \
	-lists "$WORK/lists" -log "$WORK/logs/registry.log" -minbase "$KEEP/minbase.tar" \
	<"$WORK/hold" >"$WORK/logs/cacheseed.out" 2>"$WORK/logs/cacheseed.err" 3>&- &
SEED_PID=$!
PIDS+=("$SEED_PID")
wait_ready cacheseed "$SEED_PID"
REG=$(cat "$WORK/lists/registry")
PLAT=$(cat "$WORK/lists/platform")
MINBASE=$(cat "$WORK/lists/minbase.ref")
MINBASE_TAR=$(cat "$WORK/lists/minbase.tar")
APP_FILES=$(cat "$WORK/lists/app.files")
APP_BYTES=$(cat "$WORK/lists/app.bytes")
EDIT=$(cat "$WORK/lists/edit")
CTX=$(cat "$WORK/lists/context")

# What the Dockerfile's steps create: on the host, none of it may change.
SENTINELS=(/app /srv/data /srv/doc /home/app)
kaniko_host_state "${SENTINELS[@]}" >"$WORK/host-state.before"

# ---------------------------------------------------------------- runs
for n in $(seq 1 "$RUNS"); do
	log "run $n/$RUNS"
	k=${#TOOLS[@]}
	for i in $(seq 0 $((k - 1))); do # a different tool first on every run
		cycle "${TOOLS[$(((i + n - 1) % k))]}" "$n"
	done
done

# ---------------------------------------------------------------- report

# row TOOL: the table row of TOOL (or of buildah_bud).
row() {
	local tool=$1 skip phase c u e runs=""
	skip=${SKIP[$(tool_of "$tool")]:-}
	if [ -n "$skip" ]; then
		echo "| ${LABEL[$tool]} | skipped: $skip | | | | | | |"
		return
	fi
	c=$(median ${T[$tool-cold]:-}) u=$(median ${T[$tool-unchanged]:-}) e=$(median ${T[$tool-edited]:-})
	for phase in "${PHASES[@]}"; do
		runs+="$(fmt_runs "${T[$tool-$phase]:-}")"
		[ -z "${FAIL[$tool-$phase]:-}" ] || runs+="(${FAIL[$tool-$phase]} failed) "
		[ "$phase" = edited ] || runs+="/ "
	done
	echo "| ${LABEL[$tool]} | ${c:-failed} | ${u:-failed} | ${e:-failed} | $(ratio "$u" "$c") | $(ratio "$e" "$c") | ${HITS[$tool-unchanged]:--} / ${HITS[$tool-edited]:--} | $runs|"
}

# ratios KILN_TOOL PEER: kiln / peer for the three phases.
ratios() {
	local k=$1 p=$2 phase out=""
	for phase in "${PHASES[@]}"; do
		out+=" $(ratio "$(median ${T[$k-$phase]:-})" "$(median ${T[$p-$phase]:-})") |"
	done
	echo "| ${LABEL[$k]%% (*} ($k) / $p |$out"
}

report() {
	local s k p
	echo "# kiln layer-cache benchmark"
	echo
	echo "- when: $(date -u +%Y-%m-%dT%H:%M:%SZ); kiln $("$KILN" version 2>/dev/null | head -n 1) ($KILN)"
	echo "- commit: $(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo '?')"
	echo "- machine: $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -sr); work folder on $(df -T "$WORK" | awk 'NR == 2 { print $2 }')"
	echo "- peers: kaniko $("$KANIKO_EXECUTOR" version 2>/dev/null | awk '{ print $NF }' || echo 'n/a') ($KANIKO_EXECUTOR), its root on $KANIKO_JAIL_FS; $(buildah --version 2>/dev/null || echo 'buildah n/a')"
	echo "- runs: $RUNS (median shown); registry: docker-registry on $REG, plain HTTP on loopback; platform $PLAT"
	echo "- load average (1, 5, 15 min) at start: $LOAD_START; at end: $(cut -d' ' -f1-3 /proc/loadavg) — anything above ~0.5 means other work shared the CPUs, so compare ratios within this run only"
	echo "- base ${MINBASE#"$REG"/}: debootstrap --variant=minbase $SUITE, one layer, $(mb "$MINBASE_TAR") MB tar; app: $APP_FILES files, $(mb "$APP_BYTES") MB; the edited rebuild appends a line to $EDIT"
	echo "- kaniko's jail left the host as it was: /etc/passwd, group, shadow, gshadow and ${SENTINELS[*]} checked after every kaniko build"
	echo
	echo '```'
	sed -e "s|$REG/||" "$CTX/Dockerfile"
	echo '```'
	echo
	echo "## Times"
	echo
	echo "Seconds, median of $RUNS; every build pushes its image to the registry. a: cold (empty cache), b: unchanged rebuild, c: rebuild after editing one app file. Cache hits: log lines of the last run that say a step came from the cache (b / c; 3 / 3 means every RUN step was cached, COPY not)."
	echo
	echo "| tool | a. cold s | b. unchanged s | c. edited s | b / a | c / a | cache hits b / c | runs a / b / c (s) |"
	echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
	for k in kaniko buildah buildah_bud kiln_reg kiln_local; do row "$k"; done
	echo
	echo "## Ratios, kiln / peer"
	echo
	echo "Below 1, kiln is faster. buildah's row is bud + push, like the other tools' (each pushes)."
	echo
	echo "| | a. cold | b. unchanged | c. edited |"
	echo "| --- | ---: | ---: | ---: |"
	if [ -n "${SKIP[kiln]:-}" ]; then
		echo "| kiln: skipped, ${SKIP[kiln]} | | | |"
	else
		for k in kiln_reg kiln_local; do
			for p in kaniko buildah; do
				[ -n "${SKIP[$p]:-}" ] || ratios "$k" "$p"
			done
		done
	fi
	echo
	echo "How each tool keeps its cache between a, b and c: kaniko in the registry only (a fresh jail per build pulls the base and the cached layers again; COPY is not cached unless --cache-copy-layers); buildah in its vfs storage; kiln registry mode in the registry only (a fresh --cache-dir per build); kiln local mode in its --cache-dir. Every tool starts each run from an empty cache (a new cache repository, storage folder or cache dir)."
	for s in "${!SKIP[@]}"; do echo; echo "skipped $s: ${SKIP[$s]}"; done
	for s in "${!FAIL[@]}"; do echo; echo "failures $s: ${FAIL[$s]} of $RUNS runs (logs in bench/.work/layercache/logs/)"; done
}

report | tee "$RESULTS/layercache.md.tmp"
mv "$RESULTS/layercache.md.tmp" "$RESULTS/layercache.md"
log "written to bench/results/layercache.md; logs in bench/.work/layercache/logs/"
[ -n "${SKIP[kiln]:-}" ] && log "kiln: skipped, ${SKIP[kiln]}"
for s in "${!FAIL[@]}"; do
	case $s in kiln_*) die "kiln failed in $s (see bench/.work/layercache/logs/)" ;; esac
done
