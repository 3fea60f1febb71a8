#!/usr/bin/env python3
"""Mount benchmarks for scripts/bench.sh: nydusd vs the kernel's EROFS vs
squashfuse vs the native tree, side by side in one run, medians of N runs.
bindfs, a plain FUSE passthrough of the native tree, shows what the FUSE
transport alone costs on this machine: no image, no decompression, no cache.

Cold figures need caches dropped and a fresh mount, so the targets take
turns, one figure at a time. Warm figures have no such need: all targets are
mounted at once and their walks and reads alternate. Either way the two
sides of a ratio are measured close together, so a noisy neighbour slows
both alike rather than whichever happened to coincide with it.

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
        self.peak_rss = None
        self.mnt = os.path.join(args.dir, "mnt-" + name)
        os.makedirs(self.mnt, exist_ok=True)

    def path(self):
        return self.args.tree if self.name == "native" else self.mnt

    def prepare(self):
        """Work that is not the daemon's start: an empty blob cache (the
        last run's can hold hundreds of MiB to delete) and the config."""
        a = self.args
        if not self.name.startswith("nydusd"):
            return
        cache = os.path.join(a.dir, "cache-" + self.name)
        sh(f"rm -rf {cache} && mkdir -p {cache}")
        with open(os.path.join(a.dir, self.name + ".json"), "w") as f:
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
        elif self.name == "bindfs":
            sh(f"bindfs --multithreaded -o ro {a.tree} {self.mnt}")
            # The readahead window nydusd gives its own mount (the kernel's
            # default for FUSE is 128 KiB), so the two differ only in the daemon.
            dev = os.stat(self.mnt).st_dev
            with open(f"/sys/class/bdi/{os.major(dev)}:{os.minor(dev)}/read_ahead_kb", "w") as f:
                f.write("1024\n")
        elif self.name.startswith("nydusd"):
            cfg = os.path.join(a.dir, self.name + ".json")
            # nydusd-api: as nydus-snapshotter starts it, with an API socket.
            api = ["--apisock", f"{a.dir}/{self.name}.sock"] if self.name == "nydusd-api" else []
            self.proc = subprocess.Popen([a.nydusd, "--config", cfg, "--mountpoint", self.mnt, "--bootstrap",
                                          f"{a.dir}/nydus/bootstrap", "--log-level", "warn"] + api,
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

    def sample_peak_rss(self):
        """Keeps the largest VmHWM of any daemon this target ran."""
        if not self.proc:
            return
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    mib = int(line.split()[1]) / 1024
                    self.peak_rss = max(self.peak_rss or 0, mib)

    def umount(self):
        if self.name == "native":
            return
        if self.proc:
            self.sample_peak_rss()
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


WALK = "find . -printf '%s %T@\\n' > /dev/null"
TAR = "tar -cf - . | wc -c > /dev/null"
WARM_ROUNDS = 3


def cold_figures(targets, probe, big_file):
    """Each cold figure for every target in turn before the next figure, so
    the two sides of a ratio are taken seconds apart, not minutes."""
    r = {t.name: {} for t in targets}
    for t in targets:
        drop_caches()
        r[t.name]["start to first stat (s)"] = t.first_stat(probe) if t.name != "native" else None
        r[t.name]["stat walk cold (s)"] = timed(WALK, cwd=t.path())
        t.umount()
    big = lambda t: os.path.join(t.path(), big_file)
    on_fresh_mount = (("tree read cold (s)", lambda t: timed(TAR, cwd=t.path())),
                      ("fio seq 1M cold (s)", lambda t: fio(big(t), "read", "1M")),
                      ("fio rand 4k cold (s)", lambda t: fio(big(t), "randread", "4k")))
    for key, measure in on_fresh_mount:
        for t in targets:
            drop_caches()
            t.mount()
            r[t.name][key] = measure(t)
            t.umount()
    # Start again with the program and image in the page cache, as when a
    # node starts its next container: what is left is the daemon's own work.
    # A start just before the timed one puts them there (the other targets'
    # figures dropped the caches since this target's last start).
    for t in targets:
        if t.name == "native":
            r[t.name]["start, binary cached (s)"] = None
            continue
        t.first_stat(probe)
        t.umount()
        r[t.name]["start, binary cached (s)"] = t.first_stat(probe)
        t.umount()
    return r


def warm_run(targets):
    """Every target mounted at once, warmed by one walk and one read, then
    WARM_ROUNDS rounds of each target in turn; medians of the rounds."""
    drop_caches()
    for t in targets:
        t.mount()
    samples = {t.name: {"stat walk warm (s)": [], "tree read warm (s)": []} for t in targets}
    for cmd, key in ((WALK, "stat walk warm (s)"), (TAR, "tree read warm (s)")):
        for t in targets:
            timed(cmd, cwd=t.path())
        for _ in range(WARM_ROUNDS):
            for t in targets:
                samples[t.name][key].append(timed(cmd, cwd=t.path()))
    for t in targets:
        t.umount()
    return {name: {k: statistics.median(v) for k, v in s.items()} for name, s in samples.items()}


def one_run(targets, probe, big_file):
    results = cold_figures(targets, probe, big_file)
    for name, r in warm_run(targets).items():
        results[name].update(r)
    for t in targets:
        results[t.name]["peak RSS (MiB)"] = t.peak_rss
        t.peak_rss = None
    return results


def main():
    p = argparse.ArgumentParser()
    for k in ("--tree", "--dir", "--nydusd", "--nydusctl"):
        p.add_argument(k, required=True)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--targets", default="native,nydusd,erofs,squashfuse,bindfs")
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
        for name, r in one_run(targets, probe, big_file).items():
            results[name].append(r)
        print(f"run {i + 1}/{a.runs} done", flush=True)
    order = ["start to first stat (s)", "stat walk cold (s)", "stat walk warm (s)", "tree read cold (s)",
             "tree read warm (s)", "fio seq 1M cold (s)", "fio rand 4k cold (s)", "peak RSS (MiB)",
             "start, binary cached (s)"]
    metrics = [m for m in order if m in results["native"][0]]
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
