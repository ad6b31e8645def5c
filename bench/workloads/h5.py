"""h5py: a chunked dataset written, then random chunk reads by a new
process, warm and after drop_caches (bench/h5bench.py).
"""
import os

from benchlib import BENCH, BenchError, drop_caches, log, pyjson, sh

NAME = "h5"
ORDER = 30
ROWS = [
    ("h5_write", "h5py chunked write", "MiB/s", True, "tmpfs", 0.4, 0.85),
    ("h5_read_warm", "h5py random chunk reads, warm", "chunks/s", True,
     "tmpfs", 1.0, 0.85),
    ("h5_read_cold", "h5py random chunk reads, cold", "chunks/s", True,
     "tmpfs", None, 0.85),
]


def run(b):
    mib, ck, nr = (b.cfg["h5_mib"], b.cfg["chunk_kib"],
                   b.cfg["h5_reads"])

    def write(t):
        f = os.path.join(b.fresh_root(t), "chunked.h5")
        if os.path.exists(f):
            os.unlink(f)
        sh(["sync", "-f", b.ext4], 300)
        r = pyjson([os.path.join(BENCH, "h5bench.py"), "h5write", f,
                    str(mib), str(ck)], 900)
        sh(["sync", "-f", b.ext4], 300)
        return r["MiB/s"]

    log(f"h5py chunked write ({mib} MiB, {ck} KiB chunks)")
    b.reps("h5_write", b.targets, write)
    seed = [0]

    def read(t, cold):
        f = os.path.join(b.fresh_root(t), "chunked.h5")
        if cold:
            drop_caches(b.ext4)
        seed[0] += 1
        r = pyjson([os.path.join(BENCH, "h5bench.py"), "h5read", f,
                    str(nr), str(seed[0])], 900)
        return r["chunks/s"]

    for t in b.targets:  # warm
        try:
            read(t, False)
        except BenchError as e:
            b.fail("h5_read_warm", t, e)
    log(f"h5py random chunk reads ({nr}, warm)")
    b.reps("h5_read_warm", b.targets, lambda t: read(t, False))
    log(f"h5py random chunk reads ({nr}, cold)")
    b.reps("h5_read_cold", b.targets, lambda t: read(t, True))
    for t in b.targets:
        try:
            os.unlink(os.path.join(b.root(t), "chunked.h5"))
        except OSError:
            pass
