#!/bin/bash
# Fuzzes the RAFS bootstrap reader with libFuzzer on stable Rust, seeded with
# the shared fixtures. A crash leaves its input in protocol/fuzz/artifacts/.
#
# Usage: scripts/fuzz.sh [SECONDS]   (default 60; a long run: scripts/fuzz.sh 3600)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_cargo
need_shared
secs=${1:-60}
cd "$ROOT/protocol/fuzz"

# The instrumentation cargo-fuzz would add, spelled out so no nightly toolchain
# or cargo-fuzz install is needed.
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks"
export CARGO_TARGET_DIR="$ROOT/target/fuzz"
# An explicit --target keeps RUSTFLAGS off build scripts, which must not be instrumented.
host=$(rustc -vV | sed -n 's/^host: //p')
cargo build --release --bin bootstrap --target "$host"

corpus=corpus/bootstrap
mkdir -p "$corpus" artifacts
for f in "$SHARED"/fixtures/rafs/*/bootstrap "$SHARED"/fixtures/rafs/*/layers/*.bootstrap; do
    [ -f "$f" ] && cp -f "$f" "$corpus/$(echo "$f" | sha256sum | cut -c1-16)"
done
say "fuzzing the bootstrap reader for $secs s"
"$CARGO_TARGET_DIR/$host/release/bootstrap" "$corpus" -max_total_time="$secs" -max_len=262144 \
    -rss_limit_mb=2048 -timeout=10 -artifact_prefix=artifacts/ -print_final_stats=1 2>&1 | tail -n 15
