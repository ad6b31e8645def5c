"""h5ls -r of a cold multi-GiB HDF5 file (64 datasets spread over it, each
with attributes): directly on ext4 after drop_caches, and through a fresh
h5memfs mount over it after drop_caches (the file's first open, so under
load=lazy only what h5ls reads comes from SOURCE before it answers).
Checks that both list the same objects.
"""
import os
import subprocess
import time

from benchlib import PY, WD, BenchError, drop_caches, log, sh

NAME = "lazy"
ORDER = 65
ROWS = [
    ("h5ls_cold", "h5ls -r, cold multi-GiB file", "s", False, "ext4",
     0.5, 0.5),
]

MAKE = r"""
import sys, h5py, numpy as np
n, per = 64, int(sys.argv[2]) // 64
with h5py.File(sys.argv[1], "w") as f:
    for i in range(n):
        g = f.create_group(f"g{i:02d}")
        g.attrs["index"] = i
        d = g.create_dataset("d", shape=(per // 8,), dtype="i8")
        d[:] = np.arange(per // 8, dtype="i8") + i
        d.attrs["units"] = "counts"
"""


def run(b):
    size = 2 * 2**30 if b.cfg["mode"] == "full" else 256 * 2**20
    srcdir = os.path.join(b.ext4, "lazy")
    os.makedirs(srcdir, exist_ok=True)
    f = os.path.join(srcdir, "big.h5")
    log(f"making an HDF5 file of {size >> 20} MiB")
    sh([PY, "-c", MAKE, f, str(size)], 900)
    sh(["sync", "-f", b.ext4], 300)
    want = sh(["h5ls", "-r", f], 300).stdout

    def ls(path):
        WD.touch(360)
        t0 = time.perf_counter()
        try:
            p = subprocess.run(["h5ls", "-r", path], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               timeout=300)
        except subprocess.TimeoutExpired:
            raise BenchError(f"timed out after 300s: h5ls -r {path}")
        secs = time.perf_counter() - t0
        WD.touch()
        if p.returncode != 0 or p.stdout != want:
            raise BenchError(f"h5ls -r {path}: exit {p.returncode}, "
                             f"{p.stderr[-300:]!r}")
        return secs

    def cold(t):
        if t == "tmpfs":
            raise BenchError("not measured: a cold read needs a disk")
        if t == "ext4":
            drop_caches(b.ext4)
            return ls(f)
        d = b.mount_h5memfs(t, None, b.variants[t], source=srcdir)
        try:
            drop_caches(b.ext4)
            return ls(os.path.join(d.mnt, "big.h5"))
        finally:
            s, rc = d.unmount()
            if rc != 0:
                raise BenchError(f"h5memfs exit {rc} at unmount: "
                                 f"{d.log_tail()}")

    log("h5ls -r, cold")
    b.reps("h5ls_cold", [t for t in b.targets if t != "tmpfs"], cold)
    b.results.setdefault("h5ls_cold", {})["_file_bytes"] = size
    os.unlink(f)
