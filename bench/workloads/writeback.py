"""Write-back of big_bytes by fsync and at unmount (ext4: cp + sync
-f); both files compared with the original in SOURCE afterwards. Also
the daemon's memory with two images.
"""
import os
import shutil
import time

from benchlib import (BENCH, MiB, BenchError, h5status, log, median, pyjson,
                      sh, memory_table)

NAME = "writeback"
ORDER = 70
ROWS = [
    ("writeback_fsync", "write-back by fsync (ext4: cp+sync)", "MiB/s",
     True, "ext4", 0.9, 0.9),
    ("writeback_unmount", "write-back at unmount (ext4: cp+sync)", "MiB/s",
     True, "ext4", 0.9, 0.9),
]


def run(b):
    big = b.big_file()
    size = os.path.getsize(big)
    mem = {}

    def wb(t):
        if t == "ext4":
            dst = os.path.join(b.ext4, "wb-copy.dat")
            if os.path.exists(dst):
                os.unlink(dst)
            sh(["sync", "-f", b.ext4], 300)
            t0 = time.perf_counter()
            sh(["cp", big, dst], 600)
            sh(["sync", "-f", b.ext4], 600)
            secs = time.perf_counter() - t0
            os.unlink(dst)
            return size / secs / MiB, {}
        srcdir = os.path.join(b.ext4, f"wb-{t}")
        shutil.rmtree(srcdir, ignore_errors=True)
        os.makedirs(srcdir)
        sh(["sync", "-f", b.ext4], 300)
        d = b.mount_h5memfs(t, None, b.variants[t], source=srcdir)
        try:
            sh(["cp", big, f"{d.mnt}/a.dat"], 600)
            fs = pyjson([os.path.join(BENCH, "h5bench.py"), "fsync",
                         f"{d.mnt}/a.dat"], 600)["seconds"]
            sh(["cp", big, f"{d.mnt}/b.dat"], 600)
            m = d.memory()
            m["image_bytes"] = 2 * size
            m["status_memory_used"] = h5status(d.mnt).get("memory_used")
            mem.setdefault(t, []).append(m)
        finally:
            us, rc = d.unmount()
        if rc != 0:
            raise BenchError(f"h5memfs exit {rc} at unmount: "
                             f"{d.log_tail()}")
        for name in ("a.dat", "b.dat"):
            p = sh(["cmp", os.path.join(srcdir, name), big], 600,
                   check=False)
            if p.returncode != 0:
                raise BenchError(f"WRONG DATA in SOURCE after "
                                 f"write-back of {name}: "
                                 f"{p.stdout.strip()}"
                                 f"{p.stderr.strip()}")
        shutil.rmtree(srcdir, ignore_errors=True)
        return None, {"fsync": size / fs / MiB,
                      "unmount": size / us / MiB}

    log(f"write-back ({size // MiB} MiB)")
    runs = {t: {"fsync": [], "unmount": [], "cp": []}
            for t in b.targets}
    dead = set()
    for _ in range(b.cfg["reps"]):
        for t in b.targets:
            if t == "tmpfs" or t in dead:
                continue
            try:
                v, ex = wb(t)
                if t == "ext4":
                    runs[t]["cp"].append(v)
                else:
                    runs[t]["fsync"].append(ex["fsync"])
                    runs[t]["unmount"].append(ex["unmount"])
            except BenchError as e:
                dead.add(t)
                b.fail("writeback", t, e)
    for t in b.targets:
        if t == "tmpfs" or t in dead:
            continue
        if t == "ext4":
            for k in ("writeback_fsync", "writeback_unmount"):
                b.record(k, t, median(runs[t]["cp"]),
                            runs=runs[t]["cp"])
        else:
            b.record("writeback_fsync", t, median(runs[t]["fsync"]),
                        runs=runs[t]["fsync"])
            b.record("writeback_unmount", t,
                        median(runs[t]["unmount"]),
                        runs=runs[t]["unmount"])
    for t, ms in mem.items():
        b.results.setdefault("memory_after_writes", {})[t] = ms[-1]


def report(b, out, summary):
    memory_table(b, out, summary, "memory_after_writes",
                 "after writing two files")
