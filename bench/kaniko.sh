# kaniko's executor in a jail, for kiln's benchmark scripts (layercache.sh;
# the unpack benchmark), which source it after lib.sh. Bash 5, root.
#
# kaniko is made to be a container's only process: it unpacks the base image
# into its own / and snapshots / after every step. Run on a host it would
# overwrite the host's /etc, /usr, ... So every kaniko_run gets a jail of
# its own, gone when the executor exits:
#
#   - unshare --mount --pid --fork: a private mount namespace (propagation
#     private: nothing mounted in it shows outside) and a pid namespace (the
#     executor is its pid 1: its RUN steps die with it)
#   - a fresh root: a tmpfs (KANIKO_JAIL_FS=tmpfs, the default) or a fresh
#     folder under KANIKO_JAILS bound on itself (KANIKO_JAIL_FS=disk: the
#     same disk as the tools kaniko is compared with)
#   - in it: /kaniko/executor (the binary, bound read-only), /kaniko
#     writable (kaniko's work folder), /workspace (the context, bound
#     read-only), /etc/resolv.conf (bound read-only), the host's CA bundle in
#     /kaniko/ssl/certs, a minimal /dev (null zero full random urandom tty
#     bound from the host), /proc of the new pid namespace, /tmp
#   - pivot_root into it, then the old root is unmounted (lazily): the host's
#     / is not reachable from inside. A static busybox, bound at
#     /kaniko/.jail/busybox (kaniko never snapshots /kaniko), does the
#     unmount, since no host binary is left to run.
#   - the network namespace is the host's: kaniko reaches registries on
#     127.0.0.1 (pass --insecure-registry 127.0.0.1:PORT for plain HTTP).
#
# The executor runs with --force (kaniko finds no container runtime in the
# jail) and kaniko's image's environment (HOME=/root, PATH with /kaniko,
# SSL_CERT_DIR, DOCKER_CONFIG). Setting up and removing the jail takes a few
# ms, inside whatever times kaniko_run.
#
# Settings (environment):
#   KANIKO_EXECUTOR  the executor binary (default: bench/.bin/kaniko-executor)
#   KANIKO_JAILS     where jail roots are made (default: $WORK/kaniko-jails)
#   KANIKO_JAIL_FS   tmpfs (default) or disk
#   KANIKO_JAIL_SIZE size of the tmpfs (default 8g; memory is used only as filled)
#   KANIKO_KEEP_ROOTS  set: kaniko_run leaves the jail's root folder (nothing
#                    is mounted there once it returns) for kaniko_clean to
#                    remove, so a timed kaniko_run does not include deleting
#                    the unpacked filesystem (KANIKO_JAIL_FS=disk)
#   KANIKO_OUT       a host folder bound read-write at /kaniko/out, for files
#                    kaniko should leave behind (--digest-file,
#                    --oci-layout-path, --tar-path); unset: none
#
# Functions:
#   kaniko_check                      is everything a jail needs here? (else
#                                     prints why not and returns 1)
#   kaniko_run CONTEXT ARGS...        one executor run in a fresh jail
#   kaniko_run_step MODE BASE CMD ARGS...
#                                     FROM BASE + RUN CMD (the unpack benchmark)
#   kaniko_clean                      remove the jail roots kaniko_run left
#   kaniko_host_state PATH...         what a kaniko that escaped would change

KANIKO_EXECUTOR=${KANIKO_EXECUTOR:-$BENCH/.bin/kaniko-executor}
KANIKO_JAILS=${KANIKO_JAILS:-$WORK/kaniko-jails}
KANIKO_JAIL_FS=${KANIKO_JAIL_FS:-tmpfs}
KANIKO_JAIL_SIZE=${KANIKO_JAIL_SIZE:-8g}
KANIKO_BUSYBOX=${KANIKO_BUSYBOX:-/bin/busybox}

# kaniko_check: the executor, root, unshare, pivot_root and a static busybox
# are here. Prints what is missing and returns 1 otherwise.
kaniko_check() {
	[ -x "$KANIKO_EXECUTOR" ] || { echo "no kaniko executor at $KANIKO_EXECUTOR (see bench/README.md)"; return 1; }
	[ "$(id -u)" = 0 ] || { echo "the kaniko jail needs root (mount and pid namespaces)"; return 1; }
	command -v unshare >/dev/null 2>&1 || { echo "unshare (util-linux) not found"; return 1; }
	command -v pivot_root >/dev/null 2>&1 || { echo "pivot_root (util-linux) not found"; return 1; }
	if [ ! -x "$KANIKO_BUSYBOX" ] || ! file_is_static "$KANIKO_BUSYBOX"; then
		echo "no static busybox at $KANIKO_BUSYBOX (apt-get install busybox-static)"
		return 1
	fi
	case $KANIKO_JAIL_FS in tmpfs | disk) ;; *) echo "KANIKO_JAIL_FS must be tmpfs or disk, got '$KANIKO_JAIL_FS'"; return 1 ;; esac
}

# file_is_static F: F needs no dynamic loader (runs in an empty root).
file_is_static() { ! LC_ALL=C ldd "$1" >/dev/null 2>&1; }

# The script that runs inside the new namespaces, as their pid 1, still in
# the host's root: it builds the jail at $1 and execs the executor inside.
# Arguments: ROOT FS SIZE EXECUTOR BUSYBOX CONTEXT OUT, then the executor's.
# shellcheck disable=SC2016
_KANIKO_JAIL_SCRIPT='
set -euo pipefail
root=$1 fs=$2 size=$3 exe=$4 bb=$5 ctx=$6 out=$7
shift 7
if [ "$fs" = tmpfs ]; then
	mount -t tmpfs -o mode=0755,size="$size" kaniko-jail "$root"
else
	mount --bind "$root" "$root"
fi
# bind_ro SRC DST: DST (created, as a file or folder like SRC) shows SRC, read-only.
bind_ro() {
	if [ -d "$1" ]; then mkdir -p "$2"; else touch "$2"; fi
	mount --bind "$1" "$2"
	mount -o remount,bind,ro "$2"
}
mkdir -p "$root"/kaniko/.jail "$root"/kaniko/.docker "$root"/kaniko/ssl/certs "$root"/proc "$root"/dev "$root"/etc "$root"/tmp
chmod 1777 "$root"/tmp
bind_ro "$exe" "$root"/kaniko/executor
bind_ro "$bb" "$root"/kaniko/.jail/busybox
bind_ro "$ctx" "$root"/workspace
[ ! -e /etc/resolv.conf ] || bind_ro /etc/resolv.conf "$root"/etc/resolv.conf
for ca in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt; do
	[ ! -f "$ca" ] || { cp "$ca" "$root"/kaniko/ssl/certs/ca-certificates.crt; break; }
done
if [ -n "$out" ]; then
	mkdir -p "$root"/kaniko/out
	mount --bind "$out" "$root"/kaniko/out
fi
mount -t tmpfs -o mode=0755,size=1m,nosuid,noexec kaniko-dev "$root"/dev
for d in null zero full random urandom tty; do
	touch "$root"/dev/$d
	mount --bind /dev/$d "$root"/dev/$d
done
ln -s /proc/self/fd "$root"/dev/fd
ln -s /proc/self/fd/0 "$root"/dev/stdin
ln -s /proc/self/fd/1 "$root"/dev/stdout
ln -s /proc/self/fd/2 "$root"/dev/stderr
mkdir "$root"/dev/shm
mount -t tmpfs -o mode=1777,size=64m,nosuid,nodev kaniko-shm "$root"/dev/shm
mount -t proc -o nosuid,nodev,noexec proc "$root"/proc
mkdir "$root"/kaniko/.jail/oldroot
cd "$root"
pivot_root . kaniko/.jail/oldroot
cd /
exec /kaniko/.jail/busybox sh -euc "
	/kaniko/.jail/busybox umount -l /kaniko/.jail/oldroot
	/kaniko/.jail/busybox rmdir /kaniko/.jail/oldroot
	exec /kaniko/.jail/busybox env -i HOME=/root USER=root PATH=/usr/local/bin:/kaniko \
		SSL_CERT_DIR=/kaniko/ssl/certs DOCKER_CONFIG=/kaniko/.docker/ \
		/kaniko/executor \"\$@\"
" kaniko-jail "$@"
'

# kaniko_run CONTEXT ARGS...: run the executor on the build context folder
# CONTEXT (seen as /workspace) in a fresh jail, with --context
# dir:///workspace --force and ARGS (--dockerfile defaults to
# /workspace/Dockerfile). The jail's root is removed afterwards, unless
# KANIKO_KEEP_ROOTS is set. Returns the executor's exit status.
kaniko_run() {
	local ctx=$1 root rc=0 why
	shift
	why=$(kaniko_check) || { log "kaniko_run: $why"; return 1; }
	ctx=$(cd "$ctx" && pwd) || return 1
	mkdir -p "$KANIKO_JAILS"
	root=$(mktemp -d "$KANIKO_JAILS/root.XXXXXX")
	unshare --mount --pid --fork --kill-child --propagation private \
		bash -c "$_KANIKO_JAIL_SCRIPT" kaniko-jail "$root" "$KANIKO_JAIL_FS" "$KANIKO_JAIL_SIZE" \
		"$KANIKO_EXECUTOR" "$KANIKO_BUSYBOX" "$ctx" "${KANIKO_OUT:-}" \
		--context dir:///workspace --force "$@" || rc=$?
	# The mounts were the namespace's: nothing is mounted at $root on the host.
	[ -n "${KANIKO_KEEP_ROOTS:-}" ] || wipe "$root"
	return "$rc"
}

# kaniko_clean: remove the jail roots that kaniko_run left (KANIKO_KEEP_ROOTS).
kaniko_clean() {
	local r
	for r in "$KANIKO_JAILS"/root.*; do wipe "$r"; done
}

# kaniko_run_step MODE BASE CMD ARGS...: kaniko builds "FROM BASE" + "RUN
# CMD" (a context written under KANIKO_JAILS), the measurement the unpack
# benchmark needs: kaniko pulls and unpacks BASE into the jail's /, runs CMD
# and snapshots. MODE picks how kaniko finds the RUN's changes:
#   full  its default: --snapshot-mode=full, walking and hashing the whole
#         filesystem after the step
#   redo  --snapshot-mode=redo --use-new-run: the "fast" settings kaniko's
#         docs suggest (mtime/size compare; changes from the RUN's own
#         walk before and after)
# The image is not pushed (--no-push) unless ARGS give --destination (drop
# --no-push then with KANIKO_PUSH=1). A BASE on 127.0.0.1 or localhost is
# pulled over plain HTTP (--insecure-registry). Returns the executor's status.
kaniko_run_step() {
	local mode=$1 base=$2 cmd=$3 ctx reg rc=0 flags=()
	shift 3
	case $mode in
	full) flags=(--snapshot-mode=full) ;;
	redo) flags=(--snapshot-mode=redo --use-new-run) ;;
	*) log "kaniko_run_step: MODE must be full or redo, got '$mode'"; return 1 ;;
	esac
	reg=${base%%/*}
	case $reg in 127.0.0.1:* | localhost:* | 127.0.0.1 | localhost) flags+=(--insecure-registry "$reg") ;; esac
	[ -n "${KANIKO_PUSH:-}" ] || flags+=(--no-push)
	mkdir -p "$KANIKO_JAILS"
	ctx=$(mktemp -d "$KANIKO_JAILS/step.XXXXXX")
	printf 'FROM %s\nRUN %s\n' "$base" "$cmd" >"$ctx/Dockerfile"
	kaniko_run "$ctx" --dockerfile /workspace/Dockerfile "${flags[@]}" "$@" || rc=$?
	rm -rf "$ctx"
	return "$rc"
}

# kaniko_host_state PATH...: a fingerprint of what a kaniko that escaped its
# jail would change on this host: the users and groups files, and whether
# each PATH (what the benchmark's Dockerfile creates) exists. Compare the
# output before and after kaniko runs.
kaniko_host_state() {
	local p
	sha256sum /etc/passwd /etc/group /etc/shadow /etc/gshadow 2>/dev/null || true
	for p in "$@"; do
		if [ -e "$p" ] || [ -L "$p" ]; then echo "exists $p"; else echo "absent $p"; fi
	done
}
