#!/usr/bin/env bash
# kiln's unpack benchmark: how long kiln takes to unpack a base image into
# an empty stage folder, side by side with GNU tar extracting the same layer
# blobs into an empty folder on the same filesystem, on tmpfs and on the
# disk. The base is bench/runseed's run-50k (busybox, then 50,000 files of
# 100 B–3 KiB in 1,000 folders: 51,077 tar entries, 79 MB), pushed to a
# local registry process and warmed into a kiln cache first; both tools
# read the cache's blobs (from the page cache).
#
#   kiln   kiln build of FROM run-50k + one RUN (the RUN makes kiln unpack
#          the stage; a build without RUN reads only the layers' headers);
#          the unpack time is kiln's own log line "unpacked the stage's
#          filesystem", which times rootfs.Unpack: reading, decompressing
#          and checking both digests of every layer, and writing the tree
#          (--layer-store=false). The whole build's time is reported too.
#   kiln, layer store cold
#          the same build with the layer store (the default as root) in a
#          copy of the cache on the filesystem measured, its store emptied
#          before every run: the time is the log line "mounted the stage's
#          filesystem from the layer store", which times unpacking every
#          layer into the store (each onto an overlay of those below) and
#          mounting the stage.
#   kiln, layer store tars
#          the pod path (where stages are unpacked, not mounted): the layer
#          store keeps each layer's uncompressed tar, filled by one untimed
#          build, and the stage is unpacked from them (--snapshot walk makes
#          a root build take that path): "unpacked the stage's filesystem".
#   tar    tar -xzf of each layer blob in order, as root (owners, modes and
#          mtimes applied, as kiln does), into an empty folder.
#
# Runs alternate between the two, BENCH_RUNS of each per filesystem (median
# reported, ratio kiln / tar). Then, once on tmpfs, both under strace -c -f:
# the syscalls each makes (kiln's are the whole build's).
#
# Usage: bash bench/unpack.sh          (or: make bench)
#   BENCH_RUNS=5                 runs per measurement (median reported)
#   KILN=bin/kiln                the kiln binary to measure
#   KILN_BASELINE=               another kiln binary measured alongside (e.g.
#                                one built from main), a column of its own
#   BENCH_TMPFS=/dev/shm         a tmpfs mount to measure on ("" to skip)
#   BENCH_SKIP="strace"          leave out the strace -c pass
#   BENCH_SETTLE=65              seconds to wait (after a sync) after each run on
#                                the disk: ext4 without a journal scans past
#                                every inode freed in the last 60 s when it
#                                allocates one (recently_deleted), so a run
#                                right after a 50,000-file tree was removed
#                                pays for it
#
# Writes only under bench/.work/unpack/ (scratch, wiped at start, holds the
# disk runs), a folder of its own under BENCH_TMPFS (removed at exit) and
# bench/results/unpack.md. The registry listens on 127.0.0.1 only; only
# processes started here are stopped, by PID. The page cache is not dropped.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench
WORK=$BENCH/.work/unpack
RESULTS=$BENCH/results
RUNS=${BENCH_RUNS:-5}
KILN=${KILN:-$ROOT/bin/kiln}
case $KILN in /*) ;; *) KILN=$PWD/$KILN ;; esac
BASELINE=${KILN_BASELINE:-}
case $BASELINE in /* | '') ;; *) BASELINE=$PWD/$BASELINE ;; esac
TMPFS=${BENCH_TMPFS-/dev/shm}

. "$BENCH/lib.sh" # log, die, cleanup of PIDS, apt_install, median, ratio, wipe...

preflight
[ -z "$BASELINE" ] || [ -x "$BASELINE" ] || die "KILN_BASELINE: $BASELINE is not an executable"

SHM=""
trap 'rc=$?; [ -z "$SHM" ] || rm -rf "$SHM"; (exit $rc); cleanup' EXIT

# ---------------------------------------------------------------- tools
declare -A SKIP=() # what is not measured, and why

install_tools() {
	local need=() s
	for s in ${BENCH_SKIP:-}; do
		case $s in
		strace) SKIP[$s]="BENCH_SKIP" ;;
		*) die "BENCH_SKIP: unknown '$s' (strace)" ;;
		esac
	done
	command -v docker-registry >/dev/null 2>&1 || [ -x /usr/bin/docker-registry ] || need+=(docker-registry)
	[ -x /bin/busybox ] || need+=(busybox-static)
	command -v jq >/dev/null 2>&1 || need+=(jq)
	command -v tar >/dev/null 2>&1 || need+=(tar)
	command -v gzip >/dev/null 2>&1 || need+=(gzip)
	[ -n "${SKIP[strace]:-}" ] || command -v strace >/dev/null 2>&1 || need+=(strace)
	if [ ${#need[@]} -gt 0 ]; then
		apt_install "${need[@]}" || log "could not apt-get install ${need[*]} (need root or sudo)"
	fi
	command -v docker-registry >/dev/null 2>&1 || [ -x /usr/bin/docker-registry ] ||
		die "docker-registry is required (apt-get install docker-registry)"
	[ -x /bin/busybox ] || die "/bin/busybox is required (apt-get install busybox-static): the base's shell"
	command -v jq >/dev/null 2>&1 || die "jq is required (the cache's manifests are read with it)"
	command -v tar >/dev/null 2>&1 && command -v gzip >/dev/null 2>&1 || die "GNU tar and gzip are required: they are the peer"
	[ -n "${SKIP[strace]:-}" ] || command -v strace >/dev/null 2>&1 || SKIP[strace]="strace not installed"
	[ "$(id -u)" = 0 ] || log "not root: kiln runs RUN rootless, tar applies no owners; the ratio still compares like with like"

	log "building bench/runseed"
	(cd "$ROOT" && go build -o "$WORK/tools/runseed" ./bench/runseed)
}

# layers CACHE REF: the layer blob paths of REF's image in the cache, base first.
layers() {
	local cache=$1 ref=$2 d mt
	d=$(jq -r --arg r "$ref" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $r) | .digest' "$cache/index.json" | head -n 1)
	[ -n "$d" ] || die "$ref is not in $cache/index.json"
	for _ in 1 2 3; do
		mt=$(jq -r '.mediaType // ""' "$cache/blobs/${d%%:*}/${d#*:}")
		case $mt in
		*index* | *manifest.list*) d=$(jq -r '.manifests[0].digest' "$cache/blobs/${d%%:*}/${d#*:}") ;;
		*) break ;;
		esac
	done
	jq -r '.layers[].digest' "$cache/blobs/${d%%:*}/${d#*:}" | while read -r l; do
		echo "$cache/blobs/${l%%:*}/${l#*:}"
	done
}

fs_type() { stat -f -c %T "$1" 2>/dev/null || echo "?"; }

# ---------------------------------------------------------------- start
wipe "$WORK"
mkdir -p "$WORK/logs" "$WORK/disk" "$RESULTS"
install_tools
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

FSES=(disk)
declare -A DIR=([disk]=$WORK/disk) FSNOTE=()
FSNOTE[disk]="$(df --output=fstype "$WORK/disk" | tail -n 1) ($(df --output=source "$WORK/disk" | tail -n 1))"
if [ -n "$TMPFS" ]; then
	if [ "$(fs_type "$TMPFS")" = tmpfs ]; then
		SHM=$(mktemp -d "$TMPFS/kiln-bench-unpack.XXXXXX")
		DIR[tmpfs]=$SHM
		FSNOTE[tmpfs]="tmpfs ($TMPFS)"
		FSES=(tmpfs disk)
	else
		SKIP[tmpfs]="$TMPFS is not a tmpfs mount"
	fi
else
	SKIP[tmpfs]="BENCH_TMPFS is empty"
fi

mkfifo "$WORK/hold"
exec 3<>"$WORK/hold"
log "seeding the registry (the 50k-file image)"
"$WORK/tools/runseed" -dir "$WORK/registry" -context "$WORK/context" -ready "$WORK/runseed.json" \
	-lists "$WORK/lists" -log "$WORK/logs/registry.log" \
	<"$WORK/hold" >"$WORK/logs/runseed.out" 2>"$WORK/logs/runseed.err" 3>&- &
SEED_PID=$!
PIDS+=("$SEED_PID")
wait_ready runseed "$SEED_PID"
PLAT=$(cat "$WORK/lists/platform")
B50K=$(cat "$WORK/lists/base50k.ref")
ENTRIES=$(cat "$WORK/lists/base50k.entries")
BYTES=$(cat "$WORK/lists/base50k.bytes")
CTX=$(cat "$WORK/lists/context")

CACHE=$WORK/cache
log "kiln warm of the base into $CACHE"
"$KILN" warm --image "$B50K" --platform "$PLAT" --cache-dir "$CACHE" --progress plain \
	>"$WORK/logs/warm.log" 2>&1 || { tail -n 5 "$WORK/logs/warm.log" >&2; die "kiln warm failed"; }
mapfile -t BLOBS < <(layers "$CACHE" "$B50K")
[ ${#BLOBS[@]} -gt 0 ] || die "no layers found for $B50K in $CACHE"
BLOB_BYTES=$(du -cb "${BLOBS[@]}" | tail -n 1 | cut -f1)

# The layer-store rows' caches: copies of CACHE on each filesystem; the
# tars row's filled by one untimed build.
SETTLE=${BENCH_SETTLE:-65}
case $SETTLE in '' | *[!0-9]*) die "BENCH_SETTLE must be whole seconds, got '$SETTLE'" ;; esac
settle() { if [ "$1" = disk ] && [ "$SETTLE" -gt 0 ]; then sync && sleep "$SETTLE"; fi; }
for fs in "${FSES[@]}"; do
	cp -a "$CACHE" "${DIR[$fs]}/cache-cold"
	cp -a "$CACHE" "${DIR[$fs]}/cache-tars"
	mkdir -p "${DIR[$fs]}/work"
	"$KILN" build --context "$CTX" --dockerfile Dockerfile.a1 --no-push --output "oci:${DIR[$fs]}/out" --snapshot walk \
		--cache-dir "${DIR[$fs]}/cache-tars" --work-dir "${DIR[$fs]}/work" --progress plain >"$WORK/logs/fill-tars-$fs.log" 2>&1 ||
		die "kiln could not fill the layer store's tars (see $WORK/logs/fill-tars-$fs.log)"
	grep -q 'msg="layer store: uncompressed tars".*kept=[1-9]' "$WORK/logs/fill-tars-$fs.log" ||
		die "kiln kept no tars in its layer store (see $WORK/logs/fill-tars-$fs.log)"
	wipe "${DIR[$fs]}/work"
	wipe "${DIR[$fs]}/out"
	settle "$fs"
done

# ---------------------------------------------------------------- runs
declare -A T=() TS=() FAIL=() UNPACK=() BUILD=()

# kiln_run FS N [VARIANT]: VARIANT is "" (this kiln, --layer-store=false),
# baseline (BASELINE, the same), cold (layer store emptied first) or tars
# (unpacked from the layer store's tars).
kiln_run() {
	local fs=$1 n=$2 bin=$KILN key=$1 base=${DIR[$1]} logf t0 t1 s cache=$CACHE line="unpacked the stage's filesystem"
	local flags=(--layer-store=false)
	case ${3:-} in
	baseline) bin=$BASELINE key=baseline-$1 ;;
	cold)
		key=cold-$1 cache=$base/cache-cold flags=(--layer-store=true)
		line="mounted the stage's filesystem from the layer store"
		wipe "$cache/.kiln/unpacked"
		;;
	tars) key=tars-$1 cache=$base/cache-tars flags=(--layer-store=true --snapshot walk) ;;
	esac
	logf=$WORK/logs/kiln-$key-$n.log
	wipe "$base/work"
	wipe "$base/out"
	mkdir -p "$base/work"
	sync
	t0=$EPOCHREALTIME
	if ! "$bin" build --context "$CTX" --dockerfile Dockerfile.a1 --no-push --output "oci:$base/out" \
		--cache-dir "$cache" --work-dir "$base/work" --progress plain "${flags[@]}" >"$logf" 2>&1; then
		FAIL[kiln-$key]=$((${FAIL[kiln-$key]:-0} + 1))
		log "kiln ($key) failed; last lines of $logf:"
		tail -n 5 "$logf" | sed 's/^/    /' >&2
		return 0
	fi
	t1=$EPOCHREALTIME
	s=$(grep -o "msg=\"$line\".*" "$logf" | grep -o ' seconds=[0-9.]*' | cut -d= -f2 | head -n 1)
	if [ -z "$s" ]; then
		FAIL[kiln-$key]=$((${FAIL[kiln-$key]:-0} + 1))
		log "kiln ($key): no \"$line\" line in $logf"
		return 0
	fi
	s=$(awk -v s="$s" 'BEGIN { printf "%.3f", s }')
	UNPACK[$key]+=" $s"
	BUILD[$key]+=" $(secs "$t0" "$t1")"
	log "kiln ($key): unpack ${s}s, build $(secs "$t0" "$t1")s"
	wipe "$base/work"
	wipe "$base/out"
	[ "${3:-}" != cold ] || wipe "$cache/.kiln/unpacked"
	settle "$fs"
}

tar_run() { # FS N
	local fs=$1 n=$2 dest=${DIR[$1]}/tar logf=$WORK/logs/tar-$1-$2.log t0 t1 b rc=0
	wipe "$dest"
	mkdir -p "$dest"
	sync
	t0=$EPOCHREALTIME
	for b in "${BLOBS[@]}"; do
		tar -xzf "$b" -C "$dest" >>"$logf" 2>&1 || rc=$?
	done
	t1=$EPOCHREALTIME
	if [ "$rc" -ne 0 ]; then
		FAIL[tar-$fs]=$((${FAIL[tar-$fs]:-0} + 1))
		log "tar on $fs failed (exit $rc); see $logf"
	else
		T[$fs]+=" $(secs "$t0" "$t1")"
		log "tar on $fs: $(secs "$t0" "$t1")s"
	fi
	wipe "$dest"
	sync
	settle "$fs"
}

for n in $(seq 1 "$RUNS"); do
	for fs in "${FSES[@]}"; do
		log "run $n/$RUNS on $fs"
		if [ $((n % 2)) = 1 ]; then
			kiln_run "$fs" "$n"
			tar_run "$fs" "$n"
			kiln_run "$fs" "$n" cold
			kiln_run "$fs" "$n" tars
			[ -z "$BASELINE" ] || kiln_run "$fs" "$n" baseline
		else
			[ -z "$BASELINE" ] || kiln_run "$fs" "$n" baseline
			kiln_run "$fs" "$n" tars
			kiln_run "$fs" "$n" cold
			tar_run "$fs" "$n"
			kiln_run "$fs" "$n"
		fi
	done
done

# ---------------------------------------------------------------- strace
STRACE_FS=${FSES[0]}
if [ -z "${SKIP[strace]:-}" ]; then
	log "strace -c -f of one kiln build and one tar run on $STRACE_FS"
	base=${DIR[$STRACE_FS]}
	wipe "$base/work"
	mkdir -p "$base/work" "$base/tar"
	strace -c -f -o "$WORK/logs/strace-kiln.txt" "$KILN" build --context "$CTX" --dockerfile Dockerfile.a1 --no-push \
		--layer-store=false --output "oci:$base/out" --cache-dir "$CACHE" --work-dir "$base/work" --progress plain \
		>"$WORK/logs/strace-kiln.log" 2>&1 || SKIP[strace]="kiln failed under strace (see logs/strace-kiln.log)"
	strace -c -f -o "$WORK/logs/strace-tar.txt" sh -c 'for b; do tar -xzf "$b" -C "$0" || exit 1; done' "$base/tar" "${BLOBS[@]}" ||
		SKIP[strace]="tar failed under strace"
	wipe "$base/work"
	wipe "$base/out"
	wipe "$base/tar"
fi

# strace_calls FILE: the calls strace -c counted; strace_top FILE: the 12
# most frequent syscalls with their counts (column 4 is calls whether or
# not the errors column is empty).
strace_calls() { awk '$NF == "total" { print $4 }' "$1"; }
# strace_file FILE: the calls that create and describe files (what an
# unpack does per entry), leaving out the runtime's (futex, nanosleep...)
# and kiln's work folder removal (unlinkat, getdents64).
strace_file() {
	awk 'BEGIN { split("openat openat2 open close write pwrite64 newfstatat fstat statx fcntl lseek ftruncate utimensat fchown fchownat fchmod fchmodat mkdirat symlinkat linkat mknodat fsetxattr lsetxattr", n); for (i in n) want[n[i]] = 1 }
		NR > 2 && $1 !~ /^-/ && ($NF in want) { s += $4 } END { print s + 0 }' "$1"
}
strace_top() {
	awk 'NR > 2 && $1 !~ /^-/ && $NF != "total" { print $4, $NF }' "$1" |
		sort -rn | head -n 12 | awk '{ printf "%s %s, ", $2, $1 }' | sed 's/, $//'
}

# ---------------------------------------------------------------- report
report() {
	local fs k t
	echo "# kiln unpack benchmark"
	echo
	echo "- when: $(date -u +%Y-%m-%dT%H:%M:%SZ); kiln $("$KILN" version 2>/dev/null | head -n 1)"
	echo "- commit: $(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo '?')"
	echo "- machine: $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -sr); $(tar --version | head -n 1); running as uid $(id -u)"
	echo "- runs: $RUNS per tool and filesystem (median shown), alternating; registry: docker-registry on loopback; platform $PLAT"
	echo "- load average (1, 5, 15 min) at start: $LOAD_START; at end: $(cut -d' ' -f1-3 /proc/loadavg) — anything above ~0.5 means other work shared the CPUs, so compare ratios within this run only"
	echo "- base ${B50K#*/}: $ENTRIES tar entries, $(mb "$BYTES") MB of file content, ${#BLOBS[@]} layer blobs of $(mb "$BLOB_BYTES") MB (gzip) in kiln's cache; both tools read them from there (page cache, not dropped)"
	echo
	echo "Ratio = kiln / tar: at most 1.5 is the target. kiln's time is its log line \"unpacked the stage's filesystem\" (rootfs.Unpack: read, decompress and check both digests of every layer, write the tree); tar's is \`tar -xzf\` of each blob in order. Neither syncs: the disk rows leave dirty pages to the kernel, as a build's scratch folder may."
	echo
	echo "| filesystem | kiln unpack s | tar -xzf s | kiln / tar | kiln build (FROM + RUN) s | kiln unpack runs | tar runs |"
	echo "| --- | ---: | ---: | ---: | ---: | --- | --- |"
	local variant vlabel
	for fs in tmpfs disk; do
		if [ -n "${SKIP[$fs]:-}" ]; then
			echo "| $fs | skipped: ${SKIP[$fs]} | | | | | |"
			continue
		fi
		t=$(median ${T[$fs]:-})
		for k in $fs cold-$fs tars-$fs ${BASELINE:+baseline-$fs}; do
			local u label=""
			[ -z "$BASELINE" ] || label=", this kiln"
			case $k in
			baseline-*) label=", baseline kiln" ;;
			cold-*) label=", layer store cold (unpack into the store + mount)" ;;
			tars-*) label=", from the layer store's tars (the pod path)" ;;
			esac
			u=$(median ${UNPACK[$k]:-})
			echo "| ${FSNOTE[$fs]}$label | ${u:-failed} | ${t:-failed} | $(ratio "$u" "$t") | $(median ${BUILD[$k]:-}) | $(fmt_runs "${UNPACK[$k]:-}")| $(fmt_runs "${T[$fs]:-}")|"
		done
	done
	if [ -n "$BASELINE" ]; then
		echo
		echo "Baseline kiln: $BASELINE ($("$BASELINE" version 2>/dev/null | head -n 1)), measured in the same runs, its order rotating with the others."
	fi
	echo
	if [ -n "${SKIP[strace]:-}" ]; then
		echo "strace -c: skipped: ${SKIP[strace]}"
	else
		echo "## Syscalls (strace -c -f, one run on $STRACE_FS)"
		echo
		echo "| | calls | file calls | file calls per tar entry | most frequent |"
		echo "| --- | ---: | ---: | ---: | --- |"
		local f
		for k in kiln tar; do
			t=$(strace_calls "$WORK/logs/strace-$k.txt")
			f=$(strace_file "$WORK/logs/strace-$k.txt")
			case $k in
			kiln) echo -n "| kiln build (FROM + RUN, work folder removed at the end)" ;;
			tar) echo -n "| tar -xzf (and its gzip)" ;;
			esac
			echo " | $t | $f | $(ratio "$f" "$ENTRIES") | $(strace_top "$WORK/logs/strace-$k.txt") |"
		done
		echo
		echo "File calls: those that create files and give them metadata (openat, openat2, close, write, the stat and chown/chmod families, utimensat, mkdirat, symlinkat, linkat...), which an unpack makes per entry; kiln's include what its RUN and layer writing make. Left out: the runtime's (futex, nanosleep: strace slows goroutines most) and kiln's work folder removed at the end (unlinkat, getdents64). The full tables are in bench/.work/unpack/logs/strace-*.txt."
	fi
	for s in "${!FAIL[@]}"; do
		echo
		echo "failures $s: ${FAIL[$s]} of $RUNS runs (logs in bench/.work/unpack/logs/)"
	done
}

report | tee "$RESULTS/unpack.md.tmp"
mv "$RESULTS/unpack.md.tmp" "$RESULTS/unpack.md"
log "written to bench/results/unpack.md; logs in bench/.work/unpack/logs/"
for s in "${!FAIL[@]}"; do
	case $s in kiln-*) die "kiln failed on ${s#kiln-} (see bench/.work/unpack/logs/)" ;; esac
done
