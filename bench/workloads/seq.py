"""Sequential write and read with dd: a new file of seq_bytes written
with 1M and 4K blocks, read back warm with both, and read with 1M
after drop_caches.
"""
import os

from benchlib import MiB, BenchError, drop_caches, log, sh, timed

NAME = "seq"
ORDER = 10
ROWS = [
    ("seq_write_1M", "sequential write, 1M blocks", "MiB/s", True, "tmpfs",
     0.4, 0.85),
    ("seq_write_4K", "sequential write, 4K blocks", "MiB/s", True, "tmpfs",
     0.4, 0.85),
    ("seq_read_1M", "sequential read, 1M blocks, warm", "MiB/s", True,
     "tmpfs", 1.0, 0.85),
    ("seq_read_4K", "sequential read, 4K blocks, warm", "MiB/s", True,
     "tmpfs", 1.0, 0.85),
    ("seq_read_1M_cold", "sequential read, 1M, cold", "MiB/s", True,
     "tmpfs", None, 0.85),
]


def run(b):
    size = b.cfg["seq_bytes"]
    for bs, bsn in ((1 << 20, "1M"), (4096, "4K")):
        count = size // bs

        def write(t, bs=bs, count=count):
            f = os.path.join(b.fresh_root(t), "seq.dat")
            if os.path.exists(f):
                os.unlink(f)
            sh(["sync", "-f", b.ext4], 300)
            secs = timed(["dd", "if=/dev/zero", f"of={f}", f"bs={bs}",
                          f"count={count}", "status=none"], 600)
            sh(["sync", "-f", b.ext4], 300)
            return size / secs / MiB

        log(f"sequential write {bsn}")
        b.reps(f"seq_write_{bsn}", b.targets, write)

    def read(t, bs):
        f = os.path.join(b.fresh_root(t), "seq.dat")
        secs = timed(["dd", f"if={f}", "of=/dev/null", f"bs={bs}",
                      "status=none"], 600)
        return size / secs / MiB

    for t in b.targets:  # warm every cache once
        try:
            read(t, 1 << 20)
        except BenchError as e:
            b.fail("seq_read_1M", t, e)
    for bs, bsn in ((1 << 20, "1M"), (4096, "4K")):
        log(f"sequential read {bsn} (warm)")
        b.reps(f"seq_read_{bsn}", b.targets,
                  lambda t, bs=bs: read(t, bs))

    def cold(t):
        drop_caches(b.ext4)
        return read(t, 1 << 20)

    log("sequential read 1M (cold)")
    b.reps("seq_read_1M_cold", b.targets, cold)
