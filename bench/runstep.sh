#!/usr/bin/env bash
# kiln's RUN benchmarks: one run, side by side with kaniko and buildah,
# against a local registry process seeded with deterministic base images
# (bench/runseed).
#
#   a. a RUN that rewrites 10 files of a 50,000-file rootfs (busybox + 50k
#      small files). Against kaniko and buildah (a1, one RUN): kiln with its
#      layer store (--layer-store, the default; --snapshot auto) cold (a
#      fresh --cache-dir every run: the base is pulled from the registry and
#      unpacked into the store during the build) and warm (the --cache-dir
#      filled once, untimed, by `kiln warm --unpack`, and reused); kaniko's
#      executor, jailed (bench/kaniko.sh), in its default full snapshot mode
#      and with --snapshot-mode=redo --use-new-run; buildah build (vfs,
#      chroot isolation, --layers=false) alone and followed by buildah push
#      to an OCI layout. For reference, today's unpack: kiln with
#      --layer-store=false, --snapshot overlay and --snapshot walk (base
#      blobs from the same warm cache), on the same base with no RUN (a0),
#      one RUN (a1) and two RUNs (a2): one RUN step = a2 - a1 (run +
#      snapshot + layer), the first RUN = a1 - a0 (adds unpacking the base
#      into a stage folder).
#   b. a Debian bookworm minbase base (debootstrap, built once and kept in
#      bench/.work/runstep-cache/) and five realistic RUN steps (motd,
#      useradd, cp -a /usr/share/doc, rm -rf, dpkg -l; no network in RUN):
#      the same rows as a1 (kiln cold and warm store, kiln --layer-store=false
#      overlay and walk, kaniko full and redo, buildah build (+ push oci:))
#   r. rootless, a1 and b: kiln as uid 65534 (nobody) with a subordinate id
#      range of the bench's own (65534:300000:65536 in /etc/subuid and
#      /etc/subgid, bound over the host's in a private mount namespace; the
#      build then runs in a user namespace of kiln's own with the layer
#      store), cold (a fresh cache) and warm (its own cache, filled by its
#      own `kiln warm --unpack`); and without the range (one id: stages
#      unpacked from the store's uncompressed tars, filled the same way)
#   c. peak RSS (/usr/bin/time -v) of every command of a and b
#   d. a COPY-only build on the 50,000-file rootfs (WORKDIR + COPY of one
#      file): kiln (--layer-store=false) reads the base's layer headers
#      instead of unpacking it; vs buildah build (+ push oci:)
#
# Median of BENCH_RUNS. The detail tables give ratios row / kiln (unpack);
# the layer-store summary gives kiln / peer (targets: cold / kaniko redo <=
# 0.5, warm / kaniko redo <= 0.1). Every buildah run starts from an empty
# storage folder (vfs: the base image is pulled and its layers copied on
# every run, which is buildah's cost on a fresh CI machine); every kaniko run
# from a fresh jail (it pulls and unpacks the base every time, like a CI
# pod). Every command writes an OCI layout (kaniko: --oci-layout-path).
#
# kaniko is not built here: its executor is taken from KANIKO_EXECUTOR
# (default bench/.bin/kaniko-executor); without it its rows say "skipped".
#
# Usage: bash bench/runstep.sh         (or: make bench)
#   BENCH_RUNS=5        runs per measurement (median reported)
#   KILN=bin/kiln       the kiln binary to measure
#   KANIKO_EXECUTOR=... kaniko's executor (default bench/.bin/kaniko-executor)
#   BENCH_FS=tmpfs      where every tool writes: tmpfs (default: a tmpfs of
#                       BENCH_TMPFS_SIZE, 12G, mounted on bench/.work/runstep for the
#                       run, as issue 12 measured) or disk (the folder itself)
#   BENCH_SETTLE=65     on disk, seconds to wait (after a sync) after each job:
#                       ext4 without a journal will not reuse an inode freed in
#                       the last 60 s (6 min while its inode table block is
#                       dirty) and scans past each one when it allocates (ext4's
#                       recently_deleted), so a build right after a 50,000-file
#                       tree was removed pays for it (the runs drifted from 2.4 s
#                       to 16 s here); 0 on tmpfs
#   KANIKO_JAIL_FS=disk kaniko's root: disk (a folder under bench/.work/runstep,
#                       where kiln and buildah write; default here) or tmpfs
#   BENCH_SKIP="..."    leave out some of: kaniko buildah cold minbase rootless
#
# Writes only under bench/.work/runstep/ (scratch, wiped at start; TMPDIR of
# every measured command points there too, and kaniko's jail roots are made
# there; a tmpfs mounted for the run with BENCH_FS=tmpfs, its logs copied to
# bench/.work/runstep-logs/ at the end), bench/.work/runstep-cache/ (the
# debootstrap tree as a tar, kept across runs: rm -rf it to rebuild) and
# bench/results/runstep.md. Servers
# listen on 127.0.0.1 only; only processes started here are stopped, by PID.
# The page cache is not dropped.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench
WORK=$BENCH/.work/runstep
KEEP=$BENCH/.work/runstep-cache
RESULTS=$BENCH/results
RUNS=${BENCH_RUNS:-5}
KILN=${KILN:-$ROOT/bin/kiln}
case $KILN in /*) ;; *) KILN=$PWD/$KILN ;; esac
SUITE=bookworm
MIRROR=http://deb.debian.org/debian
export KANIKO_JAIL_FS=${KANIKO_JAIL_FS:-disk}
export KANIKO_KEEP_ROOTS=1 # removing the jail's root is not kaniko's time: kaniko_clean after each build

. "$BENCH/lib.sh"    # log, die, cleanup of PIDS, apt_install, median, ratio, wipe...
. "$BENCH/kaniko.sh" # kaniko_run, kaniko_check, kaniko_clean, kaniko_host_state

preflight

# ---------------------------------------------------------------- tools
declare -A SKIP=() # tool -> why it is not measured

install_tools() {
	local need=() s why
	for s in ${BENCH_SKIP:-}; do
		case $s in
		kaniko | buildah | cold | minbase | rootless) SKIP[$s]="BENCH_SKIP" ;;
		nocache) SKIP[cold]="BENCH_SKIP" ;; # its name before the layer store
		*) die "BENCH_SKIP: unknown '$s' (kaniko buildah cold minbase rootless)" ;;
		esac
	done
	command -v docker-registry >/dev/null 2>&1 || [ -x /usr/bin/docker-registry ] || need+=(docker-registry)
	[ -n "${SKIP[buildah]:-}" ] || command -v buildah >/dev/null 2>&1 || need+=(buildah)
	[ -n "${SKIP[minbase]:-}" ] || [ -f "$KEEP/minbase.tar" ] || [ -x /usr/sbin/debootstrap ] || need+=(debootstrap)
	[ -x /usr/bin/time ] || need+=(time)
	[ -x /bin/busybox ] || need+=(busybox-static)
	[ -n "${SKIP[rootless]:-}" ] || command -v newuidmap >/dev/null 2>&1 || need+=(uidmap)
	command -v jq >/dev/null 2>&1 || need+=(jq)
	if [ ${#need[@]} -gt 0 ]; then
		apt_install "${need[@]}" || log "could not apt-get install ${need[*]} (need root or sudo)"
	fi
	command -v docker-registry >/dev/null 2>&1 || [ -x /usr/bin/docker-registry ] ||
		die "docker-registry is required (apt-get install docker-registry)"
	[ -x /usr/bin/time ] || die "/usr/bin/time is required (apt-get install time): it gives CPU time and peak RSS"
	[ -x /bin/busybox ] || die "/bin/busybox is required (apt-get install busybox-static): the 50k image's shell"
	if [ -z "${SKIP[kaniko]:-}" ]; then
		why=$(kaniko_check) || SKIP[kaniko]=$why
	fi
	command -v jq >/dev/null 2>&1 || die "jq is required (the output layouts are summarised with it)"
	[ -n "${SKIP[buildah]:-}" ] || command -v buildah >/dev/null 2>&1 ||
		SKIP[buildah]="buildah not installed (apt-get install buildah failed)"
	if [ -z "${SKIP[rootless]:-}" ]; then
		local t
		for t in newuidmap newgidmap setpriv unshare; do
			command -v "$t" >/dev/null 2>&1 || SKIP[rootless]="$t not installed (uidmap, util-linux)"
		done
		[ "$(id -u)" = 0 ] || SKIP[rootless]="running kiln as another user needs root"
		[ -f /etc/subuid ] && [ -f /etc/subgid ] || SKIP[rootless]="no /etc/subuid or /etc/subgid to bind the bench's range over"
	fi
	[ -n "${SKIP[minbase]:-}" ] || [ -f "$KEEP/minbase.tar" ] || [ -x /usr/sbin/debootstrap ] ||
		SKIP[minbase]="debootstrap not installed (apt-get install debootstrap failed)"

	log "building bench/runseed"
	(cd "$ROOT" && go build -o "$WORK/tools/runseed" ./bench/runseed)

	cat >"$WORK/policy.json" <<-'EOF'
		{"default": [{"type": "insecureAcceptAnything"}]}
	EOF
}


# ---------------------------------------------------------------- helpers

sub() { if [ -z "$1" ] || [ -z "$2" ]; then echo "-"; else awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; fi; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

declare -A T=()    # measurement -> " s1 s2 ..." (seconds)
declare -A TS=()   # the same, including a sync after it
declare -A FAIL=() # measurement -> failures
declare -A RSS=()  # measurement -> " kb1 kb2 ..."
declare -A CPU=()  # measurement -> " s1 s2 ..." (user + system)
declare -A NOTE=() # measurement -> what it produced (last run)
LAST="" LASTS="" LASTC="" LASTK=""
CMD=()

# measure NAME LOG CMD...: run CMD in $WORK under /usr/bin/time -v (after an
# untimed sync); add its wall time, wall time incl. a sync after it, CPU
# (user + system, children included) and peak RSS to the tables.
measure() {
	local name=$1 logf=$2
	shift 2
	run_in_work "$name" "$logf" /usr/bin/time -v -o "$logf.time" "$@" || return 1
	LASTK=$(peak_rss "$logf")
	LASTC=$(cpu_of "$logf")
	CPU[$name]+=" $LASTC"
	RSS[$name]+=" $LASTK"
	log "$name: ${LAST}s, CPU ${LASTC}s, peak RSS $((LASTK / 1024)) MiB"
}

layout() {
	local m
	m=$(jq -r '.manifests[0].digest' "$1/index.json" 2>/dev/null) || { echo "?"; return; }
	jq -r '"\(.layers | length) layers, \((.layers | map(.size) | add) / 1e6 * 10 | floor / 10) MB"' \
		"$1/blobs/${m%%:*}/${m#*:}" 2>/dev/null || echo "?"
}

kiln_build() { # DOCKERFILE OUT CACHE SNAPSHOT FLAG...: sets CMD
	CMD=("$KILN" build --context "$CTX" --dockerfile "$1" --output "oci:$2" --no-push --cache-dir "$3"
		--snapshot "$4" --progress plain "${@:5}")
}

# as_user RANGE ARG...: sets CMD: kiln ARG... run as uid 65534 from the
# copy of kiln in $RL, with HOME and TMPDIR there; with RANGE "range",
# its subordinate ids bound over /etc/subuid and /etc/subgid in a private
# mount namespace first (every program on the way execs the next).
as_user() {
	local range=$1
	shift
	local run=(setpriv --reuid=65534 --regid=65534 --clear-groups env HOME="$RL" TMPDIR="$RL/tmp" "$RL/kiln" "$@")
	if [ "$range" = range ]; then
		# shellcheck disable=SC2016 # expanded by the inner sh
		run=(unshare --mount --propagation private -- sh -c 'mount --bind "$1" /etc/subuid && mount --bind "$1" /etc/subgid && shift && exec "$@"' sh "$RL/subid" "${run[@]}")
	fi
	CMD=("${run[@]}")
}

# rl_build DOCKERFILE OUT CACHE: sets CMD: a rootless kiln build (see as_user; the range is RL_RANGE).
rl_build() {
	as_user "$RL_RANGE" build --context "$CTX" --dockerfile "$1" --output "oci:$2" --no-push --cache-dir "$3" \
		--work-dir "$RL/work" --progress plain
}

# kaniko_build DOCKERFILE OUT MODE: sets CMD: kaniko_run (bench/kaniko.sh)
# of the context with DOCKERFILE, in a fresh jail, writing an OCI layout to
# OUT (bound at /kaniko/out). MODE is kaniko_run_step's: full (kaniko's
# default, --snapshot-mode=full) or redo (--snapshot-mode=redo
# --use-new-run). A bash of its own sources lib.sh and kaniko.sh, so that
# /usr/bin/time sees the executor and its RUN steps as its children.
kaniko_build() {
	local mode=()
	case $3 in
	full) mode=(--snapshot-mode=full) ;;
	redo) mode=(--snapshot-mode=redo --use-new-run) ;;
	esac
	mkdir -p "$2"
	# shellcheck disable=SC2016 # expanded by the inner bash
	CMD=(env BENCH="$BENCH" WORK="$WORK" KANIKO_EXECUTOR="$KANIKO_EXECUTOR" KANIKO_JAILS="$KANIKO_JAILS"
		KANIKO_OUT="$2" bash -c '. "$BENCH/lib.sh"; . "$BENCH/kaniko.sh"; kaniko_run "$@"' kaniko
		"$CTX" --dockerfile "/workspace/$1" --insecure-registry "$REG" --no-push
		--oci-layout-path /kaniko/out "${mode[@]}")
}

# kaniko_jail_intact: what kaniko's RUN steps would have changed on this
# host, had they escaped the jail, is as it was before the first kaniko run.
kaniko_jail_intact() {
	host_state >"$WORK/host-state.after"
	if ! diff -u "$WORK/host-state.before" "$WORK/host-state.after" >&2; then
		die "the host changed while kaniko ran: the jail leaked (see the diff above)"
	fi
	! grep -q "$KANIKO_JAILS" /proc/self/mountinfo || die "a kaniko jail mount shows on the host"
}

# host_state: kaniko_host_state with what the Dockerfiles create or change.
host_state() {
	kaniko_host_state /usr/lib/bench /home/app /srv/doc /srv/packages.txt
	sha256sum /etc/motd 2>/dev/null || echo "absent /etc/motd"
}

buildah_build() { # STORAGE DOCKERFILE TAG: sets CMD
	CMD=(buildah --root "$1/root" --runroot "$1/runroot" --storage-driver vfs
		build --isolation chroot --layers=false --tls-verify=false
		--signature-policy "$WORK/policy.json" -f "$CTX/$2" -t "$3" "$CTX")
}

buildah_push() { # STORAGE TAG OUT: sets CMD
	CMD=(buildah --root "$1/root" --runroot "$1/runroot" --storage-driver vfs
		push --signature-policy "$WORK/policy.json" "$2" "oci:$3")
}

# ---------------------------------------------------------------- start
BENCH_FS=${BENCH_FS:-tmpfs}
case $BENCH_FS in
tmpfs) SETTLE=${BENCH_SETTLE:-0} ;;
disk) SETTLE=${BENCH_SETTLE:-65} ;;
*) die "BENCH_FS must be tmpfs or disk, got '$BENCH_FS'" ;;
esac
case $SETTLE in '' | *[!0-9]*) die "BENCH_SETTLE must be whole seconds, got '$SETTLE'" ;; esac
if mountpoint -q "$WORK"; then
	umount "$WORK" || die "$WORK is mounted (a killed run's tmpfs?) and cannot be unmounted"
fi
wipe "$WORK"
mkdir -p "$WORK"
if [ "$BENCH_FS" = tmpfs ]; then
	[ "$(id -u)" = 0 ] || die "BENCH_FS=tmpfs mounts a tmpfs: run as root, or BENCH_FS=disk"
	mount -t tmpfs -o "size=${BENCH_TMPFS_SIZE:-12G},mode=0755" kiln-bench "$WORK"
	# The logs outlive the tmpfs (bench/.work/runstep-logs).
	bench_unmount() {
		rm -rf "$BENCH/.work/runstep-logs"
		cp -a "$WORK/logs" "$BENCH/.work/runstep-logs" 2>/dev/null || true
		cd / && { umount "$WORK" 2>/dev/null || umount -l "$WORK"; }
	}
	AT_EXIT+=(bench_unmount)
fi
mkdir -p "$WORK/logs" "$WORK/out" "$WORK/tmp" "$RESULTS"
install_tools
minbase_tar "$KEEP" "$SUITE" "$MIRROR"
export TMPDIR=$WORK/tmp
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

mkfifo "$WORK/hold"
exec 3<>"$WORK/hold"
MB_FLAG=()
[ -n "${SKIP[minbase]:-}" ] || MB_FLAG=(-minbase "$KEEP/minbase.tar")
log "seeding the registry (50k-file image${MB_FLAG:+, minbase image})"
"$WORK/tools/runseed" -dir "$WORK/registry" -context "$WORK/context" -ready "$WORK/runseed.json" \
	-lists "$WORK/lists" -log "$WORK/logs/registry.log" "${MB_FLAG[@]}" \
	<"$WORK/hold" >"$WORK/logs/runseed.out" 2>"$WORK/logs/runseed.err" 3>&- &
SEED_PID=$!
PIDS+=("$SEED_PID")
wait_ready runseed "$SEED_PID"
REG=$(cat "$WORK/lists/registry")
PLAT=$(cat "$WORK/lists/platform")
B50K=$(cat "$WORK/lists/base50k.ref")
B50K_FILES=$(cat "$WORK/lists/base50k.files")
B50K_BYTES=$(cat "$WORK/lists/base50k.bytes")
B50K_ENTRIES=$(cat "$WORK/lists/base50k.entries")
MINBASE=$(cat "$WORK/lists/minbase.ref")
MINBASE_BYTES=$(cat "$WORK/lists/minbase.bytes")
MINBASE_ENTRIES=$(cat "$WORK/lists/minbase.entries")
CHANGED=$(cat "$WORK/lists/changed")
CTX=$(cat "$WORK/lists/context")

# d: COPY-only onto the 50k base.
printf 'FROM %s\nWORKDIR /srv/app\nCOPY Dockerfile.a0 ./\n' "$B50K" >"$CTX/Dockerfile.d"

# One warm cache for every kiln row but the cold one: its blobs serve the
# --layer-store=false rows, its layer store (.kiln/unpacked, filled here by
# --unpack; those rows do not read it) the warm-store row.
CACHE=$WORK/cache
log "kiln warm --unpack of the base images into $CACHE"
WARM=(--image "$B50K")
[ -z "$MINBASE" ] || WARM+=(--image "$MINBASE")
"$KILN" warm "${WARM[@]}" --unpack --platform "$PLAT" --cache-dir "$CACHE" --progress plain \
	>"$WORK/logs/warm.log" 2>&1 || { tail -n 5 "$WORK/logs/warm.log" >&2; die "kiln warm failed"; }
STORED=$(find "$CACHE/.kiln/unpacked" -mindepth 1 -maxdepth 1 -regextype posix-extended -regex '.*/[0-9a-f]{64}' 2>/dev/null | wc -l)
[ "$STORED" -gt 0 ] || log "kiln warm --unpack left nothing in $CACHE/.kiln/unpacked: the warm row will fill it in its first run"

# r: the rootless user's folders (under $WORK, which it may traverse), its
# range and its warm caches: with the range (a layer store of its user
# namespace) and without (uncompressed tars), each filled by its own kiln
# warm --unpack.
RL=$WORK/rootless
if [ -z "${SKIP[rootless]:-}" ]; then
	chmod 755 "$WORK"
	mkdir -p "$RL"/{tmp,work,out}
	chmod 777 "$RL" "$RL"/{tmp,work,out}
	chmod -R a+rX "$CTX"
	cp "$KILN" "$RL/kiln" && chmod 755 "$RL/kiln"
	echo "65534:300000:65536" >"$RL/subid"
	for r in range one; do
		mkdir -p "$RL/cache-$r" && chmod 777 "$RL/cache-$r"
		as_user "$r" warm "${WARM[@]}" --unpack --platform "$PLAT" --cache-dir "$RL/cache-$r" --progress plain
		"${CMD[@]}" >"$WORK/logs/warm-rootless-$r.log" 2>&1 || {
			tail -n 5 "$WORK/logs/warm-rootless-$r.log" >&2
			SKIP[rootless]="rootless kiln warm --unpack failed (see logs/warm-rootless-$r.log)"
		}
	done
fi

[ -n "${SKIP[kaniko]:-}" ] || host_state >"$WORK/host-state.before"

# ---------------------------------------------------------------- runs
# One job per (measurement, tool); the order rotates from run to run.
#   kiln:M:SNAP     --layer-store=false (today's unpack), base from the warm cache
#   cold:M          layer store, a fresh --cache-dir (base pulled, store filled)
#   warm:M          layer store, the warm cache (bases already in the store)
#   rlcold:M        rootless with the range, a fresh --cache-dir
#   rlwarm:M        rootless with the range, its warm cache
#   rlone:M         rootless without a range (one id), its warm cache (tars)
#   kaniko:M:MODE   kaniko full or redo, jailed
#   buildah:M       buildah build, then buildah push oci:
JOBS_A=(kiln:a0:overlay kiln:a1:overlay kiln:a2:overlay kiln:a1:walk kiln:a2:walk cold:a1 warm:a1
	rlcold:a1 rlwarm:a1 rlone:a1 kaniko:a1:full kaniko:a1:redo buildah:a1 buildah:a2)
JOBS_B=(kiln:b:overlay kiln:b:walk cold:b warm:b rlcold:b rlwarm:b rlone:b kaniko:b:full kaniko:b:redo buildah:b)
JOBS_D=(kiln:d:walk buildah:d)

job() { # JOB RUN
	local spec=$1 n=$2 tool m snap key out s=$WORK/buildah-storage b bs bc bk
	IFS=: read -r tool m snap <<<"$spec"
	out=$WORK/out/$m-$tool-${snap:-x}
	wipe "$out"
	case $tool in
	kiln)
		key=$m-kiln_$snap
		kiln_build "Dockerfile.$m" "$out" "$CACHE" "$snap" --layer-store=false
		measure "$key" "$WORK/logs/$key-$n.log" "${CMD[@]}" && NOTE[$key]=$(layout "$out") || true
		;;
	cold)
		[ -z "${SKIP[cold]:-}" ] || return 0
		key=$m-kiln_cold
		wipe "$WORK/cold"
		kiln_build "Dockerfile.$m" "$out" "$WORK/cold" auto --layer-store=true
		measure "$key" "$WORK/logs/$key-$n.log" "${CMD[@]}" && NOTE[$key]=$(layout "$out") || true
		wipe "$WORK/cold"
		;;
	warm)
		key=$m-kiln_warm
		kiln_build "Dockerfile.$m" "$out" "$CACHE" auto --layer-store=true
		measure "$key" "$WORK/logs/$key-$n.log" "${CMD[@]}" && NOTE[$key]=$(layout "$out") || true
		;;
	rlcold | rlwarm | rlone)
		[ -z "${SKIP[rootless]:-}" ] || return 0
		key=$m-kiln_$tool
		out=$RL/out/$m-$tool
		local c=$RL/cache-range
		RL_RANGE=range
		case $tool in
		rlcold) c=$RL/cold && mkdir -p "$c" && chmod 777 "$c" ;;
		rlone) c=$RL/cache-one RL_RANGE=one ;;
		esac
		rl_build "Dockerfile.$m" "$out" "$c"
		measure "$key" "$WORK/logs/$key-$n.log" "${CMD[@]}" && NOTE[$key]=$(layout "$out") || true
		wipe "$out"
		[ "$tool" != rlcold ] || wipe "$RL/cold"
		;;
	kaniko)
		[ -z "${SKIP[kaniko]:-}" ] || return 0
		key=$m-kaniko_$snap
		kaniko_build "Dockerfile.$m" "$out" "$snap"
		measure "$key" "$WORK/logs/$key-$n.log" "${CMD[@]}" && NOTE[$key]=$(layout "$out") || true
		kaniko_clean
		kaniko_jail_intact
		;;
	buildah)
		[ -z "${SKIP[buildah]:-}" ] || return 0
		wipe "$s"
		buildah_build "$s" "Dockerfile.$m" "localhost/bench-run-$m"
		if measure "$m-buildah_build" "$WORK/logs/$m-buildah-build-$n.log" "${CMD[@]}"; then
			b=$LAST bs=$LASTS bc=$LASTC bk=$LASTK
			NOTE[$m-buildah_build]="vfs storage after the build: $(mb "$(disk "$s")") MB"
			buildah_push "$s" "localhost/bench-run-$m" "$out"
			if measure "$m-buildah_push" "$WORK/logs/$m-buildah-push-$n.log" "${CMD[@]}"; then
				T[$m-buildah_total]+=" $(add "$b" "$LAST")"
				TS[$m-buildah_total]+=" $(add "$bs" "$LASTS")"
				CPU[$m-buildah_total]+=" $(add "$bc" "$LASTC")"
				RSS[$m-buildah_total]+=" $((bk > LASTK ? bk : LASTK))"
				NOTE[$m-buildah_total]=$(layout "$out")
				NOTE[$m-buildah_push]=${NOTE[$m-buildah_total]}
			else
				FAIL[$m-buildah_total]=$((${FAIL[$m-buildah_total]:-0} + 1))
			fi
		fi
		wipe "$s"
		;;
	esac
	wipe "$out"
	[ "$SETTLE" -eq 0 ] || { sync; sleep "$SETTLE"; }
}

rotate() { # RUN JOB...: every job, starting at a different one each run
	local n=$1 k i
	shift
	local jobs=("$@")
	k=${#jobs[@]}
	for i in $(seq 0 $((k - 1))); do
		job "${jobs[$(((i + n - 1) % k))]}" "$n"
	done
}

for n in $(seq 1 "$RUNS"); do
	log "a. RUN on the ${B50K_FILES}-file rootfs, run $n/$RUNS"
	rotate "$n" "${JOBS_A[@]}"
done
if [ -n "$MINBASE" ]; then
	for n in $(seq 1 "$RUNS"); do
		log "b. five RUN steps on Debian minbase, run $n/$RUNS"
		rotate "$n" "${JOBS_B[@]}"
	done
fi
for n in $(seq 1 "$RUNS"); do
	log "d. COPY-only onto the ${B50K_FILES}-file rootfs, run $n/$RUNS"
	rotate "$n" "${JOBS_D[@]}"
done

# What kiln chose with --snapshot auto, and why (the layer-store rows run with auto).
AUTO=$(grep -h -m1 'msg="RUN steps"' "$WORK"/logs/a1-kiln_warm-*.log "$WORK"/logs/a1-kiln_cold-*.log 2>/dev/null |
	head -n 1 | sed -e 's/^.*msg="RUN steps" //') || true

# ---------------------------------------------------------------- report

declare -A LABEL=(
	[kiln_overlay]="kiln build --layer-store=false --snapshot overlay (warm cache: unpack)"
	[kiln_walk]="kiln build --layer-store=false --snapshot walk (warm cache: unpack)"
	[kiln_cold]="kiln build, layer store cold (fresh --cache-dir, base pulled)"
	[kiln_warm]="kiln build, layer store warm (after kiln warm --unpack)"
	[kiln_rlcold]="kiln build rootless (a subordinate id range), layer store cold"
	[kiln_rlwarm]="kiln build rootless (a subordinate id range), layer store warm"
	[kiln_rlone]="kiln build rootless, one id (stages unpacked from stored tars)"
	[kaniko_full]="kaniko, default snapshots (--snapshot-mode=full), jailed"
	[kaniko_redo]="kaniko --snapshot-mode=redo --use-new-run, jailed"
	[buildah_build]="buildah build (vfs, chroot, --layers=false)"
	[buildah_push]="buildah push oci: (a process of its own)"
	[buildah_total]="buildah build + buildah push oci:"
)

skip_of() {
	case $1 in
	*kiln_cold) echo "${SKIP[cold]:-}" ;;
	*kiln_rl*) echo "${SKIP[rootless]:-}" ;;
	*kaniko*) echo "${SKIP[kaniko]:-}" ;;
	*buildah*) echo "${SKIP[buildah]:-}" ;;
	esac
}

# table OVERLAY WALK KEY...: one row per measurement key (M-ROW); ratios to
# the keys OVERLAY and WALK.
table() {
	local ko=$1 kw=$2 key row v vs vc vk o w oc wc why
	shift 2
	o=$(median ${T[$ko]:-})
	w=$(median ${T[$kw]:-})
	oc=$(median ${CPU[$ko]:-})
	wc=$(median ${CPU[$kw]:-})
	echo "| measurement | median s | ratio to kiln overlay | ratio to kiln walk | median s incl. sync | median CPU s | CPU ratio to overlay | to walk | median peak RSS MiB | output (last run) | runs (s) |"
	echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"
	for key in "$@"; do
		row=${key#*-}
		why=$(skip_of "$key")
		if [ -n "$why" ]; then
			echo "| ${key%%-*}: ${LABEL[$row]} | skipped: $why | | | | | | | | | |"
			continue
		fi
		v=$(median ${T[$key]:-})
		if [ -z "$v" ]; then
			echo "| ${key%%-*}: ${LABEL[$row]} | failed (${FAIL[$key]:-0}/$RUNS runs) | | | | | | | | | |"
			continue
		fi
		vs=$(median ${TS[$key]:-})
		vc=$(median ${CPU[$key]:-})
		vk=$(median ${RSS[$key]:-})
		echo "| ${key%%-*}: ${LABEL[$row]} | $v | $(ratio "$v" "$o") | $(ratio "$v" "$w") | $vs | $vc | $(ratio "$vc" "$oc") | $(ratio "$vc" "$wc") | $(mib "$vk") | ${NOTE[$key]:--} | $(fmt_runs "${T[$key]:-}")|"
	done
}

# verdict RATIO TARGET: whether RATIO is at most TARGET.
verdict() {
	case $1 in '' | -) echo "-" ;; *) awk -v r="$1" -v t="$2" 'BEGIN { print (r <= t ? "met" : "missed") }' ;; esac
}

# store_log M ROW FIELD: the median of FIELD over the layer-store mount lines
# of the logs of M-ROW ("-" if none: the stage was unpacked, not mounted).
store_log() {
	local v
	v=$(median $(grep -ho "msg=\"mounted the stage's filesystem from the layer store\".*" "$WORK"/logs/"$1-$2"-*.log 2>/dev/null |
		grep -o " $3=[0-9.]*" | cut -d= -f2))
	if [ -z "$v" ]; then echo "-"; else awk -v v="$v" -v f="$3" 'BEGIN { printf (f == "seconds" ? "%.3f" : "%d"), v }'; fi
}

# summary: the layer-store rows against kaniko and buildah, a1 and b side by side.
summary() {
	local m k v c why row cells target r1 r2
	echo "## Layer store vs kaniko and buildah (a1 and b)"
	echo
	echo "Seconds (median of $RUNS; CPU = user + system of the command and its children). a1: one RUN rewriting $CHANGED files of the ${B50K_FILES}-file base; b: five RUN steps on Debian minbase (both below)."
	echo
	echo "| row | a1 s | a1 CPU s | b s | b CPU s |"
	echo "| --- | ---: | ---: | ---: | ---: |"
	for k in kiln_cold kiln_warm kiln_rlcold kiln_rlwarm kiln_rlone kiln_overlay kiln_walk kaniko_full kaniko_redo buildah_total buildah_build; do
		cells=""
		for m in a1 b; do
			why=$(skip_of "$m-$k")
			v=$(median ${T[$m-$k]:-}) c=$(median ${CPU[$m-$k]:-})
			[ "$m" = a1 ] || [ -n "$MINBASE" ] || why="no minbase image"
			if [ -n "$why" ]; then
				cells+=" skipped | |"
			elif [ -z "$v" ]; then
				cells+=" ${FAIL[$m-$k]:+failed} | |"
			else
				cells+=" $v | $c |"
			fi
		done
		echo "| ${LABEL[$k]} |$cells"
	done
	echo
	echo "Ratios kiln / peer (below 1: kiln is faster), of the medians above:"
	echo
	echo "| ratio | a1 | b | target | a1 | b |"
	echo "| --- | ---: | ---: | ---: | --- | --- |"
	for row in "kiln_cold kaniko_redo 0.5" "kiln_warm kaniko_redo 0.1" "kiln_cold kaniko_full" "kiln_warm kaniko_full" \
		"kiln_cold buildah_total" "kiln_warm buildah_total" "kiln_cold buildah_build" "kiln_warm buildah_build" \
		"kiln_overlay kaniko_redo" "kiln_warm kiln_overlay" "kiln_cold kiln_overlay" \
		"kiln_rlcold kaniko_redo 0.5" "kiln_rlwarm kaniko_redo 0.1" "kiln_rlwarm kiln_rlone" "kiln_rlwarm kiln_warm"; do
		read -r k v target <<<"$row"
		r1=$(ratio "$(median ${T[a1-$k]:-})" "$(median ${T[a1-$v]:-})")
		r2=$(ratio "$(median ${T[b-$k]:-})" "$(median ${T[b-$v]:-})")
		if [ -n "$target" ]; then
			echo "| ${k//_/ } / ${v//_/ } | $r1 | $r2 | ≤ $target | $(verdict "$r1" "$target") | $(verdict "$r2" "$target") |"
		else
			echo "| ${k//_/ } / ${v//_/ } | $r1 | $r2 | | | |"
		fi
	done
	echo
	echo "kiln cold: a fresh --cache-dir every run, so the base is pulled from the registry and unpacked into the layer store during the build; kiln warm: the cache filled by \`kiln warm --unpack\` once (untimed) and reused by every run; kiln overlay / walk: --layer-store=false, the stage unpacked from the warm cache's blobs (today's path, for reference). kaniko pulls and unpacks the base in a fresh jail on every run; buildah pulls it into fresh vfs storage (buildah total = build + push oci:)."
	echo
	echo "How kiln made the stage's filesystem (its log line \"mounted the stage's filesystem from the layer store\", median over runs; \"-\": not mounted, the stage was unpacked):"
	echo
	echo "| kiln | a1: mount s | a1: layers unpacked into the store by the build | b: mount s | b: layers unpacked by the build |"
	echo "| --- | ---: | ---: | ---: | ---: |"
	for k in kiln_cold kiln_warm kiln_rlcold kiln_rlwarm; do
		echo "| ${LABEL[$k]} | $(store_log a1 "$k" seconds) | $(store_log a1 "$k" unpacked_now) | $(store_log b "$k" seconds) | $(store_log b "$k" unpacked_now) |"
	done
}

report() {
	local s st m k a0 a1 a2 c0 c1 c2
	echo "# kiln RUN benchmarks"
	echo
	echo "- when: $(date -u +%Y-%m-%dT%H:%M:%SZ); kiln $("$KILN" version 2>/dev/null | head -n 1)"
	echo "- commit: $(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo '?')"
	echo "- machine: $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -sr); work folder on $(df -T "$WORK" | awk 'NR == 2 { print $2 }') (BENCH_FS=$BENCH_FS, ${SETTLE} s settle after each job)"
	echo "- overlay: $(grep -qw overlay /proc/filesystems && echo 'in /proc/filesystems' || echo 'not in /proc/filesystems'); kiln with --snapshot auto: ${AUTO:-not measured}"
	echo "- peers: kaniko $("$KANIKO_EXECUTOR" version 2>/dev/null | awk '{ print $NF }' || echo 'n/a') (${SKIP[kaniko]:-$KANIKO_EXECUTOR, jailed by bench/kaniko.sh, its root on $KANIKO_JAIL_FS: the filesystem kiln and buildah write to}), a fresh jail every run; $(buildah --version 2>/dev/null || echo 'buildah n/a'), vfs storage driver, --isolation chroot, --layers=false; fresh storage folder every run"
	echo "- kiln's warm cache: \`kiln warm --unpack\` (untimed) left $STORED layers in its layer store (.kiln/unpacked)"
	echo "- runs: $RUNS (median shown); registry: docker-registry on $REG, plain HTTP on loopback; platform $PLAT"
	echo "- load average (1, 5, 15 min) at start: $LOAD_START; at end: $(cut -d' ' -f1-3 /proc/loadavg) — anything above ~0.5 means other work shared the CPUs, so compare ratios within this run only"
	echo "- page cache: not dropped; a sync (not timed) precedes every timed command; TMPDIR of every command is bench/.work/runstep/tmp"
	echo "- a's base ${B50K#"$REG"/}: busybox (static, /bin/sh) + $B50K_FILES files of 100 B–3 KiB ($(mb "$B50K_BYTES") MB, incompressible) in 1,000 folders; $B50K_ENTRIES tar entries"
	[ -z "$MINBASE" ] || echo "- b's base ${MINBASE#"$REG"/}: debootstrap --variant=minbase $SUITE, one layer, $(mb "$MINBASE_BYTES") MB tar, $MINBASE_ENTRIES entries (cached in bench/.work/runstep-cache/minbase.tar)"
	echo
	echo "In the detail tables (a to d), ratio = row / kiln unpack (--layer-store=false): above 1, kiln is faster (or smaller). The layer-store summary gives kiln / peer instead: below 1, kiln is faster. kiln's rows take the base from a cache filled by \`kiln warm --unpack\` beforehand, except \"layer store cold\"; every command writes an OCI layout (kiln: --output oci:, kaniko: --oci-layout-path, buildah: the push row). Peak RSS is the largest single process (/usr/bin/time -v)."
	echo
	summary
	echo
	echo "## a. RUN rewriting $CHANGED files of a ${B50K_FILES}-file rootfs"
	echo
	echo "a0: FROM + LABEL (no RUN); a1: FROM + one RUN rewriting $CHANGED files (\`echo ... > FILE\` × $CHANGED, spread over the tree); a2: a1 + a second RUN rewriting $CHANGED other files."
	echo
	table a1-kiln_overlay a1-kiln_walk a0-kiln_overlay a1-kiln_overlay a2-kiln_overlay a1-kiln_walk a2-kiln_walk a1-kiln_cold a1-kiln_warm \
		a1-kiln_rlcold a1-kiln_rlwarm a1-kiln_rlone a1-kaniko_full a1-kaniko_redo \
		a1-buildah_build a1-buildah_push a1-buildah_total a2-buildah_build a2-buildah_push a2-buildah_total
	echo
	echo "### Snapshot cost, measured (kiln's own log lines)"
	echo
	echo "Every RUN logs \"RUN done\" with the step's time and the snapshot's (the rest of the RUN: mount or stat walk, diff, layer written), and unpacking a stage logs \"unpacked the stage's filesystem\"; medians over every a1 and a2 run of each strategy:"
	echo
	echo "| kiln | snapshot s (median) | step s (median) | entries scanned | unpacking the base s (median) |"
	echo "| --- | ---: | ---: | ---: | ---: |"
	for st in overlay walk; do
		local logs=("$WORK"/logs/a[12]-kiln_"$st"-*.log) snap step scanned unpack
		snap=$(median $(grep -ho 'msg="RUN done".*' "${logs[@]}" 2>/dev/null | grep -o ' snapshot_seconds=[0-9.]*' | cut -d= -f2))
		step=$(median $(grep -ho 'msg="RUN done".*' "${logs[@]}" 2>/dev/null | grep -o ' step_seconds=[0-9.]*' | cut -d= -f2))
		scanned=$(median $(grep -ho 'msg="RUN done".*' "${logs[@]}" 2>/dev/null | grep -o ' scanned=[0-9]*' | cut -d= -f2))
		unpack=$(median $(grep -ho "msg=\"unpacked the stage's filesystem\".*" "${logs[@]}" 2>/dev/null | grep -o ' seconds=[0-9.]*' | cut -d= -f2))
		echo "| --snapshot $st | ${snap:--} | ${step:--} | ${scanned:--} | ${unpack:--} |"
	done
	echo
	echo "### Snapshot cost, derived from whole builds"
	echo
	echo "| kiln | one RUN step: a2 − a1, s | CPU s | first RUN incl. unpacking the base: a1 − a0, s | CPU s |"
	echo "| --- | ---: | ---: | ---: | ---: |"
	a0=$(median ${T[a0-kiln_overlay]:-}) c0=$(median ${CPU[a0-kiln_overlay]:-})
	for st in overlay walk; do
		a1=$(median ${T[a1-kiln_$st]:-}) a2=$(median ${T[a2-kiln_$st]:-})
		c1=$(median ${CPU[a1-kiln_$st]:-}) c2=$(median ${CPU[a2-kiln_$st]:-})
		echo "| --snapshot $st | $(sub "$a2" "$a1") | $(sub "$c2" "$c1") | $(sub "$a1" "$a0") | $(sub "$c1" "$c0") |"
	done
	a1=$(median ${T[a1-buildah_build]:-}) a2=$(median ${T[a2-buildah_build]:-})
	c1=$(median ${CPU[a1-buildah_build]:-}) c2=$(median ${CPU[a2-buildah_build]:-})
	[ -n "${SKIP[buildah]:-}" ] || echo "| (buildah build, for reference) | $(sub "$a2" "$a1") | $(sub "$c2" "$c1") | | |"
	echo
	echo "One RUN step is what a second RUN adds to the build: starting the step (namespaces, chroot, busybox), the snapshot (overlay: mount, then read the upper dir; walk: stat the whole tree before and after) and writing the layer. a1 − a0 adds unpacking the ${B50K_FILES}-file base into a stage folder, which a build without RUN does not need. Differences of medians: on a loaded machine they are noisy (a negative value means noise dominated); the CPU columns are steadier. buildah --layers=false commits once for all steps, so its a2 − a1 is the cost of one more RUN without a snapshot."
	echo
	if [ -n "$MINBASE" ]; then
		echo "## b. Debian $SUITE minbase, five RUN steps"
		echo
		echo '```'
		sed -e "s|$REG/||" "$CTX/Dockerfile.b"
		echo '```'
		echo
		table b-kiln_overlay b-kiln_walk b-kiln_overlay b-kiln_walk b-kiln_cold b-kiln_warm \
			b-kiln_rlcold b-kiln_rlwarm b-kiln_rlone b-kaniko_full b-kaniko_redo b-buildah_build b-buildah_push b-buildah_total
		echo
		echo "kiln writes one layer per RUN (as docker build does; RUNs that change nothing add none); buildah --layers=false one layer for the whole build."
	else
		echo "## b. Debian minbase: skipped: ${SKIP[minbase]:-no minbase image}"
	fi
	echo
	echo "## c. Peak RSS"
	echo
	echo "| build | kiln overlay MiB | kiln walk MiB | kiln store cold MiB | kiln store warm MiB | kaniko full MiB | kaniko redo MiB | buildah build MiB | buildah push MiB | buildah build / kiln overlay | buildah build / kiln walk |"
	echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
	for m in a1 a2 b; do
		[ "$m" != b ] || [ -n "$MINBASE" ] || continue
		local ro rw rb line=""
		for k in kiln_overlay kiln_walk kiln_cold kiln_warm kaniko_full kaniko_redo buildah_build buildah_push; do
			rb=$(median ${RSS[$m-$k]:-})
			line+=" ${rb:+$(mib "$rb")} |"
		done
		ro=$(median ${RSS[$m-kiln_overlay]:-}) rw=$(median ${RSS[$m-kiln_walk]:-}) rb=$(median ${RSS[$m-buildah_build]:-})
		echo "| $m |$line $(ratio "$rb" "$ro") | $(ratio "$rb" "$rw") |"
	done
	echo
	echo "The walk strategy keeps the before-state of every entry in memory; overlay reads only the upper dir. kaniko's figure is its executor's (the largest process in its jail)."
	echo
	echo "## d. COPY-only onto the ${B50K_FILES}-file rootfs"
	echo
	echo '```'
	sed -e "s|$REG/||" "$CTX/Dockerfile.d"
	echo '```'
	echo
	table d-kiln_walk d-kiln_walk d-kiln_walk d-buildah_build d-buildah_push d-buildah_total
	echo
	local idx
	idx=$(median $(grep -ho "msg=\"indexed the stage's filesystem\".*" "$WORK"/logs/d-kiln_walk-*.log 2>/dev/null | grep -o ' seconds=[0-9.]*' | cut -d= -f2))
	echo "No RUN, so the snapshot strategy plays no part (both ratio columns compare with the one kiln row). kiln does not unpack the base for WORKDIR and COPY: it reads its layers' tar headers (\"indexed the stage's filesystem\": ${idx:-?} s, median) and writes the new layers; buildah (vfs) stores the whole base first."
	for s in "${!SKIP[@]}"; do echo; echo "skipped $s: ${SKIP[$s]}"; done
	for s in "${!FAIL[@]}"; do echo; echo "failures $s: ${FAIL[$s]} of $RUNS runs (logs in bench/.work/runstep/logs/)"; done
}

report | tee "$RESULTS/runstep.md.tmp"
mv "$RESULTS/runstep.md.tmp" "$RESULTS/runstep.md"
log "written to bench/results/runstep.md; logs in bench/.work/runstep/logs/"
for s in "${!FAIL[@]}"; do
	case $s in *-kiln_*) die "kiln failed in $s (see bench/.work/runstep/logs/)" ;; esac
done
