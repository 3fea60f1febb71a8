#!/bin/bash
# From a fresh Debian 12 machine to a mounted image: installs what is missing,
# builds, makes an image of a sample tree, inspects and checks it, mounts it
# with nydusd and shows it, then unmounts.
#
# Usage: scripts/quickstart.sh [SOURCE_DIR]   (default: a copy of /usr/share/doc)
# Env:   KEEP_MOUNTED=1 leaves the mount up (prints how to stop it).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$ROOT"
need_cargo
apt_install python3 fuse3

say "building (debug)"
cargo build --workspace --quiet
NYDUSCTL=$ROOT/target/debug/nydusctl
NYDUSD=$ROOT/target/debug/nydusd

work=${QUICKSTART_DIR:-/tmp/nydus-quickstart}
rm -rf "$work" && mkdir -p "$work/blobs" "$work/mnt" "$work/cache"
src=${1:-}
if [ -z "$src" ]; then
    src=$work/src
    say "making a sample tree in $src"
    mkdir -p "$src"
    cp -a /usr/share/doc/. "$src/" 2>/dev/null || true
    ln -sf README "$src/link-to-readme"
    printf 'hello from nydus\n' >"$src/README"
fi

say "nydusctl image create --bootstrap $work/bootstrap --blob-dir $work/blobs $src"
"$NYDUSCTL" image create --bootstrap "$work/bootstrap" --blob-dir "$work/blobs" "$src"

say "nydusctl image inspect (first lines)"
"$NYDUSCTL" image inspect "$work/bootstrap" | sed -n 1,20p

say "nydusctl image check"
"$NYDUSCTL" image check "$work/bootstrap" --blob-dir "$work/blobs"

cat >"$work/config.json" <<JSON
{
  "device": {
    "backend": { "type": "localfs", "config": { "dir": "$work/blobs" } },
    "cache": { "type": "blobcache", "config": { "work_dir": "$work/cache" } }
  },
  "mode": "direct",
  "digest_validate": false,
  "iostats_files": false
}
JSON

say "nydusd --config $work/config.json --mountpoint $work/mnt --bootstrap $work/bootstrap --apisock $work/api.sock"
"$NYDUSD" --config "$work/config.json" --mountpoint "$work/mnt" --bootstrap "$work/bootstrap" \
    --apisock "$work/api.sock" --log-level warn >"$work/nydusd.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
    mountpoint -q "$work/mnt" && break
    kill -0 "$pid" 2>/dev/null || { cat "$work/nydusd.log"; die "nydusd exited before mounting"; }
    sleep 0.1
done
mountpoint -q "$work/mnt" || die "nydusd did not mount within 10 s (log: $work/nydusd.log)"

say "the mounted image"
# sed reads the whole listing: head would leave ls to die of SIGPIPE (pipefail).
ls -la "$work/mnt" | sed -n 1,15p
echo "README: $(cat "$work/mnt/README")"
echo "files: $(find "$work/mnt" -type f | wc -l), bytes: $(du -sb --apparent-size "$work/mnt" | cut -f1)"
# --no-dereference: /usr/share/doc has dangling symlinks; compare the links themselves.
diff -r --no-dereference "$src" "$work/mnt" >/dev/null 2>&1 || die "the mount differs from $src"
say "the mount matches the source tree byte for byte"

say "the same image through the supervisor (scripts/systemd/nydus-supervisor.service runs it as a service)"
sup=$work/supervisor.sock
"$NYDUSCTL" supervise --sock "$sup" --state-dir "$work/state" --nydusd "$NYDUSD" >"$work/supervisor.log" 2>&1 &
sup_pid=$!
for _ in $(seq 100); do [ -S "$sup" ] && break; sleep 0.1; done
export NYDUS_SUPERVISOR_SOCK=$sup
mkdir -p "$work/mnt2"
id=$("$NYDUSCTL" mount --bootstrap "$work/bootstrap" --config "$work/config.json" "$work/mnt2")
"$NYDUSCTL" list
say "upgrade (new worker first, no unmount), then kill -9 the worker: the mount keeps serving"
"$NYDUSCTL" upgrade "$id"
kill -9 "$("$NYDUSCTL" list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["pid"])')"
echo "README after kill -9: $(cat "$work/mnt2/README")"
"$NYDUSCTL" list
"$NYDUSCTL" umount "$id"
kill "$sup_pid" && wait "$sup_pid" 2>/dev/null || true

if [ "${KEEP_MOUNTED:-0}" = 1 ]; then
    say "left mounted at $work/mnt; stop with: kill $pid"
else
    kill -TERM "$pid" && wait "$pid" || true
    mountpoint -q "$work/mnt" && die "still mounted after SIGTERM"
    say "unmounted; done"
fi
