"""Load on first open: cat of a big_bytes file just after mounting
h5memfs over a SOURCE holding it (after drop_caches); ext4: the same
cat after drop_caches. Also the daemon's memory with that one image,
and what any load into memory costs besides the disk: the same file,
cached, copied by cat into a tmpfs file.
"""
import os
import shutil

from benchlib import (MiB, BenchError, drop_caches, h5status, log, median,
                      sh, timed, memory_table)

NAME = "load"
ORDER = 60
ROWS = [
    ("load_first_open", "load on first open (cat)", "MiB/s", True, "ext4",
     0.9, 0.9),
]


def run(b):
    big = b.big_file()
    size = os.path.getsize(big)
    srcdir = os.path.join(b.ext4, "load")
    os.makedirs(srcdir, exist_ok=True)
    sh(["cp", big, os.path.join(srcdir, "big.dat")], 600)
    sh(["sync", "-f", b.ext4], 300)
    mem = {}
    bound = {"cat": [], "into_tmpfs": []}
    copy = os.path.join(b.tmpfs, "load-copy.dat")

    def cat(t):
        if t == "ext4":
            drop_caches(b.ext4)
            secs = timed(["sh", "-c", f"cat {srcdir}/big.dat "
                          ">/dev/null"], 600)
            # now cached: the copy into memory alone, without the disk
            into = timed(["sh", "-c", f"cat {srcdir}/big.dat >{copy}"],
                         600)
            os.unlink(copy)
            bound["cat"].append(size / secs / MiB)
            bound["into_tmpfs"].append(size / into / MiB)
            return size / secs / MiB
        if t == "tmpfs":
            secs = timed(["sh", "-c", f"cat {big} >/dev/null"], 600)
            return size / secs / MiB
        drop_caches(b.ext4)
        d = b.mount_h5memfs(t, None, b.variants[t], source=srcdir)
        try:
            secs = timed(["sh", "-c", f"cat {d.mnt}/big.dat "
                          ">/dev/null"], 600)
            m = d.memory()
            m["image_bytes"] = size
            m["status_memory_used"] = h5status(d.mnt).get("memory_used")
            mem.setdefault(t, []).append(m)
            # Same bytes as the SOURCE? (cmp reads the loaded image)
            p = sh(["cmp", f"{d.mnt}/big.dat", big], 600, check=False)
            if p.returncode != 0:
                raise BenchError(f"WRONG DATA after load: "
                                 f"{p.stdout.strip()} "
                                 f"{p.stderr.strip()}")
        finally:
            s, rc = d.unmount()
            if rc != 0:
                raise BenchError(f"h5memfs exit {rc} at unmount: "
                                 f"{d.log_tail()}")
        return size / secs / MiB, {"clean_unmount_s": s}

    log(f"load on first open ({size // MiB} MiB)")
    b.reps("load_first_open", b.targets, cat)
    for t, ms in mem.items():
        b.results.setdefault("memory_after_load", {})[t] = ms[-1]
    if bound["cat"]:
        b.results["load_bound"] = {k: median(v) for k, v in bound.items()}
    shutil.rmtree(srcdir, ignore_errors=True)


def report(b, out, summary):
    lb = b.results.get("load_bound")
    if lb:
        out.append(f"A load into memory is bounded by the disk (cold cat "
                   f"to /dev/null on ext4: {lb['cat']:,.0f} MiB/s) and by "
                   f"the copy into memory (cat of the same file, cached, "
                   f"into a tmpfs file: {lb['into_tmpfs']:,.0f} MiB/s).\n")
    memory_table(b, out, summary, "memory_after_load",
                 "after loading one file")
