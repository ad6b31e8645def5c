"""h5dump -H of a file of h5dump_n small datasets, warm; checks that it
lists them all.
"""
import os
import subprocess
import time

from benchlib import BENCH, WD, BenchError, log, pyjson, sh

NAME = "h5dump"
ORDER = 40
ROWS = [
    ("h5dump_H", "h5dump -H, many datasets", "s", False, "tmpfs", 1.0,
     0.85),
]


def run(b):
    n = b.cfg["h5dump_n"]
    master = os.path.join(b.tmpfs, "many-master.h5")
    log(f"making an HDF5 file of {n} small datasets")
    pyjson([os.path.join(BENCH, "h5bench.py"), "mkmany", master,
            str(n)], 900)
    size = os.path.getsize(master)
    for t in b.targets:
        try:
            sh(["cp", master, os.path.join(b.fresh_root(t),
                                           "many.h5")], 300)
            sh(["h5dump", "-H", os.path.join(b.root(t), "many.h5")],
               300)  # warm
        except BenchError as e:
            b.fail("h5dump_H", t, e)
    sh(["sync", "-f", b.ext4], 300)

    def dump(t):
        f = os.path.join(b.fresh_root(t), "many.h5")
        WD.touch(360)
        t0 = time.perf_counter()
        try:
            p = subprocess.run(["h5dump", "-H", f],
                               stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=300)
        except subprocess.TimeoutExpired:
            raise BenchError(f"timed out after 300s: h5dump -H {f}")
        secs = time.perf_counter() - t0
        WD.touch()
        if p.returncode != 0:
            raise BenchError(f"h5dump -H exit {p.returncode}: "
                             f"{p.stderr[-300:]!r}")
        if p.stdout.count(b"DATASET ") != n:
            raise BenchError(f"h5dump -H listed "
                             f"{p.stdout.count(b'DATASET ')} datasets, "
                             f"expected {n}")
        return secs

    log("h5dump -H")
    b.reps("h5dump_H", b.targets, dump)
    b.results.setdefault("h5dump_H", {})["_file_bytes"] = size
    for t in b.targets:
        try:
            os.unlink(os.path.join(b.root(t), "many.h5"))
        except OSError:
            pass
    os.unlink(master)
