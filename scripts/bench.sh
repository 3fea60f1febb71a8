#!/bin/bash
# Benchmarks, side by side in one run, medians of BENCH_RUNS runs (default 3).
#
#   scripts/bench.sh create   nydusctl image create of the mktree `big` tree vs mksquashfs -comp zstd:
#                             wall time and peak RSS.
#   scripts/bench.sh mount    the same tree served by nydusd (FUSE, localfs + blobcache), the kernel's
#                             EROFS mount (mkfs.erofs), squashfuse, bindfs (a FUSE passthrough of the
#                             native tree: the FUSE transport's own cost), and native: start to first stat
#                             (caches dropped, and again with the binary cached), stat walk cold/warm,
#                             whole-tree read cold/warm, fio seq 1 MiB / rand 4 KiB of a 64 MiB file,
#                             nydusd peak RSS (the largest of any daemon in a run); printed as ratios
#                             to native. Cold figures take every target in turn, one figure at a time;
#                             warm ones alternate between targets mounted at once.
#   scripts/bench.sh remote   a start-up file set read cold from an object store behind 10 ms of netem
#                             latency (own network namespace; without netem in the kernel, the store's
#                             own per-request latency), with and without prefetch; bytes fetched
#                             per byte read; vs native (scripts/bench_remote.sh, BENCH_DIR default
#                             /var/tmp/nydus-bench-remote).
#   scripts/bench.sh virtiofs guest fio seq 1M / rand 4k of a 256 MiB file through nydusd vs QEMU's virtiofsd
#                             (scripts/bench_virtiofs.sh, BENCH_DIR default /var/tmp/nydus-bench-virtiofs).
#   scripts/bench.sh          create and mount.
# Env: BENCH_DIR (default /var/tmp/nydus-bench; the tree and images are kept there and reused),
#      BENCH_RUNS, BENCH_PROFILE (mktree profile, default big), BENCH_TARGETS (mount: default
#      native,nydusd,erofs,squashfuse,bindfs; nydusd-api is nydusd with --apisock, as nydus-snapshotter runs it).
# Needs root (drop_caches, mounts). Machines are shared and noisy: compare the ratios, not seconds.
set -euo pipefail
# remote and virtiofs have their own scripts, tree and BENCH_DIR.
case "${1:-}" in remote | virtiofs) [ $# -eq 1 ] && exec "$(dirname "$0")/bench_$1.sh" ;; esac
. "$(dirname "$0")/lib.sh"
cd "$ROOT"
need_cargo
need_shared
[ "$(id -u)" -eq 0 ] || die "bench.sh needs root (drop_caches, mounts, mknod)"
apt_install squashfs-tools squashfuse erofs-utils bindfs fio time python3

RUNS=${BENCH_RUNS:-3}
DIR=${BENCH_DIR:-/var/tmp/nydus-bench}
PROFILE=${BENCH_PROFILE:-big}
TREE=$DIR/tree-$PROFILE
mkdir -p "$DIR"

say "building release binaries"
cargo build --release --quiet -p nydusctl -p nydusd-worker
NYDUSCTL=$ROOT/target/release/nydusctl
NYDUSD=$ROOT/target/release/nydusd

if [ ! -f "$TREE/.done" ]; then
    say "making the $PROFILE tree in $TREE"
    rm -rf "$TREE"
    python3 "$SHARED/scripts/mktree.py" --seed 20240601 "$PROFILE" "$TREE" >/dev/null
    touch "$TREE/.done"
fi

now_ns() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR==0) print "nan"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }

# time_cmd CMD...: runs CMD once and prints "SECONDS MAXRSS_KIB".
time_cmd() {
    local f
    f=$(mktemp)
    /usr/bin/time -f '%e %M' -o "$f" "$@" >/dev/null 2>&1 || { cat "$f" >&2; rm -f "$f"; die "failed: $*"; }
    tail -n 1 "$f"
    rm -f "$f"
}

bench_create() {
    say "create: nydusctl image create vs mksquashfs -comp zstd on $TREE ($(du -sh --apparent-size "$TREE" | cut -f1))"
    local n_t=() n_m=() s_t=() s_m=() r
    for i in $(seq "$RUNS"); do
        rm -rf "$DIR/create" && mkdir -p "$DIR/create/blobs"
        drop_caches
        read -r t m < <(time_cmd "$NYDUSCTL" image create --bootstrap "$DIR/create/bootstrap" --blob-dir "$DIR/create/blobs" "$TREE")
        n_t+=("$t"); n_m+=("$m")
        drop_caches
        read -r t m < <(time_cmd mksquashfs "$TREE" "$DIR/create/tree.sqfs" -comp zstd -noappend -quiet)
        s_t+=("$t"); s_m+=("$m")
        echo "run $i: nydusctl ${n_t[-1]} s ${n_m[-1]} KiB; mksquashfs ${s_t[-1]} s ${s_m[-1]} KiB" >&2
    done
    local nt nm st sm
    nt=$(printf '%s\n' "${n_t[@]}" | median); nm=$(printf '%s\n' "${n_m[@]}" | median)
    st=$(printf '%s\n' "${s_t[@]}" | median); sm=$(printf '%s\n' "${s_m[@]}" | median)
    printf '%-28s %10s %14s\n' "create (median of $RUNS)" "seconds" "peak RSS MiB"
    printf '%-28s %10s %14.1f\n' "nydusctl image create" "$nt" "$(echo "$nm/1024" | bc -l)"
    printf '%-28s %10s %14.1f\n' "mksquashfs -comp zstd" "$st" "$(echo "$sm/1024" | bc -l)"
}

bench_mount() {
    say "mount: nydusd vs kernel EROFS vs squashfuse vs native on $TREE"
    python3 "$ROOT/scripts/bench_mount.py" --tree "$TREE" --dir "$DIR" --nydusd "$NYDUSD" \
        --nydusctl "$NYDUSCTL" --runs "$RUNS" --targets "${BENCH_TARGETS:-native,nydusd,erofs,squashfuse,bindfs}"
}

apt_install bc
sections=("$@")
[ ${#sections[@]} -eq 0 ] && sections=(create mount)
for s in "${sections[@]}"; do
    case $s in
        create) bench_create ;;
        mount) bench_mount ;;
        remote | virtiofs) BENCH_DIR= "$ROOT/scripts/bench_$s.sh" ;;
        *) die "unknown section '$s' (create, mount, remote, virtiofs)" ;;
    esac
done
