#!/usr/bin/python3
"""A realistic HDF5 session, for timing h5memfs over a slow SOURCE.

    workflow.py setup DIR [--data-mib M] [--chunk-kib C]
    workflow.py run DIR [--chunks N] [--iters K] [--rows R] [--core]
    workflow.py check DIR --expect-rows N

`setup` writes DIR/data.h5 (one chunked float64 dataset, each element
holding its own flat index, so any read can be checked) and DIR/log.h5
(an empty PyTables table).

`run` repeats K times: open data.h5 with h5py, read N random chunks and
check them; open log.h5 with PyTables, append R rows, close both. With
--core both files are opened with the HDF5 core driver (h5py
driver="core", PyTables driver="H5FD_CORE", backing store on), so every
open loads the whole file into the process and every close of log.h5
writes it back. Prints one JSON line: {"seconds": ..., "rows": ...}.
A wrong chunk exits 3.

`check` verifies DIR/log.h5 has N rows (what a workflow wrote reached
the directory).
"""
import argparse
import json
import os
import sys
import time

import h5py
import numpy as np
import tables

COLS = 1024  # float64 per row: a row is 8 KiB


class Row(tables.IsDescription):
    it = tables.Int32Col()
    when = tables.Float64Col()
    chunk = tables.Int64Col()
    value = tables.Float64Col()
    note = tables.StringCol(16)


def setup(d, data_mib, chunk_kib):
    rows_per_chunk = max(1, chunk_kib * 1024 // (8 * COLS))
    nrows = data_mib * 1024 * 1024 // (8 * COLS)
    nrows -= nrows % rows_per_chunk
    with h5py.File(os.path.join(d, "data.h5"), "w") as f:
        ds = f.create_dataset("data", shape=(nrows, COLS), dtype="f8",
                              chunks=(rows_per_chunk, COLS))
        step = rows_per_chunk * 16
        for r in range(0, nrows, step):
            n = min(step, nrows - r)
            ds[r:r + n] = (np.arange(r * COLS, (r + n) * COLS, dtype="f8")
                           .reshape(n, COLS))
    with tables.open_file(os.path.join(d, "log.h5"), "w") as f:
        f.create_table("/", "log", Row, "workflow log",
                       expectedrows=100000)
    os.sync()


def run(d, nchunks, iters, rows, core, seed):
    rng = np.random.default_rng(seed)
    data = os.path.join(d, "data.h5")
    log = os.path.join(d, "log.h5")
    dkw = {"driver": "core", "backing_store": True} if core else {}
    tkw = ({"driver": "H5FD_CORE", "driver_core_backing_store": 1}
           if core else {})
    t0 = time.perf_counter()
    total = 0.0
    for it in range(iters):
        # No HDF5 chunk cache: every chunk read is a read of the file.
        with h5py.File(data, "r", rdcc_nbytes=0, **dkw) as f:
            ds = f["data"]
            rpc = ds.chunks[0]
            nch = ds.shape[0] // rpc
            picks = rng.integers(0, nch, size=nchunks)
            for c in picks:
                a = ds[c * rpc:(c + 1) * rpc]
                first = float(c * rpc * COLS)
                if a[0, 0] != first or a[-1, -1] != first + a.size - 1:
                    print(f"wrong data in chunk {c}: {a[0, 0]} "
                          f"{a[-1, -1]}", file=sys.stderr)
                    sys.exit(3)
                total += a[0, 1]
        with tables.open_file(log, "a", **tkw) as f:
            t = f.root.log
            r = t.row
            for i in range(rows):
                r["it"] = it
                r["when"] = time.time()
                r["chunk"] = int(picks[i % len(picks)])
                r["value"] = float(i)
                r["note"] = b"workflow"
                r.append()
            t.flush()
    secs = time.perf_counter() - t0
    with tables.open_file(log, "r") as f:
        n = f.root.log.nrows
    print(json.dumps({"seconds": secs, "rows": int(n), "sum": total}))


def check(d, expect):
    with tables.open_file(os.path.join(d, "log.h5"), "r") as f:
        n = f.root.log.nrows
    if n != expect:
        print(f"log.h5 has {n} rows, expected {expect}", file=sys.stderr)
        sys.exit(4)
    print(json.dumps({"rows": int(n)}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("cmd", choices=["setup", "run", "check"])
    p.add_argument("dir")
    p.add_argument("--data-mib", type=int, default=64)
    p.add_argument("--chunk-kib", type=int, default=64)
    p.add_argument("--chunks", type=int, default=200)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--rows", type=int, default=1000)
    p.add_argument("--core", action="store_true")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--expect-rows", type=int, default=0)
    a = p.parse_args()
    if a.cmd == "setup":
        setup(a.dir, a.data_mib, a.chunk_kib)
    elif a.cmd == "run":
        run(a.dir, a.chunks, a.iters, a.rows, a.core, a.seed)
    else:
        check(a.dir, a.expect_rows)


if __name__ == "__main__":
    main()
