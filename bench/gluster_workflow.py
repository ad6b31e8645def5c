#!/usr/bin/python3
"""A realistic HDF5 workflow on GlusterFS, four ways.

    gluster_workflow.py --dir GLUSTER_DIR [options]

GLUSTER_DIR is a directory on a GlusterFS client mount (bench/gluster_run
makes one with tests/gluster/fixture.sh). The workflow, the same for every
way: ITERS times, open data.h5 with h5py (chunk cache off) and read CHUNKS
random chunks, checking each; open log.h5 with PyTables and append ROWS
rows; close both. At the end the appended log.h5 must be durable on
GlusterFS (fsync or write-back), and it is checked from GlusterFS.

The ways:
  direct    the workflow on the GlusterFS mount itself; fsync(log.h5) at
            the end
  h5memfs   h5memfs mounted over the directory (default options), the
            workflow in the mount, then fusermount3 -u and the daemon's
            exit (its write-back to GlusterFS); mount and unmount timed
  h5memfs-daemon  the same with -o passthrough=off (only with --daemon-path)
  core      the workflow on the GlusterFS mount with HDF5's core driver
            (h5py driver="core", backing_store=True; PyTables H5FD_CORE
            with the backing store): every open reads the whole file into
            the process, every close of log.h5 writes it back; fsync at
            the end
  staging   copy data.h5 and log.h5 to a tmpfs directory (/dev/shm), the
            workflow there, copy log.h5 back and fsync it: what a careful
            job script does by hand

Each way works on its own copy of the files (written untimed before, so
GlusterFS's server caches are alike for all). The workflow runs in a new
/usr/bin/python3 process that reports its own time without the imports;
the driver adds the stage-in/mount and stage-out/unmount times. Ways run
round-robin, REPS times; the table shows medians. Prints a markdown table
and writes JSON (--out).

Hygiene: every h5memfs mount is unmounted (fusermount3 -u, then -uz; only
the daemon's PID is signalled), every subprocess has a timeout, tmpfs
copies are removed, also on SIGINT/SIGTERM.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "lib"))

from h5mount import DAEMON, Mount  # noqa: E402

PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") \
    else sys.executable

# --- the workflow, run in its own process -----------------------------------

WORK = r"""
import json, os, sys, time
import h5py, numpy as np, tables
d, nchunks, iters, rows, core, seed = (sys.argv[1], int(sys.argv[2]),
    int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1", int(sys.argv[6]))
COLS = 1024
rng = np.random.default_rng(seed)
data, log = os.path.join(d, "data.h5"), os.path.join(d, "log.h5")
dkw = {"driver": "core", "backing_store": True} if core else {}
tkw = ({"driver": "H5FD_CORE", "driver_core_backing_store": 1}
       if core else {})
t0 = time.perf_counter()
total = 0.0
for it in range(iters):
    with h5py.File(data, "r", rdcc_nbytes=0, **dkw) as f:
        ds = f["data"]
        rpc = ds.chunks[0]
        nch = ds.shape[0] // rpc
        picks = rng.integers(0, nch, size=nchunks)
        for c in picks:
            a = ds[c * rpc:(c + 1) * rpc]
            first = float(c * rpc * COLS)
            if a[0, 0] != first or a[-1, -1] != first + a.size - 1:
                print(f"wrong data in chunk {c}", file=sys.stderr)
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
if sys.argv[7] == "1":   # durable where it is: fsync log.h5
    fd = os.open(log, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
print(json.dumps({"seconds": time.perf_counter() - t0}))
"""

SETUP = r"""
import os, sys
import h5py, numpy as np, tables
d, data_mib, chunk_kib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
COLS = 1024
class Row(tables.IsDescription):
    it = tables.Int32Col()
    when = tables.Float64Col()
    chunk = tables.Int64Col()
    value = tables.Float64Col()
    note = tables.StringCol(16)
rpc = max(1, chunk_kib * 1024 // (8 * COLS))
nrows = data_mib * 1024 * 1024 // (8 * COLS)
nrows -= nrows % rpc
with h5py.File(os.path.join(d, "data.h5"), "w") as f:
    ds = f.create_dataset("data", shape=(nrows, COLS), dtype="f8",
                          chunks=(rpc, COLS))
    step = rpc * 16
    for r in range(0, nrows, step):
        n = min(step, nrows - r)
        ds[r:r + n] = (np.arange(r * COLS, (r + n) * COLS, dtype="f8")
                       .reshape(n, COLS))
with tables.open_file(os.path.join(d, "log.h5"), "w") as f:
    f.create_table("/", "log", Row, "workflow log", expectedrows=100000)
for name in ("data.h5", "log.h5"):
    fd = os.open(os.path.join(d, name), os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
"""

CHECK = r"""
import sys, tables
with tables.open_file(sys.argv[1], "r") as f:
    print(f.root.log.nrows)
"""


def run(argv, timeout):
    res = subprocess.run([str(a) for a in argv], stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        raise RuntimeError(f"{argv[:3]}... exited {res.returncode}: "
                           f"{res.stderr.strip()[-2000:]}")
    return res.stdout


def work(d, a, core=False, fsync=False):
    out = run([PY, "-c", WORK, d, a.chunks, a.iters, a.rows,
               int(core), a.seed, int(fsync)], timeout=a.timeout)
    return json.loads(out.strip().splitlines()[-1])["seconds"]


def copy_files(names, src, dst, fsync):
    for n in names:
        shutil.copyfile(src / n, dst / n)
        if fsync:
            fd = os.open(dst / n, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)


# --- the ways ----------------------------------------------------------------

def way_direct(d, a, scratch):
    return {"work": work(d, a, fsync=True)}


def way_core(d, a, scratch):
    return {"work": work(d, a, core=True, fsync=True)}


def way_staging(d, a, scratch):
    local = Path(tempfile.mkdtemp(prefix="gluster-staging-", dir=scratch))
    try:
        t0 = time.perf_counter()
        copy_files(["data.h5", "log.h5"], d, local, fsync=False)
        t_in = time.perf_counter() - t0
        w = work(local, a)
        t0 = time.perf_counter()
        copy_files(["log.h5"], local, d, fsync=True)
        t_out = time.perf_counter() - t0
    finally:
        shutil.rmtree(local, ignore_errors=True)
    return {"stage_in": t_in, "work": w, "stage_out": t_out}


def _way_h5memfs(options):
    def way(d, a, scratch):
        mp = Path(tempfile.mkdtemp(prefix="gluster-h5memfs-", dir="/tmp"))
        m = Mount(mp, d, options, workdir=mp.parent / (mp.name + ".d"))
        m.workdir.mkdir()
        try:
            t0 = time.perf_counter()
            m.start()
            t_in = time.perf_counter() - t0
            w = work(mp, a)
            t0 = time.perf_counter()
            rc = m.unmount()
            t_out = time.perf_counter() - t0
            if rc != 0:
                raise RuntimeError(f"h5memfs exited {rc}: {m.stderr()}")
            if m.stderr():
                raise RuntimeError(f"h5memfs said: {m.stderr()}")
        finally:
            if m.running():
                m.force_stop()
            shutil.rmtree(m.workdir, ignore_errors=True)
            try:
                mp.rmdir()
            except OSError:
                pass
        return {"mount": t_in, "work": w, "unmount_writeback": t_out}
    return way


WAYS = {
    "direct": way_direct,
    "h5memfs": _way_h5memfs([]),
    "h5memfs-daemon": _way_h5memfs(["passthrough=off"]),
    "core": way_core,
    "staging": way_staging,
}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dir", required=True, type=Path,
                   help="a directory on a GlusterFS client mount")
    p.add_argument("--data-mib", type=int, default=64)
    p.add_argument("--chunk-kib", type=int, default=64)
    p.add_argument("--chunks", type=int, default=200)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--rows", type=int, default=1000)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--daemon-path", action="store_true",
                   help="also measure h5memfs with -o passthrough=off")
    p.add_argument("--only", default="",
                   help="comma-separated ways (default: all)")
    p.add_argument("--timeout", type=float, default=900,
                   help="seconds allowed to one workflow run")
    p.add_argument("--out", type=Path, default=Path(
        os.environ.get("H5MEMFS_GLUSTER_STATE", "/var/tmp/h5memfs-gluster"))
        / "logs" / "gluster_workflow.json")
    a = p.parse_args()

    if not DAEMON.exists():
        sys.exit(f"h5memfs not built: {DAEMON}")
    ways = [w for w in ("direct", "h5memfs", "h5memfs-daemon", "core",
                        "staging")
            if (w != "h5memfs-daemon" or a.daemon_path)]
    if a.only:
        ways = [w for w in a.only.split(",") if w in WAYS]
    scratch = ("/dev/shm" if os.path.isdir("/dev/shm")
               else tempfile.gettempdir())

    # SIGTERM/SIGHUP end the run through the same clean-up as Ctrl-C.
    def stop(sig, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)

    root = a.dir / f"gluster-bench-{os.getpid()}"
    root.mkdir(parents=True)
    results = {w: [] for w in ways}
    errors = []
    try:
        for rep in range(a.reps):
            for w in ways:
                d = root / f"{w}-{rep}"
                d.mkdir()
                print(f"rep {rep + 1}/{a.reps}: {w}: setup", file=sys.stderr,
                      flush=True)
                run([PY, "-c", SETUP, d, a.data_mib, a.chunk_kib],
                    timeout=a.timeout)
                try:
                    parts = WAYS[w](d, a, scratch)
                    rows = int(run([PY, "-c", CHECK, d / "log.h5"],
                                   timeout=120))
                    if rows != a.iters * a.rows:
                        raise RuntimeError(f"log.h5 on GlusterFS has {rows}"
                                           f" rows, not {a.iters * a.rows}")
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    errors.append(f"{w} rep {rep + 1}: {e}")
                    print(f"  ERROR {e}", file=sys.stderr)
                    continue
                finally:
                    shutil.rmtree(d, ignore_errors=True)
                parts["total"] = sum(parts.values())
                results[w].append(parts)
                print(f"  {w}: " + ", ".join(f"{k} {v:.2f} s"
                                              for k, v in parts.items()),
                      file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        errors.append("interrupted")
    finally:
        shutil.rmtree(root, ignore_errors=True)

    med = {w: statistics.median(r["total"] for r in rs)
           for w, rs in results.items() if rs}
    print(f"\nHDF5 workflow on GlusterFS: data.h5 {a.data_mib} MiB "
          f"({a.chunk_kib} KiB chunks), {a.iters} x ({a.chunks} random "
          f"chunk reads + {a.rows} PyTables appends), median of "
          f"{a.reps}\n")
    print("| way | seconds (median) | parts (median) | direct / way "
          "| way / staging |")
    print("|---|---|---|---|---|")
    for w in ways:
        if w not in med:
            print(f"| {w} | failed | | | |")
            continue
        keys = results[w][0].keys()
        parts = ", ".join(
            f"{k} {statistics.median(r[k] for r in results[w]):.2f}"
            for k in keys if k != "total")
        sp = f"{med['direct'] / med[w]:.1f}x" if "direct" in med else ""
        st = f"{med[w] / med['staging']:.2f}" if "staging" in med else ""
        print(f"| {w} | {med[w]:.2f} | {parts} | {sp} | {st} |")
    verdict = {}
    if {"direct", "h5memfs", "staging"} <= med.keys():
        speed = med["direct"] / med["h5memfs"]
        vs = med["h5memfs"] / med["staging"]
        verdict = {"h5memfs_speedup_vs_direct": speed,
                   "h5memfs_vs_staging": vs,
                   "met_5x_direct": speed >= 5, "met_1.2x_staging": vs <= 1.2}
        print(f"\nh5memfs is {speed:.1f}x faster than direct GlusterFS "
              f"(target >= 5: {'met' if speed >= 5 else 'NOT met'}) and "
              f"takes {vs:.2f}x the time of manual staging (target <= 1.2: "
              f"{'met' if vs <= 1.2 else 'NOT met'})")
    if errors:
        print("\nErrors:\n" + "\n".join(f"- {e}" for e in errors))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({
        "params": {k: (str(v) if isinstance(v, Path) else v)
                   for k, v in vars(a).items()},
        "runs": results, "median_seconds": med, "verdict": verdict,
        "errors": errors}, indent=1) + "\n")
    return 130 if "interrupted" in errors else (1 if errors else 0)


if __name__ == "__main__":
    sys.exit(main())
