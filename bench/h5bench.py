#!/usr/bin/python3
"""Timed workloads that bench/run runs in a child process, one per call.

Each prints one JSON object on stdout. Times exclude interpreter start
and imports, include opening and closing files. A check that finds
wrong data exits 3 with a message on stderr.

    h5bench.py h5write FILE MIB CHUNK_KIB     chunked dataset, written chunk by chunk
    h5bench.py h5read FILE COUNT SEED         COUNT random chunk reads, checked
    h5bench.py mkmany FILE N                  N small datasets (for h5dump -H)
    h5bench.py meta DIR N [--cold] [--requests MNT]
                                              create, stat, readdir, unlink of N files
                                              (--requests: FUSE requests per file and
                                              phase, from MNT's status)
    h5bench.py fsync FILE                     time one fsync(2) of FILE
"""
import json
import os
import sys
import time

COLS = 1024  # float64 per dataset row: 8 KiB


def _chunk(c, rows):
    """Chunk c's content: cheap to make, distinct per chunk, checkable."""
    a = np.empty((rows, COLS), dtype="f8")
    a[:] = np.arange(COLS, dtype="f8")
    a[:, 0] = c
    a[-1, -1] = -c
    return a


def h5write(path, mib, chunk_kib):
    rows = max(1, chunk_kib * 1024 // (8 * COLS))
    nch = max(1, mib * 1024 * 1024 // (rows * COLS * 8))
    base = _chunk(0, rows)
    t0 = time.perf_counter()
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("data", shape=(nch * rows, COLS), dtype="f8",
                              chunks=(rows, COLS))
        for c in range(nch):
            base[:, 0] = c
            base[-1, -1] = -c
            ds[c * rows:(c + 1) * rows] = base
    secs = time.perf_counter() - t0
    nbytes = nch * rows * COLS * 8
    return {"seconds": secs, "bytes": nbytes, "chunks": nch,
            "MiB/s": nbytes / secs / 2**20}


def h5read(path, count, seed):
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    with h5py.File(path, "r", rdcc_nbytes=0) as f:
        ds = f["data"]
        rows = ds.chunks[0]
        nch = ds.shape[0] // rows
        for c in rng.integers(0, nch, size=count):
            a = ds[c * rows:(c + 1) * rows]
            if a[0, 0] != c or a[-1, -1] != -c or a[0, 1] != 1.0:
                print(f"wrong data in chunk {c} of {path}: {a[0, 0]} "
                      f"{a[-1, -1]} {a[0, 1]}", file=sys.stderr)
                sys.exit(3)
    secs = time.perf_counter() - t0
    return {"seconds": secs, "chunks": count, "chunks/s": count / secs,
            "MiB/s": count * rows * COLS * 8 / secs / 2**20}


def mkmany(path, n):
    t0 = time.perf_counter()
    with h5py.File(path, "w", libver="earliest") as f:
        per = 100
        for i in range(n):
            g = f.require_group(f"g{i // per:04d}")
            d = g.create_dataset(f"d{i:05d}", data=np.arange(16, dtype="f8")
                                 + i)
            d.attrs["index"] = i
    return {"seconds": time.perf_counter() - t0, "datasets": n}


def _drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def _requests(mnt):
    """The h5memfs mount's request counts by kind (its status)."""
    return json.loads(os.getxattr(mnt, "user.h5memfs.status"))["requests"]


def meta(d, n, cold, mnt=None):
    """Rates of each phase; with mnt (an h5memfs mount holding d), also
    res["requests"][phase]: the FUSE requests of each kind per file."""
    names = [os.path.join(d, f"f{i:06d}") for i in range(n)]
    res = {}
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC
    counts = {}
    last = _requests(mnt) if mnt else None

    def phase(name, t0):
        nonlocal last
        res[name] = n / (time.perf_counter() - t0)
        if mnt:
            now = _requests(mnt)
            counts[name] = {k: round((v - last.get(k, 0)) / n, 2)
                            for k, v in now.items()
                            if (v - last.get(k, 0)) / n >= 0.01}
            last = now

    t0 = time.perf_counter()
    for p in names:
        os.close(os.open(p, flags, 0o644))
    phase("create", t0)
    t0 = time.perf_counter()
    for p in names:
        os.stat(p)
    phase("stat", t0)
    if cold:
        _drop_caches()
        if mnt:
            last = _requests(mnt)
        t0 = time.perf_counter()
        for p in names:
            os.stat(p)
        phase("stat_cold", t0)
    best = None
    for _ in range(3):
        t0 = time.perf_counter()
        with os.scandir(d) as it:
            got = sum(1 for _ in it)
        t = time.perf_counter() - t0
        if got != n:
            print(f"readdir of {d} gave {got} entries, expected {n}",
                  file=sys.stderr)
            sys.exit(3)
        best = t if best is None else sorted([best, t])[0]
    res["readdir"] = n / best
    if mnt:  # three listings: requests of one, per entry
        now = _requests(mnt)
        counts["readdir"] = {k: round((v - last.get(k, 0)) / 3 / n, 3)
                             for k, v in now.items()
                             if (v - last.get(k, 0)) / 3 / n >= 0.001}
        last = now
    t0 = time.perf_counter()
    for p in names:
        os.unlink(p)
    phase("unlink", t0)
    left = os.listdir(d)
    if left:
        print(f"{len(left)} entries left in {d} after unlink", file=sys.stderr)
        sys.exit(3)
    if mnt:
        res["requests"] = counts
    return res


def fsync(path):
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        t0 = time.perf_counter()
        os.fsync(fd)
        secs = time.perf_counter() - t0
    finally:
        os.close(fd)
    return {"seconds": secs}


def main():
    a = sys.argv[1:]
    if not a:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    cmd = a[0]
    if cmd == "meta":
        mnt = a[a.index("--requests") + 1] if "--requests" in a else None
        r = meta(a[1], int(a[2]), "--cold" in a[3:], mnt)
    elif cmd == "fsync":
        r = fsync(a[1])
    elif cmd == "h5write":
        r = h5write(a[1], int(a[2]), int(a[3]))
    elif cmd == "h5read":
        r = h5read(a[1], int(a[2]), int(a[3]))
    elif cmd == "mkmany":
        r = mkmany(a[1], int(a[2]))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    print(json.dumps(r))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("h5write", "h5read", "mkmany"):
        import h5py
        import numpy as np
    main()
