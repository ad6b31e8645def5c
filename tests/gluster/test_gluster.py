"""h5memfs over a shared filesystem on GlusterFS: one
volume mounted twice on this machine stands for two nodes, A and B, each
with its own h5memfs over the same directory.

What must hold:
- a write-back on A is seen on B at B's next open of a clean image, once
  GlusterFS's attribute cache (about 1 s) has expired: new bytes, new size;
- conflicting edits never silently overwrite each other: one version wins,
  the other is kept as STEM.conflict-HOST-YYYYmmdd-HHMMSS.EXT, and both
  `h5memfs status --json` and the daemon's log say so;
- HDF5 files written on A (h5py, PyTables) open and validate on B;
- h5memfs-scratch stages a job in from, and out to, a GlusterFS directory.
"""

import errno
import hashlib
import os
import re
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import record, track, wait_for
from h5mount import DAEMON, SCRATCH, SLOWDOWN, mounted, run

PY = sys.executable
CONFLICT_RE = r"\.conflict-{host}-\d{{8}}-\d{{6}}(-\d+)?"


def pattern(tag, size):
    """size bytes, different for every tag, so a mix of versions shows."""
    block = hashlib.sha256(tag.encode()).digest() * 128   # 4 KiB
    return (block * (size // len(block) + 1))[:size]


def read(path):
    """The bytes of path. A GlusterFS client answers ESTALE (and at times
    ENOENT) for about a second after another client replaced the file
    under a name it caches: that is GlusterFS, not h5memfs, so retry those,
    for a few seconds, on GlusterFS paths only (through h5memfs they are
    errors)."""
    for _ in range(int(50 * SLOWDOWN)):
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as e:
            if e.errno not in (errno.ESTALE, errno.ENOENT) or \
                    "/node-" not in str(path):
                raise
            time.sleep(0.1)
    with open(path, "rb") as f:
        return f.read()


def write(path, data, flags=os.O_WRONLY | os.O_CREAT | os.O_TRUNC):
    fd = os.open(path, flags, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def fsync_errno(path):
    """fsync(2) of path opened for writing: 0 or the errno."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.fsync(fd)
        return 0
    except OSError as e:
        return e.errno
    finally:
        os.close(fd)


def identity(path):
    st = os.stat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns


def conflict_names(directory, stem, ext):
    rx = re.compile(re.escape(stem) +
                    CONFLICT_RE.format(host=re.escape(socket.gethostname()))
                    + re.escape(ext) + "$")
    return sorted(n for n in os.listdir(directory) if rx.match(n))


def py(code, *args, timeout=60, check=True):
    """Run code in a new python process (its own opens and HDF5 locks)."""
    return run([PY, "-c", code, *map(str, args)], timeout=timeout,
               check=check)


# --- 1. a write-back on A is seen on B at its next open ---------------------

@pytest.mark.parametrize("new_size", [3 << 20, 1 << 19],
                         ids=["grown", "shrunk"])
def test_writeback_on_a_seen_on_b_at_next_open(pair, data_path, new_size):
    old = pattern("v1", 2 << 20)
    new = pattern("v2", new_size)
    write(pair.src_a / "f.bin", old)
    wait_for(lambda: (pair.src_b / "f.bin").exists(), what="f.bin on B")
    a, b = pair.mount(data_path)

    # B loads the file: a clean image.
    assert read(b / "f.bin") == old
    assert b.file_status("f.bin")["state"] == "clean"

    # A replaces it and writes it back.
    assert read(a / "f.bin") == old
    write(a / "f.bin", new)
    res = a.sync("f.bin")
    assert res.returncode == 0, res.stderr
    assert read(pair.src_a / "f.bin") == new

    # B's next opens: the old or the new file, whole, never a mix; the new
    # one once GlusterFS's own caches have expired.
    def b_has_new():
        data = read(b / "f.bin")
        assert data in (old, new), (
            f"B read {len(data)} bytes that are neither version "
            f"(old {len(old)}, new {len(new)}; the first "
            f"{min(len(data), len(new))} bytes are "
            f"{'new' if data[:len(new)] == new[:len(data)] else 'other'}; "
            f"stat on B says {os.stat(b / 'f.bin').st_size}, status says "
            f"{b.file_status('f.bin')['size']})")
        return data == new
    _, secs = wait_for(b_has_new, timeout=15, step=0.1,
                       what="B reading A's write-back")
    record(test="reload", data_path=data_path[0], size=new_size,
           seconds=round(secs, 2))
    assert os.stat(b / "f.bin").st_size == len(new)
    st = b.file_status("f.bin")
    assert st["state"] == "clean" and st["size"] == len(new)
    # ... and it stays so.
    assert read(b / "f.bin") == new


def test_b_keeps_its_view_while_it_has_the_file_open(pair):
    old, new = pattern("old", 1 << 20), pattern("new", 1 << 20)
    write(pair.src_a / "f.bin", old)
    a, b = pair.mount()
    with open(b / "f.bin", "rb") as held:
        assert held.read() == old
        assert read(a / "f.bin") == old
        write(a / "f.bin", new)
        assert a.sync("f.bin").returncode == 0
        # Node B's GlusterFS client sees the new file ...
        wait_for(lambda: read(pair.src_b / "f.bin") == new,
                 what="the new version on B's GlusterFS client")
        # ... but an image open on B is not swapped under its readers.
        time.sleep(0.2)
        assert read(b / "f.bin") == old
        held.seek(0)
        assert held.read() == old
    # Nothing open on B any more: the next open reloads.
    wait_for(lambda: read(b / "f.bin") == new, what="reload after close")


# --- 2. conflicting edits ---------------------------------------------------

def _both_dirty(pair, name, size=1 << 20):
    base = pattern("base", size)
    write(pair.src_a / name, base)
    wait_for(lambda: (pair.src_b / name).exists(), what=f"{name} on B")
    a, b = pair.mount()
    assert read(a / name) == base and read(b / name) == base
    va, vb = pattern("A", size), pattern("B", size)
    with open(a / name, "r+b") as f:
        f.write(va)
    with open(b / name, "r+b") as f:
        f.write(vb)
    assert a.file_status(name)["state"] == "dirty"
    assert b.file_status(name)["state"] == "dirty"
    return a, b, va, vb


def _check_conflict_outcome(pair, name, winner, loser, win_data, lose_data):
    """name holds the winner's version, one conflict name the loser's, on
    both nodes' GlusterFS clients; the loser's status and log say so."""
    stem, ext = os.path.splitext(name)
    for d in (pair.src_a, pair.src_b):
        cn = wait_for(lambda: conflict_names(d, stem, ext),
                      what=f"a conflict name for {name} in {d}")[0]
        assert len(cn) == 1, cn
        assert read(d / name) == win_data
        assert read(d / cn[0]) == lose_data
    st = loser.file_status(name)
    assert st["state"] == "conflict", st
    wb = st["last_writeback"]
    assert not wb["ok"] and cn[0] in (wb["note"] or ""), wb
    assert loser.status()["mount"]["conflicts"] >= 1
    assert "conflict" in loser.stderr() and cn[0] in loser.stderr()
    assert winner.file_status(name)["state"] == "clean"
    return cn[0]


def test_conflict_after_the_cache_expired(pair):
    """B writes back after its GlusterFS client saw A's new version."""
    a, b, va, vb = _both_dirty(pair, "data.txt")
    before = identity(pair.src_b / "data.txt")
    res = a.sync("data.txt")
    assert res.returncode == 0, res.stderr
    wait_for(lambda: identity(pair.src_b / "data.txt") != before,
             what="A's write-back on B's client")
    assert fsync_errno(b / "data.txt") == errno.EIO
    _check_conflict_outcome(pair, "data.txt", a, b, va, vb)
    # The loser's version is saved: nothing is dirty, the mount ends
    # cleanly (finish() checks exit status 0).
    assert b.file_status("data.txt")["dirty_bytes"] == 0


def test_conflict_right_after_the_other_write_back(pair):
    """B writes back at once, while its GlusterFS client still caches the
    file A's write-back replaced."""
    a, b, va, vb = _both_dirty(pair, "data.txt")
    res = a.sync("data.txt")
    assert res.returncode == 0, res.stderr
    res = b.sync("data.txt")
    assert res.returncode != 0, "B's write-back over A's reported success"
    _check_conflict_outcome(pair, "data.txt", a, b, va, vb)


def test_simultaneous_write_backs_never_both_win(pair):
    """Both nodes write back the same file at the same moment, a few
    times: each time one wins and the other is kept as a conflict."""
    names = [f"f{i}.dat" for i in range(3)]
    base = pattern("base", 1 << 20)
    for n in names:
        write(pair.src_a / n, base)
    wait_for(lambda: all((pair.src_b / n).exists() for n in names),
             what="files on B")
    a, b = pair.mount()
    lost = []
    for n in names:
        va, vb = pattern("A" + n, 1 << 20), pattern("B" + n, 1 << 20)
        assert read(a / n) == base and read(b / n) == base
        write(a / n, va, os.O_WRONLY)
        write(b / n, vb, os.O_WRONLY)
        res = {}
        go = threading.Barrier(2)

        def sync(m, k, n=n):
            go.wait()
            res[k] = m.sync(n)
        ts = [threading.Thread(target=sync, args=(m, k))
              for m, k in ((a, "a"), (b, "b"))]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        rcs = {k: r.returncode for k, r in res.items()}
        stem, ext = os.path.splitext(n)
        kept = {read(pair.src_a / c)
                for c in conflict_names(pair.src_a, stem, ext)}
        now = read(pair.src_a / n)
        if rcs["a"] == 0 and rcs["b"] == 0 or {va, vb} - ({now} | kept):
            states = {k: (m.file_status(n)["state"],
                          m.file_status(n)["last_writeback"]["note"])
                      for k, m in (("a", a), ("b", b))}
            lost.append(f"{n}: sync exit statuses {rcs}, SOURCE has "
                        f"{'A' if now == va else 'B' if now == vb else '?'}"
                        f"'s version, {len(kept)} conflict file(s); "
                        f"status: {states}")
    assert not lost, ("a version was silently overwritten:\n" +
                      "\n".join(lost))


def test_new_file_from_a_appears_on_b(pair):
    a, b = pair.mount()
    assert os.listdir(b.path) == []
    write(a / "new.txt", b"made on A")
    assert a.sync("new.txt").returncode == 0
    wait_for(lambda: (pair.src_b / "new.txt").exists(),
             what="new.txt on B's GlusterFS client")
    wait_for(lambda: "new.txt" in os.listdir(b.path), timeout=15,
             what="new.txt in B's h5memfs listing")
    assert read(b / "new.txt") == b"made on A"


def test_file_deleted_on_a_is_gone_on_b(pair):
    """A deletion written back by A is a change B must not hide: once
    GlusterFS shows it on B, B's next open of its clean image fails."""
    write(pair.src_a / "gone.txt", b"old data")
    wait_for(lambda: (pair.src_b / "gone.txt").exists(), what="file on B")
    a, b = pair.mount()
    assert read(b / "gone.txt") == b"old data"
    os.unlink(a / "gone.txt")
    assert a.sync().returncode == 0
    wait_for(lambda: not (pair.src_b / "gone.txt").exists(),
             what="the deletion on B's GlusterFS client")

    def gone_on_b():
        try:
            read(b / "gone.txt")
        except FileNotFoundError:
            return True
        return False
    wait_for(gone_on_b, timeout=15, what="B serving a file deleted in "
             "SOURCE (its clean image) to new opens")


def test_same_new_name_on_both_nodes_is_not_overwritten(pair):
    a, b = pair.mount()
    os.listdir(b.path)
    write(a / "run.log", b"made on A")
    assert a.sync("run.log").returncode == 0
    wait_for(lambda: (pair.src_b / "run.log").exists(),
             what="run.log on B's GlusterFS client")
    try:
        write(b / "run.log", b"made on B",
              os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        return  # B sees A's file: fine
    b.sync("run.log")
    assert read(pair.src_a / "run.log") == b"made on A" or \
        conflict_names(pair.src_a, "run", ".log"), \
        "B's new file silently replaced A's new file of the same name"


# --- 3. HDF5 written on A opens on B ----------------------------------------

H5_SETUP = r"""
import sys, h5py, numpy as np, tables
d = sys.argv[1]
with h5py.File(d + "/grid.h5", "w") as f:
    f.create_dataset("t", chunks=(10, 1000), compression="gzip",
                     data=np.arange(200000, dtype="f8").reshape(200, 1000))
    f.attrs["version"] = 1
class Row(tables.IsDescription):
    step = tables.Int64Col()
    value = tables.Float64Col()
with tables.open_file(d + "/log.h5", "w") as f:
    t = f.create_table("/", "log", Row, expectedrows=100000)
    for i in range(1000):
        t.row["step"] = i; t.row["value"] = i * 0.5; t.row.append()
    t.flush()
"""

H5_WRITE_ON_A = r"""
import sys, h5py, numpy as np, tables
d = sys.argv[1]
with h5py.File(d + "/grid.h5", "a") as f:
    f["t"][50:60] = -1.0
    f.create_dataset("more", data=np.arange(300000, dtype="i4"),
                     chunks=(10000,), compression="gzip", shuffle=True)
    f.attrs["version"] = 2
with tables.open_file(d + "/log.h5", "a") as f:
    t = f.root.log
    for i in range(1000, 51000):
        t.row["step"] = i; t.row["value"] = i * 0.5; t.row.append()
    t.flush()
    f.create_array("/", "summary", np.arange(10.0))
with h5py.File(d + "/fresh.h5", "w") as f:
    f["x"] = np.linspace(0, 1, 12345)
"""

H5_CHECK_ON_B = r"""
import sys, h5py, numpy as np, tables
d, want = sys.argv[1], int(sys.argv[2])
with h5py.File(d + "/grid.h5", "r") as f:
    v = int(f.attrs["version"])
    if v != want:
        print("version", v); sys.exit(10)
    t = f["t"][...]
    ref = np.arange(200000, dtype="f8").reshape(200, 1000)
    if want == 2:
        ref[50:60] = -1.0
        assert (f["more"][...] == np.arange(300000, dtype="i4")).all()
    assert (t == ref).all(), "grid.h5 /t differs"
with tables.open_file(d + "/log.h5", "r") as f:
    t = f.root.log
    n = 51000 if want == 2 else 1000
    assert t.nrows == n, t.nrows
    steps = t.col("step")
    assert (steps == np.arange(n)).all()
    assert (t.col("value") == np.arange(n) * 0.5).all()
    if want == 2:
        assert (f.root.summary[:] == np.arange(10.0)).all()
print("ok")
"""


def test_hdf5_written_on_a_opens_on_b(pair, data_path):
    py(H5_SETUP, pair.src_a)
    wait_for(lambda: (pair.src_b / "log.h5").exists(), what="files on B")
    a, b = pair.mount(data_path)
    # B has loaded (clean images of) the first version.
    assert py(H5_CHECK_ON_B, b.path, 1).stdout.strip() == "ok"
    assert b.file_status("grid.h5")["state"] == "clean"

    py(H5_WRITE_ON_A, a.path, timeout=120)
    res = a.sync()
    assert res.returncode == 0, res.stderr
    for name in ("grid.h5", "log.h5", "fresh.h5"):
        st = a.file_status(name)
        assert st["state"] == "clean" and st["last_writeback"]["ok"], st

    # B: h5py and PyTables read A's version.
    def b_sees_v2():
        r = py(H5_CHECK_ON_B, b.path, 2, check=False)
        if r.returncode == 10:
            return False  # the old version: not reloaded yet
        assert r.returncode == 0, (f"B cannot read A's HDF5 files:\n"
                                   f"{r.stdout}\n{r.stderr}")
        return True
    _, secs = wait_for(b_sees_v2, timeout=20, step=0.2,
                       what="A's HDF5 files on B")
    record(test="hdf5 reload", data_path=data_path[0],
           seconds=round(secs, 2))
    for name in ("grid.h5", "log.h5"):
        run(["h5dump", "-H", b / name], timeout=60)
        st = b.file_status(name)
        assert st["state"] == "clean", st
        assert st["size"] == os.stat(pair.src_b / name).st_size
        h5 = st["hdf5"]
        assert h5 and h5["opens"] is True and not h5["writer_open"], st

    # A file new on A opens on B in a mount started after A's write-back.
    fresh = pair.h5memfs(pair.src_b, "b2", data_path)
    r = py("import sys, h5py, numpy as np\n"
           "with h5py.File(sys.argv[1], 'r') as f:\n"
           "    assert (f['x'][...] == np.linspace(0, 1, 12345)).all()\n",
           fresh / "fresh.h5")
    assert r.returncode == 0
    run(["h5dump", "-H", fresh / "grid.h5"], timeout=60)


# --- 4. a job's stage-in and stage-out with h5memfs-scratch ----------------

JOB = r"""
import os, sys, h5py, numpy as np, tables
assert os.getcwd() == os.environ["H5MEMFS_SCRATCH"]
with h5py.File("input.h5", "r") as f:
    x = f["x"][...]
with h5py.File("result.h5", "w") as f:
    f["y"] = np.cumsum(x)
with tables.open_file("log.h5", "a") as f:
    f.root.log.append([(i,) for i in range(100)])
if os.path.exists("tmp-input.txt"):
    os.remove("tmp-input.txt")
sys.exit(int(sys.argv[1]))
"""

JOB_SETUP = r"""
import sys, h5py, numpy as np, tables
d = sys.argv[1]
with h5py.File(d + "/input.h5", "w") as f:
    f["x"] = np.arange(100000.0)
with tables.open_file(d + "/log.h5", "w") as f:
    f.create_table("/", "log", {"i": tables.Int64Col()})
open(d + "/tmp-input.txt", "w").write("scratch")
"""

JOB_CHECK = r"""
import sys, h5py, numpy as np, tables
d, rows = sys.argv[1], int(sys.argv[2])
with h5py.File(d + "/result.h5", "r") as f:
    assert (f["y"][...] == np.cumsum(np.arange(100000.0))).all()
with h5py.File(d + "/input.h5", "r") as f:
    assert (f["x"][...] == np.arange(100000.0)).all()
with tables.open_file(d + "/log.h5", "r") as f:
    assert f.root.log.nrows == rows, f.root.log.nrows
print("ok")
"""


def _scratch(args, timeout=120):
    if not SCRATCH.exists():
        pytest.skip(f"h5memfs-scratch not built ({SCRATCH})")
    proc = track(subprocess.Popen([str(SCRATCH), *map(str, args)],
                                  stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True,
                                  env=dict(os.environ, H5MEMFS=str(DAEMON))))
    try:
        out, err = proc.communicate(timeout=timeout * SLOWDOWN)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=30)
        raise AssertionError(f"h5memfs-scratch {args} ran past {timeout} s")
    return proc.returncode, out, err


def _no_scratch_mount_over(directory):
    with open("/proc/mounts") as f:
        left = [ln for ln in f if "h5memfs" in ln.split()[2]
                and str(directory) in ln.split()[0]]
    assert not left, f"h5memfs-scratch left mounts: {left}"


def test_scratch_stage_in_and_out_on_glusterfs(pair):
    job = pair.src_a / "job"
    job.mkdir()
    py(JOB_SETUP, job)
    # Stage in from node A's view, run, stage the result out in place.
    rc, out, err = _scratch(["--from", job, "--keep", job, "--",
                             PY, "-c", JOB, "0"])
    assert rc == 0, err
    _no_scratch_mount_over(pair.ga)
    # Node B sees the job's result (its own GlusterFS client).
    jb = pair.src_b / "job"
    wait_for(lambda: (jb / "result.h5").exists(),
             what="result.h5 on B's client")
    assert py(JOB_CHECK, jb, 100).stdout.strip() == "ok"
    assert sorted(os.listdir(jb)) == ["input.h5", "log.h5", "result.h5"]
    assert not [n for n in os.listdir(pair.src_b)
                if n.startswith(".h5memfs-scratch")], os.listdir(pair.src_b)

    # Node B runs the next step from its view into a new directory; the job
    # fails (exit 3): its status is passed on and the output still kept.
    out_b = pair.src_b / "step2"
    rc, out, err = _scratch(["--from", jb, "--keep", out_b, "--",
                             PY, "-c", JOB, "3"])
    assert rc == 3, err
    _no_scratch_mount_over(pair.gb)
    wait_for(lambda: (pair.src_a / "step2" / "log.h5").exists(),
             what="step2 on A's client")
    assert py(JOB_CHECK, pair.src_a / "step2", 200).stdout.strip() == "ok"
    # --from is never written to without --keep naming it.
    assert py(JOB_CHECK, jb, 100).stdout.strip() == "ok"
    assert not mounted(out_b)
