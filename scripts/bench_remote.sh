#!/bin/bash
# scripts/bench.sh remote: a container's start-up file set read cold from a
# remote object store with added latency, with and without prefetch, and
# the bytes fetched per byte read; the native tree for the ratio.
#
# The network is a private namespace made here: loopback with `tc netem
# delay` (BENCH_DELAY_MS, default 10 ms each way; where the kernel has no
# netem, the object store's own per-request latency of one round trip
# stands in for it). The object store and
# nydusd run inside it (nsenter --net only: same mount namespace, so the
# FUSE mount is the host's). Everything is removed on exit.
# Env: BENCH_DIR (default /var/tmp/nydus-bench-remote), BENCH_RUNS (3),
#      BENCH_PROFILE (mktree profile, default big), BENCH_FILES (200), BENCH_DELAY_MS (10).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$ROOT"
need_cargo
need_shared
[ "$(id -u)" -eq 0 ] || die "bench.sh remote needs root (network namespace, tc, drop_caches, mounts)"
apt_install iproute2 python3 util-linux

DIR=${BENCH_DIR:-/var/tmp/nydus-bench-remote}
mkdir -p "$DIR"

say "building release binaries"
cargo build --release --quiet -p nydusctl -p nydusd-worker

NS=nydus-bench-$$
cleanup() {
    # Only what runs inside our namespace: the store and the daemons we started.
    local pids
    pids=$(ip netns pids "$NS" 2>/dev/null || true)
    [ -n "$pids" ] && kill $pids 2>/dev/null || true
    sleep 0.5
    pids=$(ip netns pids "$NS" 2>/dev/null || true)
    [ -n "$pids" ] && kill -9 $pids 2>/dev/null || true
    for m in "$DIR"/mnt-*; do
        mountpoint -q "$m" 2>/dev/null && umount -l "$m" || true
    done
    ip netns del "$NS" 2>/dev/null || true
}
trap cleanup EXIT INT TERM

ip netns add "$NS"
inns() { nsenter --net="/run/netns/$NS" "$@"; }
inns ip link set lo up
DELAY=${BENCH_DELAY_MS:-10}
LATENCY=(--delay-ms "$DELAY")
if inns tc qdisc add dev lo root netem delay "${DELAY}ms" 2>/dev/null; then
    say "namespace $NS: $(inns tc qdisc show dev lo | head -n 1)"
else
    # Some kernels lack sch_netem (CONFIG_NET_SCH_NETEM unset, no modules):
    # the object store then sleeps one round trip before every request.
    say "namespace $NS: no netem in this kernel; the object store adds $((2 * DELAY)) ms per request instead"
    LATENCY+=(--server-latency-ms $((2 * DELAY)))
fi

inns python3 "$ROOT/scripts/bench_remote.py" --dir "$DIR" --shared "$SHARED" \
    --nydusd "$ROOT/target/release/nydusd" --nydusctl "$ROOT/target/release/nydusctl" \
    --runs "${BENCH_RUNS:-3}" --profile "${BENCH_PROFILE:-big}" --files "${BENCH_FILES:-200}" \
    "${LATENCY[@]}"
