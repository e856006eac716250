# Helpers shared by kiln's benchmark scripts (run.sh, build.sh, buildall.sh,
# runstep.sh, layercache.sh), which source it after setting BENCH. Bash 5,
# set -euo pipefail.

log() { echo "bench: $*" >&2; }
die() { log "$*"; exit 1; }

# preflight: the settings every script needs (RUNS, KILN) are sane, and
# this is bash 5 (EPOCHREALTIME).
preflight() {
	case $RUNS in '' | *[!0-9]* | 0) die "BENCH_RUNS must be a positive integer, got '$RUNS'" ;; esac
	[ -x "$KILN" ] || die "$KILN not found: run 'make build' first"
	[ "${BASH_VERSINFO[0]}" -ge 5 ] || die "needs bash 5 (EPOCHREALTIME)"
}

# ---------------------------------------------------------------- processes
# PIDS: what the script started; cleanup stops them (by PID, never by name)
# and closes fd 3, the children's standard input, on any exit; then it
# runs the functions named in AT_EXIT (after the processes are gone).
PIDS=()
AT_EXIT=()
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	local pid f
	for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
	exec 3>&- 2>/dev/null || true
	for f in "${AT_EXIT[@]}"; do "$f" || true; done
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_ready SEED PID: wait up to 600 s for the seed program SEED (process
# PID) to write $WORK/SEED.json, dying with its log ($WORK/logs/SEED.err)
# if it exits first; then log its last line.
wait_ready() {
	local name=$1 pid=$2
	for _ in $(seq 1 1200); do
		[ -f "$WORK/$name.json" ] && break
		kill -0 "$pid" 2>/dev/null || { cat "$WORK/logs/$name.err" >&2; die "$name exited"; }
		sleep 0.5
	done
	[ -f "$WORK/$name.json" ] || die "$name not ready after 600s"
	log "$(tail -n 1 "$WORK/logs/$name.err")"
}

# apt_install PKG...: apt-get install, as root or through sudo -n.
apt_install() {
	local sudo=()
	if [ "$(id -u)" != 0 ]; then
		command -v sudo >/dev/null 2>&1 || return 1
		sudo=(sudo -n)
	fi
	log "apt-get install $*"
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 || true
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# ---------------------------------------------------------------- numbers
# secs T0 T1: T1-T0 with 3 decimals.
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

# median V...: the median of the numbers (empty if none).
median() {
	[ $# -gt 0 ] || { echo ""; return; }
	printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 }
		END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# ratio A B: A/B with 2 decimals ("-" if either is missing or B is 0).
ratio() {
	if [ -z "$1" ] || [ -z "$2" ]; then echo "-"; return; fi
	awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "-"; else printf "%.2f", a / b }'
}

mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1e6 }'; }
add() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a + b }'; }
fmt_runs() { local v; for v in $1; do printf '%s ' "$v"; done; }

# ---------------------------------------------------------------- measuring
# The caller declares the associative arrays T, TS and FAIL (and CPU, SKIP
# for timed) and sets WORK.

# run_in_work NAME LOG CMD...: run CMD in $WORK, its output in LOG, after a
# sync that is not timed. A failure is counted in FAIL[NAME], LOG's last
# lines are shown and 1 is returned. Otherwise, after another untimed sync
# (what the command left dirty in the page cache), LAST is the wall time and
# LASTS the time including that sync, added to T[NAME] and TS[NAME].
run_in_work() {
	local name=$1 logf=$2 rc=0 t0 t1
	shift 2
	sync
	t0=$EPOCHREALTIME
	(cd "$WORK" && "$@") >"$logf" 2>&1 || rc=$?
	t1=$EPOCHREALTIME
	if [ "$rc" -ne 0 ]; then
		FAIL[$name]=$((${FAIL[$name]:-0} + 1))
		log "$name failed (exit $rc); last lines of $logf:"
		tail -n 5 "$logf" | sed 's/^/    /' >&2
		return 1
	fi
	sync
	LAST=$(secs "$t0" "$t1")
	LASTS=$(secs "$t0" "$EPOCHREALTIME")
	T[$name]+=" $LAST"
	TS[$name]+=" $LASTS"
}

# timed NAME LOG CMD...: run_in_work, under /usr/bin/time unless SKIP[cpu]
# is set, adding the CPU time (user + system) to CPU[NAME] and LASTC.
timed() {
	local name=$1 logf=$2 tm=()
	shift 2
	[ -n "${SKIP[cpu]:-}" ] || tm=(/usr/bin/time -f '%U %S' -o "$logf.time")
	run_in_work "$name" "$logf" "${tm[@]}" "$@" || return 1
	LASTC=""
	if [ ${#tm[@]} -gt 0 ]; then
		LASTC=$(awk 'NF == 2 { printf "%.2f", $1 + $2 }' "$logf.time")
		CPU[$name]+=" $LASTC"
	fi
	log "$name: ${LAST}s${LASTC:+, CPU ${LASTC}s}"
}

# peak_rss LOG: the peak RSS (KiB) that /usr/bin/time -v wrote to LOG.time.
peak_rss() { awk -F': ' '/Maximum resident set size/ { print $2 }' "$1.time"; }

# cpu_of LOG: user + system seconds that /usr/bin/time -v wrote to LOG.time.
cpu_of() { awk -F': ' '/User time/ { u = $2 } /System time/ { s = $2 } END { printf "%.2f", u + s }' "$1.time"; }

# ---------------------------------------------------------------- folders
# disk DIR: its size in bytes (empty if it does not exist).
disk() { if [ -d "$1" ]; then du -sb "$1" 2>/dev/null | cut -f1 || true; fi; }

# wipe DIR: remove a scratch folder, refusing one that has something mounted
# under it (buildah's vfs driver mounts nothing; this is a guard).
wipe() {
	[ -e "$1" ] || return 0
	if awk -v d="$1" '$2 == d || index($2, d "/") == 1 { found = 1 } END { exit !found }' /proc/self/mounts; then
		die "something is mounted under $1: not removing it"
	fi
	rm -rf "$1"
}

# ---------------------------------------------------------------- base images
# minbase_tar KEEP SUITE MIRROR: a debootstrap --variant=minbase tree of
# SUITE as one tar, KEEP/minbase.tar, built once and kept (rm -rf KEEP to
# rebuild). Needs root and debootstrap; when it cannot be made,
# SKIP[minbase] says why (the caller declares SKIP; BENCH_SKIP=minbase
# leaves it out).
minbase_tar() {
	local keep=$1 suite=$2 mirror=$3
	[ -z "${SKIP[minbase]:-}" ] || return 0
	[ -f "$keep/minbase.tar" ] && return 0
	[ "$(id -u)" = 0 ] || { SKIP[minbase]="debootstrap needs root"; return 0; }
	mkdir -p "$keep"
	local tree=$keep/minbase.tmp
	if [ ! -x "$tree/usr/bin/dpkg" ] || [ -d "$tree/debootstrap" ]; then
		rm -rf "$tree"
		log "debootstrap --variant=minbase $suite into $tree (once; kept in $keep)"
		if ! /usr/sbin/debootstrap --variant=minbase "$suite" "$tree" "$mirror" >"$keep/debootstrap.log" 2>&1; then
			tail -n 5 "$keep/debootstrap.log" >&2
			SKIP[minbase]="debootstrap failed (see $keep/debootstrap.log)"
			rm -rf "$tree"
			return 0
		fi
	fi
	log "tarring the minbase tree into $keep/minbase.tar"
	tar -C "$tree" --sort=name --numeric-owner --xattrs -cf "$keep/minbase.tar.tmp" .
	mv "$keep/minbase.tar.tmp" "$keep/minbase.tar"
	rm -rf "$tree"
}
