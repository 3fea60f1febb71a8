#!/usr/bin/env python3
"""Remote benchmark for scripts/bench.sh remote (run inside the namespace
bench_remote.sh made): the time to read a container's start-up file set
cold from an S3 object store over a slow loopback, with and without
prefetch, and the bytes fetched per byte read; the same read of the native
tree for the ratio. Medians of N runs.

The start-up set is fixed by the seed: N-1 small files and one large file
of the mktree tree, read in that order. It is also the image's prefetch
table (nydusctl image create --prefetch-files), which the prefetch run
enables with fs_prefetch (prefetch_all off).
"""

import argparse
import json
import os
import random
import statistics
import subprocess
import time
import urllib.request

BUCKET, PREFIX, REGION = "bench", "blobs/", "us-east-1"
AK, SK = "benchak", "benchsk-not-secret"
PORT = 19000  # the namespace is ours alone: any port is free


def sh(*cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def is_mounted(path):
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def store(path, method="GET"):
    req = urllib.request.Request(f"http://127.0.0.1:{PORT}{path}", method=method)
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read()


# The store counts its own /__stats replies in bytes_out: subtract them.
_stats_overhead = 0


def stats():
    """(object bytes sent since the last reset, object GETs)."""
    global _stats_overhead
    body = store("/__stats")
    s = json.loads(body)
    out = s["bytes_out"] - _stats_overhead
    _stats_overhead += len(body)
    return out, sum(s["object_gets"].values())


def reset_stats():
    global _stats_overhead
    store("/__reset", "POST")
    _stats_overhead = 0


def bytes_out():
    return stats()[0]


def startup_set(tree, n, seed):
    """(relative paths, total bytes): n-1 small files and one large one."""
    small, large = [], []
    for root, dirs, files in os.walk(tree):
        dirs.sort()
        for name in sorted(files):
            p = os.path.join(root, name)
            if os.path.islink(p) or not os.path.isfile(p):
                continue
            size = os.path.getsize(p)
            rel = os.path.relpath(p, tree)
            if 0 < size <= 64 << 10:
                small.append((rel, size))
            elif size >= 16 << 20:
                large.append((rel, size))
    if len(small) < n - 1 or not large:
        raise SystemExit(f"{tree}: too few files for a start-up set of {n}")
    rng = random.Random(seed)
    chosen = rng.sample(small, n - 1)
    chosen.insert(rng.randrange(n), rng.choice(large))
    return [r for r, _ in chosen], sum(s for _, s in chosen)


def read_set(base, files):
    t0 = time.perf_counter()
    for rel in files:
        with open(os.path.join(base, rel), "rb", buffering=0) as f:
            while f.read(1 << 20):
                pass
    return time.perf_counter() - t0


class Daemon:
    def __init__(self, a, prefetch):
        self.a, self.prefetch = a, prefetch
        self.mnt = os.path.join(a.dir, "mnt-remote")
        os.makedirs(self.mnt, exist_ok=True)

    def start(self):
        a = self.a
        cache = os.path.join(a.dir, "cache")
        subprocess.run(["rm", "-rf", cache], check=True)
        os.makedirs(cache)
        cfg = {
            "device": {
                "backend": {"type": "s3", "config": {
                    "scheme": "http", "endpoint": f"127.0.0.1:{PORT}", "region": REGION,
                    "bucket_name": BUCKET, "object_prefix": PREFIX,
                    "access_key_id": AK, "access_key_secret": SK, "timeout": 30}},
                "cache": {"type": "blobcache", "config": {"work_dir": cache}},
            },
            "mode": "direct", "digest_validate": False,
            "fs_prefetch": {"enable": self.prefetch, "prefetch_all": False, "threads_count": 4},
        }
        path = os.path.join(a.dir, "nydusd.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [a.nydusd, "--config", path, "--mountpoint", self.mnt, "--bootstrap",
             os.path.join(a.dir, "image/bootstrap"), "--log-level", "warn"],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(a.dir, "nydusd.log"), "a"))
        deadline = time.time() + 30
        while not is_mounted(self.mnt):
            if time.time() > deadline or self.proc.poll() is not None:
                raise SystemExit(f"nydusd did not mount {self.mnt}; see {a.dir}/nydusd.log")
            time.sleep(0.001)
        return time.perf_counter() - t0

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=20)
        if is_mounted(self.mnt):
            sh("umount", "-l", self.mnt)


def settle():
    """Object bytes sent once no GET came for a second (prefetch may still run)."""
    last = stats()
    while True:
        time.sleep(1.0)
        now = stats()
        if now[1] == last[1]:
            return now[0]
        last = now


def prepare(a):
    tree = os.path.join(a.dir, f"tree-{a.profile}")
    if not os.path.exists(os.path.join(tree, ".done")):
        print(f"making the {a.profile} tree in {tree}", flush=True)
        subprocess.run(["rm", "-rf", tree], check=True)
        sh("python3", os.path.join(a.shared, "scripts/mktree.py"), "--seed", "20240601", a.profile, tree)
        open(os.path.join(tree, ".done"), "w").close()
    files, total = startup_set(tree, a.files, a.seed)
    listing = "".join(f"/{r}\n" for r in files)
    image = os.path.join(a.dir, "image")
    list_path = os.path.join(a.dir, "startup.list")
    old = open(list_path).read() if os.path.exists(list_path) else None
    if old != listing or not os.path.exists(os.path.join(image, "bootstrap")):
        print(f"imaging {tree} with a prefetch table of {len(files)} files", flush=True)
        with open(list_path, "w") as f:
            f.write(listing)
        subprocess.run(["rm", "-rf", image], check=True)
        os.makedirs(os.path.join(image, "blobs"))
        sh(a.nydusctl, "image", "create", "--bootstrap", os.path.join(image, "bootstrap"),
           "--blob-dir", os.path.join(image, "blobs"), "--prefetch-files", list_path, tree)
    return tree, files, total


def start_store(a):
    sdir = os.path.join(a.dir, "store")
    data = os.path.join(sdir, "data", BUCKET, PREFIX)
    subprocess.run(["rm", "-rf", sdir], check=True)
    os.makedirs(data)
    blobs = os.path.join(a.dir, "image/blobs")
    for name in os.listdir(blobs):
        os.link(os.path.join(blobs, name), os.path.join(data, name))
    sh(os.path.join(a.shared, "scripts/object-store-server"), "start", "--port", str(PORT), "--dir", sdir,
       "--access-key", AK, "--secret-key", SK, "--region", REGION, "--quiet")
    return sdir


def main():
    p = argparse.ArgumentParser()
    for k in ("--dir", "--shared", "--nydusd", "--nydusctl"):
        p.add_argument(k, required=True)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--profile", default="big")
    p.add_argument("--files", type=int, default=200)
    p.add_argument("--seed", type=int, default=4242)
    p.add_argument("--delay-ms", type=int, default=10)
    p.add_argument("--server-latency-ms", type=int, default=0,
                   help="no netem: the object store sleeps this long before every request")
    a = p.parse_args()
    tree, files, total = prepare(a)
    sdir = start_store(a)
    if a.server_latency_ms:
        store(f"/__faults?latency_ms={a.server_latency_ms}", "POST")
    try:
        rows = {k: [] for k in ("native", "nydusd", "nydusd+prefetch")}
        for i in range(a.runs):
            drop_caches()
            rows["native"].append({"read": read_set(tree, files)})
            for name, pf in (("nydusd", False), ("nydusd+prefetch", True)):
                d = Daemon(a, pf)
                drop_caches()
                reset_stats()
                mount = d.start()
                read = read_set(d.mnt, files)
                at_read = bytes_out()
                total_out = settle()
                d.stop()
                rows[name].append({"mount": mount, "read": read, "at_read": at_read, "total": total_out})
            print(f"run {i + 1}: " + ", ".join(f"{k} {v[-1]['read']:.3f} s" for k, v in rows.items()), flush=True)
    finally:
        sh(os.path.join(a.shared, "scripts/object-store-server"), "stop", "--dir", sdir)

    med = lambda name, key: statistics.median(r[key] for r in rows[name])  # noqa: E731
    native = med("native", "read")
    print(f"\nstart-up set: {len(files)} files, {total / 2**20:.1f} MiB (seed {a.seed}), " +
          (f"object store +{a.server_latency_ms} ms per request (no netem)" if a.server_latency_ms
           else f"loopback +{a.delay_ms} ms each way (netem)") + f", medians of {a.runs}")
    print(f"{'':18} {'mount s':>8} {'read s':>8} {'x native':>9} {'MiB fetched':>12} {'fetched/read':>13} {'after settle':>13}")
    print(f"{'native tree':18} {'':>8} {native:8.3f} {1.0:9.1f}")
    for name in ("nydusd", "nydusd+prefetch"):
        r = med(name, "read")
        print(f"{name:18} {med(name, 'mount'):8.3f} {r:8.3f} {r / native:9.1f} "
              f"{med(name, 'at_read') / 2**20:12.1f} {med(name, 'at_read') / total:13.2f} "
              f"{med(name, 'total') / total:13.2f}")


if __name__ == "__main__":
    main()
