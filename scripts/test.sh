#!/bin/bash
# Installs what the tests need, builds, and runs the whole suite:
# formatting, build, clippy, unit tests, end-to-end tests (root), a short fuzz run.
#
# Usage: scripts/test.sh [STAGE...]   stages: fmt build clippy unit e2e fuzz (default: all)
# Env:   NYDUS_FUZZ_SECS (default 60)  E2E_FILTER (passed to the e2e cargo test)
set -uo pipefail
. "$(dirname "$0")/lib.sh"
cd "$ROOT"
need_cargo
need_shared

stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(fmt build clippy unit e2e fuzz)

install_deps() {
    # e2e: mktree/manifest need python3; attr for debugging xattrs; fuse3 for fusermount3.
    apt_install python3 fuse3 attr psmisc
    [ -e /dev/fuse ] || die "/dev/fuse is missing: the end-to-end tests need FUSE (modprobe fuse)"
}

passed=0 failed=0 failed_names=()
run_stage() {
    local name=$1; shift
    say "stage $name"
    local t0=$SECONDS
    if "$@"; then
        passed=$((passed + 1)); say "stage $name passed ($((SECONDS - t0)) s)"
    else
        failed=$((failed + 1)); failed_names+=("$name"); say "stage $name FAILED ($((SECONDS - t0)) s)"
    fi
}

stage_fmt() { cargo fmt --all -- --check; }
stage_build() { cargo build --workspace --all-targets --locked 2>&1 | tail -n 30; return "${PIPESTATUS[0]}"; }
stage_clippy() { cargo clippy --workspace --all-targets --locked -- -D warnings; }
stage_unit() { cargo test --locked --no-fail-fast 2>&1 | tail -n 200; return "${PIPESTATUS[0]}"; }
stage_e2e() {
    [ "$(id -u)" -eq 0 ] || { echo "e2e needs root (mounts, mknod, chown): run scripts/test.sh as root"; return 1; }
    install_deps
    NYDUSD="$ROOT/target/debug/nydusd" NYDUSCTL="$ROOT/target/debug/nydusctl" \
        cargo test --locked --no-fail-fast -p nydus-e2e ${E2E_FILTER:-} -- --test-threads=2 2>&1 | tail -n 300
    return "${PIPESTATUS[0]}"
}
stage_fuzz() { "$ROOT/scripts/fuzz.sh" "${NYDUS_FUZZ_SECS:-60}"; }

t_start=$SECONDS
for s in "${stages[@]}"; do
    case $s in
        fmt | build | clippy | unit | e2e | fuzz) run_stage "$s" "stage_$s" ;;
        *) die "unknown stage '$s' (stages: fmt build clippy unit e2e fuzz)" ;;
    esac
done
say "total $((SECONDS - t_start)) s${failed_names:+; failed: ${failed_names[*]}}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
