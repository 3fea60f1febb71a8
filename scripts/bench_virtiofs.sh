#!/bin/bash
# scripts/bench.sh virtiofs: guest sequential (1 MiB) and random (4 KiB)
# read throughput of one file through our nydusd (vhost-user-fs, localfs +
# blobcache) vs QEMU's own virtiofsd sharing the same tree unpacked,
# measured in one run with the same guest (shared/scripts/virtiofs-guest,
# TCG here, so absolute numbers are low: compare the ratio).
# Each guest boot runs both fio jobs, each after dropping the guest's page
# cache; every run starts fresh backends (virtiofsd exits after its guest
# disconnects; nydusd gets an empty cache dir).
# Env: BENCH_DIR (default /var/tmp/nydus-bench-virtiofs), BENCH_RUNS (3),
#      BENCH_FILE_MIB (256: a sequential pass then lasts seconds, not one), BENCH_RUNTIME (fio --runtime seconds, 10).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$ROOT"
need_cargo
need_shared
[ "$(id -u)" -eq 0 ] || die "bench.sh virtiofs needs root (QEMU, vhost-user sockets)"
apt_install fio qemu-system-x86 bc
VIRTIOFSD=/usr/lib/qemu/virtiofsd
[ -x "$VIRTIOFSD" ] || die "$VIRTIOFSD missing (package qemu-system-common)"

RUNS=${BENCH_RUNS:-3}
DIR=${BENCH_DIR:-/var/tmp/nydus-bench-virtiofs}
MIB=${BENCH_FILE_MIB:-256}
RUNTIME=${BENCH_RUNTIME:-10}
mkdir -p "$DIR"

say "building release binaries"
cargo build --release --quiet -p nydusctl -p nydusd-worker
NYDUSCTL=$ROOT/target/release/nydusctl
NYDUSD=$ROOT/target/release/nydusd

TREE=$DIR/tree-$MIB
IMAGE=$DIR/image-$MIB
if [ ! -f "$TREE/.done" ]; then
    say "making a tree with a $MIB MiB file in $TREE"
    rm -rf "$TREE" && mkdir -p "$TREE"
    # Half random, half compressible, like the mktree big files.
    head -c $((MIB / 2))M /dev/urandom >"$TREE/data.bin"
    # yes dies of SIGPIPE when head has enough (status 141 under pipefail).
    yes "nydus virtio-fs bench line of text" | head -c $((MIB - MIB / 2))M >>"$TREE/data.bin" || true
    [ "$(stat -c %s "$TREE/data.bin")" -eq $((MIB << 20)) ] || die "could not write $TREE/data.bin"
    touch "$TREE/.done"
    rm -rf "$IMAGE"
fi
if [ ! -f "$IMAGE/bootstrap" ]; then
    mkdir -p "$IMAGE/blobs"
    "$NYDUSCTL" image create --bootstrap "$IMAGE/bootstrap" --blob-dir "$IMAGE/blobs" "$TREE" >/dev/null
fi

BACKEND_PID=
cleanup() {
    [ -n "$BACKEND_PID" ] && kill "$BACKEND_PID" 2>/dev/null || true
}
trap cleanup EXIT INT TERM

fio_job() { # NAME RW BS
    echo "echo 3 > /proc/sys/vm/drop_caches; fio --name=$1 --filename=/mnt/data.bin --rw=$2 --bs=$3 --size=${MIB}M \
--runtime=$RUNTIME --readonly --direct=0 --ioengine=psync --output-format=terse"
}
SCRIPT="$(fio_job seq read 1M); $(fio_job rand randread 4k)"

# guest_run NAME SOCK: one guest; prints "SEQ_KIBS RAND_KIBS" (terse field 7 = read bandwidth KiB/s).
guest_run() {
    local out
    out=$("$SHARED/scripts/virtiofs-guest" --sock "$2" --tag benchfs --timeout 600 --bin /usr/bin/fio -q \
        -- sh -c "$SCRIPT" 2>"$DIR/guest-$1.err") || { cat "$DIR/guest-$1.err" >&2; die "guest on $1 failed"; }
    echo "$out" >"$DIR/guest-$1.out"
    local seq rand
    seq=$(awk -F';' '$3 == "seq" {print $7}' <<<"$out")
    rand=$(awk -F';' '$3 == "rand" {print $7}' <<<"$out")
    [ -n "$seq" ] && [ -n "$rand" ] || die "no fio results from the $1 guest (see $DIR/guest-$1.out)"
    echo "$seq $rand"
}

wait_sock() { # SOCK PID
    for _ in $(seq 400); do
        [ -S "$1" ] && return 0
        kill -0 "$2" 2>/dev/null || die "backend for $1 exited early"
        sleep 0.05
    done
    die "no socket at $1"
}

run_nydusd() {
    local sock=$DIR/nydusd.sock
    rm -rf "$DIR/cache" "$sock" && mkdir -p "$DIR/cache"
    cat >"$DIR/nydusd.json" <<EOF
{"device": {"backend": {"type": "localfs", "config": {"dir": "$IMAGE/blobs"}},
            "cache": {"type": "blobcache", "config": {"work_dir": "$DIR/cache"}}},
 "mode": "direct", "digest_validate": false}
EOF
    "$NYDUSD" --sock "$sock" --config "$DIR/nydusd.json" --bootstrap "$IMAGE/bootstrap" \
        --log-level warn >/dev/null 2>>"$DIR/nydusd.log" &
    BACKEND_PID=$!
    wait_sock "$sock" "$BACKEND_PID"
    guest_run nydusd "$sock"
    kill "$BACKEND_PID" 2>/dev/null || true
    wait "$BACKEND_PID" 2>/dev/null || true
    BACKEND_PID=
}

run_virtiofsd() {
    local sock=$DIR/virtiofsd.sock
    rm -f "$sock"
    "$VIRTIOFSD" --socket-path="$sock" -o source="$TREE" -o cache=auto -f >/dev/null 2>>"$DIR/virtiofsd.log" &
    BACKEND_PID=$!
    wait_sock "$sock" "$BACKEND_PID"
    guest_run virtiofsd "$sock"
    # It exits after its guest disconnects; make sure before the next one.
    for _ in $(seq 100); do kill -0 "$BACKEND_PID" 2>/dev/null || break; sleep 0.05; done
    kill "$BACKEND_PID" 2>/dev/null || true
    wait "$BACKEND_PID" 2>/dev/null || true
    BACKEND_PID=
}

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

say "virtiofs: fio seq 1M and rand 4k of a $MIB MiB file, nydusd vs virtiofsd, $RUNS runs (TCG guest)"
n_seq=() n_rand=() v_seq=() v_rand=()
for i in $(seq "$RUNS"); do
    # Not in a subshell: the EXIT trap must see BACKEND_PID.
    run_nydusd >"$DIR/result"
    read -r s r <"$DIR/result"; n_seq+=("$s"); n_rand+=("$r")
    run_virtiofsd >"$DIR/result"
    read -r s r <"$DIR/result"; v_seq+=("$s"); v_rand+=("$r")
    echo "run $i: nydusd seq ${n_seq[-1]} rand ${n_rand[-1]} KiB/s; virtiofsd seq ${v_seq[-1]} rand ${v_rand[-1]} KiB/s" >&2
done
mib() { printf '%s\n' "$@" | median | awk '{printf "%.1f", $1 / 1024}'; }
ns=$(mib "${n_seq[@]}"); nr=$(mib "${n_rand[@]}"); vs=$(mib "${v_seq[@]}"); vr=$(mib "${v_rand[@]}")
printf '%-26s %14s %14s\n' "guest read (median of $RUNS)" "seq 1M MiB/s" "rand 4k MiB/s"
printf '%-26s %14s %14s\n' "nydusd (ours)" "$ns" "$nr"
printf '%-26s %14s %14s\n' "virtiofsd (QEMU)" "$vs" "$vr"
printf '%-26s %14.2f %14.2f\n' "ratio ours/virtiofsd" "$(echo "$ns/$vs" | bc -l)" "$(echo "$nr/$vr" | bc -l)"
