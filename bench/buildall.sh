#!/usr/bin/env bash
# kiln's multi-platform build benchmark: `kiln build-all` of one image for
# linux/amd64 + linux/arm64, side by side with buildah, against a local
# registry process seeded with a deterministic two-platform base image and a
# deterministic build context (bench/buildseed -index).
#
# The Dockerfile (Dockerfile.buildall) is COPY-only, so neither tool needs
# emulation for arm64: FROM the two-platform base, ARG TARGETARCH, COPY
# arch/${TARGETARCH}/ (per-architecture files), then the three shared COPYs
# of build.sh (src/, assets/, data/: ~2,000 files, ~150 MB incompressible).
#
#   kiln build-all, both platforms, index pushed to the registry (a tag in
#     build.toml): with an empty cache (the base is pulled, like buildah) and
#     with the base from a cache filled by `kiln warm` beforehand
#   kiln build-all, both platforms, index written as an OCI layout (the
#     image's output in build.toml, no tags), empty cache
#   buildah build --platform linux/amd64 --manifest M, the same for
#     linux/arm64, then buildah manifest push --all M docker://REG/...
#     (vfs, chroot isolation, --layers=false, fresh storage every run); the
#     two builds and the push are timed separately and summed
#
# Median of BENCH_RUNS, ratios buildah/kiln. Every push goes to a repository
# of its own (one per tool and run), so no push finds its blobs already there.
# Each output is checked to hold an index of the two platforms.
#
# Usage: bash bench/buildall.sh       (or: make bench, after bench/build.sh)
#   BENCH_RUNS=5        runs per measurement (median reported)
#   KILN=bin/kiln       the kiln binary to measure
#   BENCH_SKIP="..."    leave out some of: buildah cache oci
#
# Writes only under bench/.work/buildall/ (scratch, wiped at start; TMPDIR of
# every measured command points there too) and bench/results/buildall.md.
# Servers listen on 127.0.0.1 only; only processes started here are stopped,
# by PID. The page cache is not dropped: the context and the registry's
# blobs are read from memory (see bench/README.md).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench
WORK=$BENCH/.work/buildall
RESULTS=$BENCH/results
RUNS=${BENCH_RUNS:-5}
KILN=${KILN:-$ROOT/bin/kiln}
case $KILN in /*) ;; *) KILN=$PWD/$KILN ;; esac
PLATFORMS=(linux/amd64 linux/arm64)

. "$BENCH/lib.sh" # log, die, cleanup of PIDS, apt_install, median, ratio, wipe...

preflight

# ---------------------------------------------------------------- tools
declare -A SKIP=() # tool -> why it is not measured

install_tools() {
	local need=() s
	for s in ${BENCH_SKIP:-}; do
		case $s in
		buildah | cache | oci) SKIP[$s]="BENCH_SKIP" ;;
		*) die "BENCH_SKIP: unknown '$s' (buildah cache oci)" ;;
		esac
	done
	command -v docker-registry >/dev/null 2>&1 || [ -x /usr/bin/docker-registry ] || need+=(docker-registry)
	[ -n "${SKIP[buildah]:-}" ] || command -v buildah >/dev/null 2>&1 || need+=(buildah)
	command -v skopeo >/dev/null 2>&1 || need+=(skopeo)
	[ -x /usr/bin/time ] || need+=(time)
	command -v jq >/dev/null 2>&1 || need+=(jq)
	if [ ${#need[@]} -gt 0 ]; then
		apt_install "${need[@]}" || log "could not apt-get install ${need[*]} (need root or sudo)"
	fi
	command -v docker-registry >/dev/null 2>&1 || [ -x /usr/bin/docker-registry ] ||
		die "docker-registry is required (apt-get install docker-registry)"
	[ -n "${SKIP[buildah]:-}" ] || command -v buildah >/dev/null 2>&1 ||
		SKIP[buildah]="buildah not installed (apt-get install buildah failed)"
	[ -x /usr/bin/time ] || SKIP[cpu]="/usr/bin/time not installed (apt-get install time failed)"
	command -v jq >/dev/null 2>&1 || die "jq is required (the outputs are checked with it)"
	command -v skopeo >/dev/null 2>&1 ||
		die "skopeo is required (the indexes pushed to the registry are checked with it)"

	log "building bench/buildseed"
	(cd "$ROOT" && go build -o "$WORK/tools/buildseed" ./bench/buildseed)

	cat >"$WORK/policy.json" <<-'EOF'
		{"default": [{"type": "insecureAcceptAnything"}]}
	EOF
}

# ---------------------------------------------------------------- helpers

# median "V V ...": the median of the space-separated numbers (empty if
# none). Replaces lib.sh's median V...: this script passes one string.
median() {
	local -a v=()
	read -r -a v <<<"${1:-}"
	[ ${#v[@]} -gt 0 ] || { echo ""; return; }
	printf '%s\n' "${v[@]}" | sort -g | awk '{ a[NR] = $1 }
		END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

addc() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a + b }'; }

declare -A T=()      # measurement -> " s1 s2 ..." (seconds)
declare -A TS=()     # measurement -> " s1 s2 ..." (seconds, including a sync after it)
declare -A FAIL=()   # measurement -> failures
declare -A CPU=()    # measurement -> " s1 s2 ..." (CPU seconds: user + system)
declare -A NOTE=()   # measurement -> what it produced (last run)
declare -A BADOUT=() # measurement -> runs whose output was not a 2-platform index
LAST=""              # seconds of the last successful timed
LASTS=""             # the same, including the sync after it
LASTC=""             # its CPU seconds ("" without /usr/bin/time)
CMD=()               # the command kiln_buildall and the buildah_* functions set

# summarize MT IDX GET: "OCI index, 2 platforms: linux/amd64 (6 layers,
# 167 MB); linux/arm64 (...)" for the index IDX (JSON) of media type MT; GET
# DIGEST prints a manifest. Fails if IDX is not an index of exactly the
# benchmark's platforms (in any order).
summarize() {
	local mt=$1 idx=$2 get=$3 kind plats="" want i n d p m out
	case $mt in
	application/vnd.oci.image.index.v1+json) kind="OCI index" ;;
	application/vnd.docker.distribution.manifest.list.v2+json) kind="Docker manifest list" ;;
	*) echo "${mt:-no media type}: not an index"; return 1 ;;
	esac
	n=$(jq '.manifests | length' <<<"$idx")
	out="$kind, $n platforms:"
	for i in $(seq 0 $((n - 1))); do
		d=$(jq -r ".manifests[$i].digest" <<<"$idx")
		p=$(jq -r ".manifests[$i].platform | \"\(.os)/\(.architecture)\(if .variant then \"/\" + .variant else \"\" end)\"" <<<"$idx")
		m=$("$get" "$d") || { echo "$out $p: manifest $d missing"; return 1; }
		out+="$([ "$i" = 0 ] || echo ";") $p ($(jq -r '"\(.layers | length) layers, \((.layers | map(.size) | add) / 1e6 * 10 | floor / 10) MB"' <<<"$m"))"
		plats+="$p"$'\n'
	done
	echo "$out"
	want=$(printf '%s\n' "${PLATFORMS[@]}" | sort)
	[ "$(printf '%s' "$plats" | sort)" = "$want" ]
}

# regget REPO DIGEST: the manifest REPO@DIGEST from the registry.
REPO_FOR_GET=""
regget() { skopeo inspect --raw --tls-verify=false "docker://$REPO_FOR_GET@$1"; }
# registry_note REPO: summarize REPO:latest, the index pushed there.
registry_note() {
	local idx
	REPO_FOR_GET=$1
	idx=$(skopeo inspect --raw --tls-verify=false "docker://$1:latest" 2>/dev/null) || { echo "not found in the registry"; return 1; }
	summarize "$(jq -r '.mediaType // ""' <<<"$idx")" "$idx" regget
}

# layoutget DIGEST: a blob of the layout $LAYOUT_FOR_GET.
LAYOUT_FOR_GET=""
layoutget() { cat "$LAYOUT_FOR_GET/blobs/${1%%:*}/${1#*:}"; }
# layout_note DIR: summarize the index that DIR/index.json points to.
layout_note() {
	local d idx
	LAYOUT_FOR_GET=$1
	d=$(jq -r '.manifests[0].digest' "$1/index.json" 2>/dev/null) || { echo "no index.json"; return 1; }
	idx=$(layoutget "$d") || { echo "index blob missing"; return 1; }
	summarize "$(jq -r '.mediaType // ""' <<<"$idx")" "$idx" layoutget
}

# check NAME NOTE-COMMAND...: run a *_note command, keep its text as NOTE[NAME]
# and count a run whose output is not a 2-platform index in BADOUT[NAME].
check() {
	local name=$1 note rc=0
	shift
	note=$("$@") || rc=$?
	NOTE[$name]=$note
	if [ "$rc" -ne 0 ]; then
		BADOUT[$name]=$((${BADOUT[$name]:-0} + 1))
		log "$name: the output is not an index of ${PLATFORMS[*]}: $note"
	fi
}

# ---------------------------------------------------------------- the tools
# write_toml FILE TAG OUTPUT: a build.toml of one image, "app", both
# platforms, pushed to TAG (if not empty), written to OUTPUT (if not empty).
write_toml() {
	local plats p
	plats=$(for p in "${PLATFORMS[@]}"; do printf '"%s", ' "$p"; done)
	{
		echo "[registries.\"$REG\"]"
		echo "insecure = true"
		echo
		echo "[images.app]"
		echo "context = \"$CTX\""
		echo "dockerfile = \"Dockerfile.buildall\""
		echo "platforms = [${plats%, }]"
		[ -z "$2" ] || echo "tags = [\"$2\"]"
		[ -z "$3" ] || echo "output = \"$3\""
	} >"$1"
}

kiln_buildall() { # TOML CACHE: sets CMD
	CMD=("$KILN" build-all --config "$1" --cache-dir "$2" --progress plain)
}

buildah_cmd() { # STORAGE: sets CMD to buildah on its own vfs storage
	CMD=(buildah --root "$1/root" --runroot "$1/runroot" --storage-driver vfs)
}

buildah_build() { # STORAGE PLATFORM MANIFEST: sets CMD
	buildah_cmd "$1"
	CMD+=(build --isolation chroot --layers=false --tls-verify=false
		--signature-policy "$WORK/policy.json" --platform "$2" --manifest "$3"
		-f "$CTX/Dockerfile.buildall" "$CTX")
}

buildah_push() { # STORAGE MANIFEST DEST: sets CMD
	buildah_cmd "$1"
	CMD+=(manifest push --all --tls-verify=false --signature-policy "$WORK/policy.json" "$2" "docker://$3")
}

# ---------------------------------------------------------------- start
wipe "$WORK"
mkdir -p "$WORK/logs" "$WORK/out" "$WORK/tmp" "$WORK/toml" "$RESULTS"
install_tools
export TMPDIR=$WORK/tmp # kiln's --work-dir default and buildah's big temporary files, alike
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

mkfifo "$WORK/hold"
exec 3<>"$WORK/hold" # our children's standard input: EOF when this script dies
log "seeding the registry and writing the context (deterministic, ~170 MB)"
"$WORK/tools/buildseed" -dir "$WORK/registry" -context "$WORK/context" -ready "$WORK/buildseed.json" \
	-lists "$WORK/lists" -log "$WORK/logs/registry.log" -big-mb 0 \
	-index "$(IFS=,; echo "${PLATFORMS[*]}")" \
	<"$WORK/hold" >"$WORK/logs/buildseed.out" 2>"$WORK/logs/buildseed.err" 3>&- &
SEED_PID=$!
PIDS+=("$SEED_PID")
wait_ready buildseed "$SEED_PID"
REG=$(cat "$WORK/lists/registry")
BASE=$(cat "$WORK/lists/index.ref")
CTX=$(cat "$WORK/lists/context")
CTX_FILES=$(cat "$WORK/lists/context.files")
CTX_BYTES=$(cat "$WORK/lists/context.bytes")
ARCH_FILES=$(cat "$WORK/lists/arch.files")
ARCH_BYTES=$(cat "$WORK/lists/arch.bytes")
TIERS=$(jq -r '[.tiers[] | "\(.name)/ \(.files) files \(.bytes / 1e6 * 10 | floor / 10) MB"] | join(", ")' "$WORK/buildseed.json")
ARCH_TIERS=$(jq -r '[.arch_tiers[] | "\(.name)/ \(.files) files \(.bytes / 1e6 * 10 | floor / 10) MB"] | join(", ")' "$WORK/buildseed.json")
REPO_FOR_GET=${BASE%:*}
BASE_NOTE=$(summarize "$(skopeo inspect --raw --tls-verify=false "docker://$BASE" | jq -r .mediaType)" \
	"$(skopeo inspect --raw --tls-verify=false "docker://$BASE")" regget) ||
	die "the seeded base $BASE is not an index of ${PLATFORMS[*]}: $BASE_NOTE"

# The warm cache the "cache" row builds from: the base, both platforms.
CACHE=$WORK/cache
if [ -z "${SKIP[cache]:-}" ]; then
	log "kiln warm of the base image into $CACHE"
	warm=("$KILN" warm --image "$BASE" --cache-dir "$CACHE" --progress plain)
	for p in "${PLATFORMS[@]}"; do warm+=(--platform "$p"); done
	"${warm[@]}" >"$WORK/logs/warm.log" 2>&1 || { tail -n 5 "$WORK/logs/warm.log" >&2; die "kiln warm failed"; }
fi

# ---------------------------------------------------------------- runs
TOOLS=(kiln kiln_cache kiln_oci buildah)
ROWS=(kiln kiln_cache kiln_oci buildah_amd64 buildah_arm64 buildah_builds buildah_push buildah_total)
declare -A LABEL=(
	[kiln]="kiln build-all → registry, no cache (base pulled)"
	[kiln_cache]="kiln build-all → registry, base from the warm cache"
	[kiln_oci]="kiln build-all → OCI layout (image's output, no tags), no cache"
	[buildah_amd64]="buildah build --platform linux/amd64 --manifest M"
	[buildah_arm64]="buildah build --platform linux/arm64 --manifest M"
	[buildah_builds]="buildah: the two builds"
	[buildah_push]="buildah manifest push --all M docker://…"
	[buildah_total]="buildah: two builds + manifest push"
)

run_one() { # TOOL RUN
	local t=$1 n=$2 toml=$WORK/toml/$1-$2.toml repo out=$WORK/out/$1 s=$WORK/buildah-storage
	local sum sums sumc p a ok
	case $t in
	kiln)
		repo=$REG/bench/buildall-kiln-$n
		wipe "$WORK/nocache"
		write_toml "$toml" "$repo:latest" ""
		kiln_buildall "$toml" "$WORK/nocache"
		if timed kiln "$WORK/logs/kiln-$n.log" "${CMD[@]}"; then check kiln registry_note "$repo"; fi
		wipe "$WORK/nocache"
		;;
	kiln_cache)
		[ -z "${SKIP[cache]:-}" ] || return 0
		repo=$REG/bench/buildall-kiln-cache-$n
		write_toml "$toml" "$repo:latest" ""
		kiln_buildall "$toml" "$CACHE"
		if timed kiln_cache "$WORK/logs/kiln-cache-$n.log" "${CMD[@]}"; then check kiln_cache registry_note "$repo"; fi
		;;
	kiln_oci)
		[ -z "${SKIP[oci]:-}" ] || return 0
		wipe "$WORK/nocache"
		wipe "$out"
		write_toml "$toml" "" "oci:$out"
		kiln_buildall "$toml" "$WORK/nocache"
		if timed kiln_oci "$WORK/logs/kiln-oci-$n.log" "${CMD[@]}"; then
			check kiln_oci layout_note "$out"
			NOTE[kiln_oci]+="; $(mb "$(disk "$out")") MB on disk"
		fi
		wipe "$WORK/nocache"
		wipe "$out"
		;;
	buildah)
		[ -z "${SKIP[buildah]:-}" ] || return 0
		repo=$REG/bench/buildall-buildah-$n
		wipe "$s"
		sum=0 sums=0 sumc=0 ok=1
		for p in "${PLATFORMS[@]}"; do
			a=${p#*/}
			buildah_build "$s" "$p" localhost/bench-buildall
			if timed "buildah_$a" "$WORK/logs/buildah-build-$a-$n.log" "${CMD[@]}"; then
				sum=$(add "$sum" "$LAST") sums=$(add "$sums" "$LASTS") sumc=$(addc "$sumc" "${LASTC:-0}")
			else
				ok=0
				break
			fi
		done
		if [ "$ok" = 1 ]; then
			T[buildah_builds]+=" $sum"
			TS[buildah_builds]+=" $sums"
			[ -n "${SKIP[cpu]:-}" ] || CPU[buildah_builds]+=" $sumc"
			NOTE[buildah_builds]="vfs storage after the builds: $(mb "$(disk "$s")") MB"
			buildah_push "$s" localhost/bench-buildall "$repo:latest"
			if timed buildah_push "$WORK/logs/buildah-push-$n.log" "${CMD[@]}"; then
				check buildah_push registry_note "$repo"
				T[buildah_total]+=" $(add "$sum" "$LAST")"
				TS[buildah_total]+=" $(add "$sums" "$LASTS")"
				[ -n "${SKIP[cpu]:-}" ] || CPU[buildah_total]+=" $(addc "$sumc" "$LASTC")"
				NOTE[buildah_total]=${NOTE[buildah_push]}
			else
				FAIL[buildah_total]=$((${FAIL[buildah_total]:-0} + 1))
			fi
		else
			FAIL[buildah_builds]=$((${FAIL[buildah_builds]:-0} + 1))
			FAIL[buildah_total]=$((${FAIL[buildah_total]:-0} + 1))
		fi
		wipe "$s"
		;;
	esac
}

for n in $(seq 1 "$RUNS"); do
	log "run $n/$RUNS"
	k=${#TOOLS[@]}
	for i in $(seq 0 $((k - 1))); do # rotate the order from run to run
		run_one "${TOOLS[$(((i + n - 1) % k))]}" "$n"
	done
done

# ---------------------------------------------------------------- report

skip_of() { # ROW: why the row was not measured, if it was not
	case $1 in
	kiln_cache) echo "${SKIP[cache]:-}" ;;
	kiln_oci) echo "${SKIP[oci]:-}" ;;
	buildah*) echo "${SKIP[buildah]:-}" ;;
	esac
}

table() {
	local row k kc ks kcs kcpu kccpu v vs vc why
	k=$(median "${T[kiln]:-}")
	kc=$(median "${T[kiln_cache]:-}")
	ks=$(median "${TS[kiln]:-}")
	kcs=$(median "${TS[kiln_cache]:-}")
	kcpu=$(median "${CPU[kiln]:-}")
	kccpu=$(median "${CPU[kiln_cache]:-}")
	echo "| tool | median s | ratio to kiln → registry (no cache) | to kiln → registry (cache) | median s incl. sync | ratio incl. sync, to kiln (no cache) | to kiln (cache) | median CPU s | CPU ratio to kiln (no cache) | to kiln (cache) | output (last run) | runs (s) |"
	echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"
	for row in "${ROWS[@]}"; do
		why=$(skip_of "$row")
		if [ -n "$why" ]; then
			echo "| ${LABEL[$row]} | skipped: $why | | | | | | | | | | |"
			continue
		fi
		v=$(median "${T[$row]:-}")
		vs=$(median "${TS[$row]:-}")
		if [ -z "$v" ]; then
			echo "| ${LABEL[$row]} | failed (${FAIL[$row]:-0}/$RUNS runs) | | | | | | | | | | |"
			continue
		fi
		vc=$(median "${CPU[$row]:-}")
		echo "| ${LABEL[$row]} | $v | $(ratio "$v" "$k") | $(ratio "$v" "$kc") | $vs | $(ratio "$vs" "$ks") | $(ratio "$vs" "$kcs") | ${vc:--} | $(ratio "$vc" "$kcpu") | $(ratio "$vc" "$kccpu") | ${NOTE[$row]:--} | $(fmt_runs "${T[$row]:-}")|"
	done
}

report() {
	local k s
	echo "# kiln build-all benchmark: two platforms, kiln vs buildah"
	echo
	echo "- when: $(date -u +%Y-%m-%dT%H:%M:%SZ); kiln $("$KILN" version 2>/dev/null | head -n 1)"
	echo "- commit: $(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo '?')"
	echo "- machine: $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -sr)"
	echo "- peer: $(buildah --version 2>/dev/null || echo 'buildah n/a'), vfs storage driver, --isolation chroot, --layers=false; fresh storage folder every run"
	echo "- runs: $RUNS (median shown); registry: docker-registry on $REG, plain HTTP on loopback; every push goes to a repository of its own (per tool and run)"
	echo "- load average (1, 5, 15 min) at start: $LOAD_START; at end: $(cut -d' ' -f1-3 /proc/loadavg) — anything above ~0.5 means other work shared the CPUs, so compare ratios within this run only"
	echo "- page cache: not dropped (context and registry blobs are read from memory); a sync (not timed) precedes every timed command; TMPDIR of every command is bench/.work/buildall/tmp"
	echo "- base image ${BASE#"$REG"/}: $BASE_NOTE"
	echo "- context: $CTX_FILES shared files, $(mb "$CTX_BYTES") MB of incompressible data ($TIERS), plus per-architecture files: $ARCH_FILES files, $(mb "$ARCH_BYTES") MB ($ARCH_TIERS)"
	echo
	echo "## Build one image for $(printf '%s + ' "${PLATFORMS[@]}" | sed 's/ + $//'): FROM the two-platform base, COPY arch/\${TARGETARCH}/, COPY src/, assets/, data/"
	echo
	echo "Both tools build both platforms without emulation (the Dockerfile has no RUN) and end with an image index in the registry. kiln: one \`kiln build-all\` (2 platform builds at a time, its default), then the index pushed to the tag of build.toml (or written as an OCI layout). buildah: one \`buildah build --platform P --manifest M\` per platform, one after the other, adding each image to the manifest list M in its storage, then \`buildah manifest push --all M docker://REG/...\`."
	echo
	table
	echo
	k=$(median "${T[kiln]:-}")
	[ -z "$k" ] || echo "kiln (no cache) copies $(awk -v b="$CTX_BYTES" -v a="$ARCH_BYTES" -v n="${#PLATFORMS[@]}" -v s="$k" 'BEGIN { printf "%.0f", (n * b + a) / 1e6 / s }') MB/s of context into layers ($(mb "$((${#PLATFORMS[@]} * CTX_BYTES + ARCH_BYTES))") MB for the two platforms), pushing included."
	echo
	echo "Ratio = row time / kiln time: above 1 means kiln is faster. The like-for-like comparison is \"buildah: two builds + manifest push\" against \"kiln build-all → registry, no cache\": both start with nothing local, pull the base for both platforms, and end with the index and every blob in the registry. \"cache\" gives kiln the base from a cache filled by \`kiln warm\` beforehand (how kiln is meant to run). The OCI-layout row shows what the push costs kiln: the same build, the index written to a folder instead. buildah's sums (\"the two builds\", \"two builds + manifest push\") are added up per run, then the median taken. \"CPU s\" is user + system time of the command and its children (/usr/bin/time): on a busy machine it moves much less than the wall time, so prefer its ratios when the load average above is high."
	echo
	echo "Layers: kiln writes one layer per COPY (4 on top of the base's 2); buildah --layers=false commits the build as one layer (1 on top of the base's 2). The \"output\" column is read back from the registry (\`skopeo inspect --raw\`) or the layout (jq) after the run: the index's media type, its platforms, and each platform's layer count and compressed size."
	for s in "${!SKIP[@]}"; do echo; echo "skipped $s: ${SKIP[$s]}"; done
	for s in "${!FAIL[@]}"; do echo; echo "failures $s: ${FAIL[$s]} of $RUNS runs (logs in bench/.work/buildall/logs/)"; done
	for s in "${!BADOUT[@]}"; do echo; echo "wrong output $s: ${BADOUT[$s]} of $RUNS runs did not produce an index of ${PLATFORMS[*]}"; done
}

report | tee "$RESULTS/buildall.md.tmp"
mv "$RESULTS/buildall.md.tmp" "$RESULTS/buildall.md"
log "written to bench/results/buildall.md; logs in bench/.work/buildall/logs/"
# Exit non-zero only if kiln itself failed (or produced no 2-platform index);
# buildah's failures are in the report.
for s in "${!FAIL[@]}" "${!BADOUT[@]}"; do
	case $s in kiln*) die "kiln failed in $s (see bench/.work/buildall/logs/)" ;; esac
done
