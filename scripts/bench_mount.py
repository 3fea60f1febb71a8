#!/usr/bin/env python3
"""Mount benchmarks for scripts/bench.sh: nydusd vs the kernel's EROFS vs
squashfuse vs the native tree, side by side in one run, medians of N runs.

Usage: bench_mount.py --tree TREE --dir WORKDIR --nydusd BIN --nydusctl BIN [--runs N]
"""

import argparse
import json
import os
import statistics
import subprocess
import time


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, check=True, **kw)


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def timed(cmd, cwd=None):
    t0 = time.perf_counter()
    subprocess.run(cmd, shell=True, check=True, cwd=cwd, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def is_mounted(path):
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


class Target:
    """A way of presenting TREE at a directory: mount(), umount(), pid for RSS."""

    def __init__(self, name, args):
        self.name, self.args, self.proc = name, args, None
        self.mnt = os.path.join(args.dir, "mnt-" + name)
        os.makedirs(self.mnt, exist_ok=True)

    def path(self):
        return self.args.tree if self.name == "native" else self.mnt

    def prepare(self):
        """Work that is not the daemon's start: an empty blob cache (the
        last run's can hold hundreds of MiB to delete) and the config."""
        a = self.args
        if self.name != "nydusd":
            return
        cache = os.path.join(a.dir, "cache")
        sh(f"rm -rf {cache} && mkdir -p {cache}")
        with open(os.path.join(a.dir, "nydusd.json"), "w") as f:
            json.dump({"device": {"backend": {"type": "localfs", "config": {"dir": f"{a.dir}/nydus/blobs"}},
                                  "cache": {"type": "blobcache", "config": {"work_dir": cache}}},
                       "mode": "direct", "digest_validate": False}, f)
        self.prepared = True

    def mount(self):
        a = self.args
        if self.name == "native":
            return
        if not getattr(self, "prepared", False):
            self.prepare()
        self.prepared = False
        if self.name == "erofs":
            sh(f"mount -t erofs -o ro,loop {a.dir}/tree.erofs {self.mnt}")
        elif self.name == "squashfuse":
            sh(f"squashfuse {a.dir}/tree.sqfs {self.mnt}")
        elif self.name == "nydusd":
            cfg = os.path.join(a.dir, "nydusd.json")
            self.proc = subprocess.Popen([a.nydusd, "--config", cfg, "--mountpoint", self.mnt, "--bootstrap",
                                          f"{a.dir}/nydus/bootstrap", "--log-level", "warn"],
                                         stdout=subprocess.DEVNULL, stderr=open(f"{a.dir}/nydusd.log", "a"))
        deadline = time.time() + 20
        while not is_mounted(self.mnt):
            if time.time() > deadline or (self.proc and self.proc.poll() is not None):
                raise SystemExit(f"{self.name} did not mount at {self.mnt}")
            time.sleep(0.0005)

    def first_stat(self, probe):
        """Seconds from starting the mount to the first successful stat of probe."""
        self.prepare()
        t0 = time.perf_counter()
        self.mount()
        while True:
            try:
                os.lstat(os.path.join(self.path(), probe))
                return time.perf_counter() - t0
            except OSError:
                time.sleep(0.0002)

    def peak_rss_mib(self):
        if not self.proc:
            return None
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return None

    def umount(self):
        if self.name == "native":
            return
        if self.proc:
            self.proc.terminate()
            self.proc.wait(timeout=20)
            self.proc = None
        if is_mounted(self.mnt):
            sh(f"umount -l {self.mnt}")


def fio(path, rw, bs):
    out = subprocess.run(["fio", "--name=b", f"--filename={path}", f"--rw={rw}", f"--bs={bs}", "--size=64M",
                          "--readonly", "--ioengine=psync", "--output-format=json"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out[out.index("{"):])["jobs"][0]["read"]["runtime"] / 1000.0


def one_run(t, probe, big_file):
    r = {}
    drop_caches()
    r["start to first stat (s)"] = t.first_stat(probe) if t.name != "native" else None
    walk = "find . -printf '%s %T@\\n' > /dev/null"
    tar = "tar -cf - . | wc -c > /dev/null"
    r["stat walk cold (s)"] = timed(walk, cwd=t.path())
    r["stat walk warm (s)"] = timed(walk, cwd=t.path())
    t.umount(); drop_caches(); t.mount()
    r["tree read cold (s)"] = timed(tar, cwd=t.path())
    r["tree read warm (s)"] = timed(tar, cwd=t.path())
    t.umount(); drop_caches(); t.mount()
    r["fio seq 1M cold (s)"] = fio(os.path.join(t.path(), big_file), "read", "1M")
    t.umount(); drop_caches(); t.mount()
    r["fio rand 4k cold (s)"] = fio(os.path.join(t.path(), big_file), "randread", "4k")
    r["peak RSS (MiB)"] = t.peak_rss_mib()
    t.umount()
    # Start again with the program and image in the page cache, as when a
    # node starts its next container: what is left is the daemon's own work.
    if t.name != "native":
        r["start, binary cached (s)"] = t.first_stat(probe)
        t.umount()
    else:
        r["start, binary cached (s)"] = None
    return r


def main():
    p = argparse.ArgumentParser()
    for k in ("--tree", "--dir", "--nydusd", "--nydusctl"):
        p.add_argument(k, required=True)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--targets", default="native,nydusd,erofs,squashfuse")
    a = p.parse_args()
    if not os.path.exists(f"{a.dir}/nydus/bootstrap"):
        sh(f"rm -rf {a.dir}/nydus && mkdir -p {a.dir}/nydus/blobs && {a.nydusctl} image create "
           f"--bootstrap {a.dir}/nydus/bootstrap --blob-dir {a.dir}/nydus/blobs {a.tree} > /dev/null")
    if "erofs" in a.targets and not os.path.exists(f"{a.dir}/tree.erofs"):
        sh(f"mkfs.erofs {a.dir}/tree.erofs {a.tree} > /dev/null 2>&1")
    if "squashfuse" in a.targets and not os.path.exists(f"{a.dir}/tree.sqfs"):
        sh(f"mksquashfs {a.tree} {a.dir}/tree.sqfs -comp zstd -noappend -quiet")
    big_file, probe = None, None
    for root, _, files in os.walk(a.tree):
        for n in sorted(files):
            full = os.path.join(root, n)
            if os.path.islink(full):
                continue
            probe = probe or os.path.relpath(full, a.tree)
            if big_file is None and os.path.getsize(full) >= 64 << 20:
                big_file = os.path.relpath(full, a.tree)
    if big_file is None:
        raise SystemExit(f"no file of at least 64 MiB in {a.tree}")
    targets = [Target(n, a) for n in a.targets.split(",")]
    results = {t.name: [] for t in targets}
    for i in range(a.runs):
        for t in targets:
            results[t.name].append(one_run(t, probe, big_file))
        print(f"run {i + 1}/{a.runs} done", flush=True)
    metrics = list(results["native"][0].keys())
    names = [t.name for t in targets]
    print(f"\n{'metric (median of %d)' % a.runs:<28}" + "".join(f"{n:>22}" for n in names))
    for m in metrics:
        row = f"{m:<28}"
        base = statistics.median([r[m] for r in results["native"] if r[m] is not None] or [0])
        for n in names:
            vals = [r[m] for r in results[n] if r[m] is not None]
            if not vals:
                row += f"{'-':>22}"
                continue
            v = statistics.median(vals)
            ratio = f" ({v / base:.2f}x)" if base and "RSS" not in m and "start" not in m else ""
            row += f"{v:>14.4f}{ratio:>8}"
        print(row)


if __name__ == "__main__":
    main()
