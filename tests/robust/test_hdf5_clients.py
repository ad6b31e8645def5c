"""HDF5 and netCDF clients in the mount, each compared with the same work
done on tmpfs (the local-disk reference): PyTables' own test suite with
TMPDIR in the mount, h5py round trips, h5repack, h5diff, h5copy,
h5jam/h5unjam, h5clear, ncgen/nccopy/ncdump, and an SWMR writer with
concurrent SWMR readers while write-back runs.
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest

import rlib
from rlib import helpers

HERE = Path(__file__).resolve().parent
PT_SUITE = HERE / "pytables_suite.py"

# The CI subset of PyTables' suite (about 20 s on tmpfs here); `--long`
# runs the whole suite (test_all). Chosen to cover file creation, nodes,
# attributes, links, undo/redo (many reopen cycles) and enlargeable arrays.
PT_CI_MODULES = ["tables.tests.test_basics",
                 "tables.tests.test_attributes", "tables.tests.test_links",
                 "tables.tests.test_do_undo"]


def run_pytables(tmpdir, modules, timeout):
    env = dict(os.environ, TMPDIR=str(tmpdir))
    env.pop("HDF5_USE_FILE_LOCKING", None)
    c = rlib.Child([rlib.PYTHON, str(PT_SUITE), *modules], env=env,
                   cwd=str(tmpdir))
    rc, out, err = c.wait(timeout)
    assert rc == 0, f"PyTables suite runner exited {rc}: {err[-3000:]}"
    return json.loads(out.strip().splitlines()[-1])


def compare_pytables(ref, got):
    summary = (f"tmpfs: run {ref['run']} failures {len(ref['failures'])} "
               f"errors {len(ref['errors'])} skipped {ref['skipped']} in "
               f"{ref['seconds']}s; mount: run {got['run']} failures "
               f"{len(got['failures'])} errors {len(got['errors'])} skipped "
               f"{got['skipped']} in {got['seconds']}s")
    print(summary)
    assert (got["run"], got["skipped"]) == (ref["run"], ref["skipped"]), \
        summary
    extra = sorted(set(got["failures"] + got["errors"]) -
                   set(ref["failures"] + ref["errors"]))
    assert not extra, (summary + "\nonly in the mount:\n" +
                       "\n".join(extra[:30]) + "\n" +
                       "\n".join(got["details"][:5]))
    assert len(got["failures"]) + len(got["errors"]) == \
        len(ref["failures"]) + len(ref["errors"]), summary


@pytest.fixture(scope="module")
def pytables_reference():
    """The CI subset on tmpfs, once per module."""
    d = rlib.open_dir("h5memfs-pt-", "/dev/shm")
    try:
        yield run_pytables(d, PT_CI_MODULES, 240)
    finally:
        import shutil
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.slow
def test_pytables_suite_subset_passes_in_the_mount_as_on_tmpfs(
        mount, source, datapath, pytables_reference):
    m = mount(source, [datapath])
    (m / "tmp").mkdir()
    got = run_pytables(m / "tmp", PT_CI_MODULES, 200)
    compare_pytables(pytables_reference, got)


@pytest.mark.long
def test_pytables_full_suite_passes_in_the_mount_as_on_tmpfs(
        mount, source, datapath, shm_dir):
    ref = run_pytables(shm_dir, ["all"], 3000)
    m = mount(source, [datapath])
    (m / "tmp").mkdir()
    got = run_pytables(m / "tmp", ["all"], 3000)
    compare_pytables(ref, got)


# --- h5py round trips ---------------------------------------------------------------

def make_rich_h5(path):
    import h5py
    rng = np.random.default_rng(5)
    with h5py.File(path, "w", libver="latest") as f:
        f.attrs["title"] = "round trip"
        f.attrs["vector"] = np.arange(5.0)
        g = f.create_group("a/b/c")
        g.create_dataset("chunked", data=rng.random((200, 300)),
                         chunks=(32, 32), compression="gzip", shuffle=True,
                         fletcher32=True)
        g.create_dataset("ints", data=rng.integers(0, 100, 100000),
                         compression="gzip", scaleoffset=0)
        f.create_dataset("scalar", data=42)
        vl = h5py.string_dtype()
        f.create_dataset("strings", data=["alpha", "\u00e9t\u00e9", "x" * 500],
                         dtype=vl)
        comp = np.zeros(50, dtype=[("i", "i8"), ("f", "f4"), ("s", "S8")])
        comp["i"] = np.arange(50)
        comp["s"] = b"rec"
        f.create_dataset("compound", data=comp)
        ds = f.create_dataset("growing", shape=(0, 3), maxshape=(None, 3),
                              dtype="f8", chunks=(100, 3))
        for i in range(20):
            ds.resize(ds.shape[0] + 100, axis=0)
            ds[-100:] = i
        f.create_dataset("empty", shape=(0,), dtype="i4")
        f.create_dataset("fill", shape=(1000,), dtype="i4", fillvalue=-7)
        f["soft"] = h5py.SoftLink("/a/b/c/chunked")
        f["hard"] = f["scalar"]
        vlen = f.create_dataset("vlen", (10,), dtype=h5py.vlen_dtype("i4"))
        for i in range(10):
            vlen[i] = np.arange(i)


def edit_rich_h5(path):
    import h5py
    with h5py.File(path, "r+") as f:
        f["a/b/c/chunked"][10:20, 10:20] = -1
        if "a/b/c/ints" in f:
            del f["a/b/c/ints"]
        f["growing"].resize(f["growing"].shape[0] + 5000, axis=0)
        f["growing"][-1] = 99
        f.attrs["edited"] = f.attrs.get("edited", 0) + 1
        f.require_group("new").require_dataset("x", shape=(10,), dtype="i8")


def h5dump(path, *args):
    res = rlib.run(["h5dump", *args, str(path)], timeout=120)
    return res.stdout.replace(str(path), "FILE")


def test_h5py_round_trip_matches_tmpfs_and_survives_remount(
        mount, source, datapath, shm_dir):
    m = mount(source, [datapath])
    for root in (m.path, shm_dir):
        make_rich_h5(root / "rich.h5")
        edit_rich_h5(root / "rich.h5")
    want = h5dump(shm_dir / "rich.h5")
    assert h5dump(m / "rich.h5") == want
    for obj in ("/a/b/c/chunked", "/growing", "/compound"):
        assert rlib.run(["h5diff", str(m / "rich.h5"),
                         str(shm_dir / "rich.h5"), obj], timeout=60,
                        check=False).returncode == 0, obj
    assert m.unmount() == 0
    assert h5dump(source / "rich.h5") == want
    m = m.remount()
    edit_rich_h5(m / "rich.h5")
    import h5py
    with h5py.File(m / "rich.h5", "r") as f:
        assert f["growing"].shape == (12000, 3)
        assert f.attrs["edited"] == 2


def test_h5repack_h5diff_h5copy_like_on_tmpfs(mount, source, datapath,
                                              shm_dir):
    m = mount(source, [datapath])
    outs = {}
    for name, root in (("mount", m.path), ("tmpfs", shm_dir)):
        make_rich_h5(root / "in.h5")
        rlib.run(["h5repack", "-f", "GZIP=6", "-l", "CHUNK=64x64",
                  str(root / "in.h5"), str(root / "packed.h5")], timeout=120)
        rlib.run(["h5repack", "--latest", str(root / "packed.h5"),
                  str(root / "packed2.h5")], timeout=120)
        rlib.run(["h5copy", "-i", str(root / "in.h5"), "-o",
                  str(root / "copy.h5"), "-s", "/a/b", "-d", "/copied",
                  "-p"], timeout=60)
        rlib.run(["h5copy", "-i", str(root / "in.h5"), "-o",
                  str(root / "copy.h5"), "-s", "/compound", "-d",
                  "/compound"], timeout=60)
        same = rlib.run(["h5diff", "-r", str(root / "in.h5"),
                         str(root / "packed2.h5")], timeout=60, check=False)
        comp = rlib.run(["h5diff", str(root / "in.h5"),
                         str(root / "copy.h5"), "/compound", "/compound"],
                        timeout=60, check=False)
        assert comp.returncode == 0, comp.stdout[-2000:]
        outs[name] = {f: h5dump(root / f) for f in
                      ("in.h5", "packed.h5", "packed2.h5", "copy.h5")}
        outs[name]["h5diff -r"] = (same.returncode, same.stdout.replace(
            str(root), "ROOT"))
    for f in outs["tmpfs"]:
        assert outs["mount"][f] == outs["tmpfs"][f], f
    # h5diff between the two filesystems, and one that must differ.
    assert rlib.run(["h5diff", str(m / "packed2.h5"), str(shm_dir /
                     "packed2.h5"), "/a/b/c/chunked"], timeout=60,
                    check=False).returncode == 0
    edit_rich_h5(m / "in.h5")
    assert rlib.run(["h5diff", str(m / "in.h5"), str(shm_dir / "in.h5"),
                     "/a/b/c/chunked"], timeout=60,
                    check=False).returncode == 1
    assert m.unmount() == 0
    assert h5dump(source / "packed2.h5") == outs["tmpfs"]["packed2.h5"]


def test_h5jam_and_h5unjam_like_on_tmpfs(mount, source, datapath, shm_dir):
    m = mount(source, [datapath])
    ub = os.urandom(1000)
    make_rich_h5(shm_dir / "made.h5")  # the same bytes on both sides
    plain = helpers.read_file(shm_dir / "made.h5")
    for root in (m.path, shm_dir):
        helpers.write_file(root / "plain.h5", plain)
        helpers.write_file(root / "ub.bin", ub)
        rlib.run(["h5jam", "-i", str(root / "plain.h5"), "-u",
                  str(root / "ub.bin"), "-o", str(root / "jammed.h5")],
                 timeout=60)
        rlib.run(["h5unjam", "-i", str(root / "jammed.h5"), "-o",
                  str(root / "unjammed.h5"), "-u", str(root / "ub.out")],
                 timeout=60)
        # h5jam in place (-o omitted is not allowed; jam onto a copy)
    for f in ("jammed.h5", "unjammed.h5", "ub.out"):
        a = helpers.read_file(m / f)
        b = helpers.read_file(shm_dir / f)
        assert a == b, f
    assert helpers.read_file(m / "jammed.h5")[:1000] == ub
    assert h5dump(m / "unjammed.h5") == h5dump(shm_dir / "plain.h5")
    assert m.unmount() == 0
    assert helpers.read_file(source / "jammed.h5") == \
        helpers.read_file(shm_dir / "jammed.h5")


H5_WRITER_KILLED = r"""
import h5py, numpy as np, os, sys, time
f = h5py.File(sys.argv[1], "w", libver="latest")
ds = f.create_dataset("x", shape=(0,), maxshape=(None,), chunks=(1000,),
                      dtype="i8")
f.swmr_mode = True
for i in range(5):
    ds.resize(((i + 1) * 1000,))
    ds[-1000:] = i
    ds.flush()
f.flush()
print("ready", flush=True)
time.sleep(60)
"""


def test_h5clear_repairs_a_file_left_open_by_a_killed_writer(
        mount, source, datapath, shm_dir):
    m = mount(source, [datapath])
    results = {}
    for name, root in (("mount", m.path), ("tmpfs", shm_dir)):
        path = root / "crashed.h5"
        c = rlib.Child([rlib.PYTHON, "-c", H5_WRITER_KILLED, str(path)])
        line = c.proc.stdout.readline()
        assert line.strip() == b"ready", c.proc.stderr.read()
        c.kill()  # SIGKILL: superblock status flags stay set
        opened = rlib.run([rlib.PYTHON, "-c",
                           "import h5py,sys; h5py.File(sys.argv[1],'r')",
                           str(path)], timeout=30, check=False)
        rlib.run(["h5clear", "-s", str(path)], timeout=30)
        after = rlib.run(["h5dump", "-H", str(path)], timeout=30,
                         check=False)
        results[name] = (opened.returncode != 0, after.returncode,
                         after.stdout.replace(str(path), "FILE"))
    assert results["mount"] == results["tmpfs"]
    assert results["tmpfs"][1] == 0
    assert m.unmount() == 0


NC_CDL = """netcdf sample {
dimensions:
    time = UNLIMITED ;
    lat = 30 ;
    lon = 40 ;
variables:
    double time(time) ;
        time:units = "hours since 2000-01-01" ;
    float temp(time, lat, lon) ;
        temp:long_name = "temperature" ;
        temp:_FillValue = -999.f ;
    int lat(lat) ;
    int lon(lon) ;
// global attributes:
    :title = "h5memfs netCDF-4 round trip" ;
data:
    time = 0, 1, 2, 3, 4, 5 ;
    lat = %s ;
    lon = %s ;
}
""" % (", ".join(str(i) for i in range(30)),
       ", ".join(str(i) for i in range(40)))


def test_netcdf4_ncgen_nccopy_ncdump_like_on_tmpfs(mount, source, datapath,
                                                   shm_dir):
    m = mount(source, [datapath])
    dumps = {}
    for name, root in (("mount", m.path), ("tmpfs", shm_dir)):
        (root / "s.cdl").write_text(NC_CDL)
        rlib.run(["ncgen", "-4", "-o", str(root / "s.nc"), str(root / "s.cdl")],
                 timeout=60)
        rlib.run(["nccopy", "-k", "netCDF-4", "-d", "5", "-s",
                  str(root / "s.nc"), str(root / "z.nc")], timeout=60)
        rlib.run(["nccopy", "-k", "classic", str(root / "z.nc"),
                  str(root / "c.nc")], timeout=60, check=False)
        rlib.run(["nccopy", "-k", "netCDF-4", str(root / "z.nc"),
                  str(root / "z2.nc")], timeout=60)
        dumps[name] = {f: rlib.run(["ncdump", str(root / f)],
                                   timeout=60).stdout
                       for f in ("s.nc", "z.nc", "z2.nc")}
        dumps[name]["hs"] = rlib.run(["ncdump", "-hs", str(root / "z.nc")],
                                     timeout=60).stdout
        # h5dump reads the netCDF-4 file as HDF5.
        dumps[name]["h5"] = h5dump(root / "z.nc", "-H")
    assert dumps["mount"] == dumps["tmpfs"]
    assert m.unmount() == 0
    assert rlib.run(["ncdump", str(source / "z2.nc")], timeout=60).stdout == \
        dumps["tmpfs"]["z2.nc"]


SWMR_WRITER = r"""
import h5py, numpy as np, sys, time
f = h5py.File(sys.argv[1], "w", libver="latest")
ds = f.create_dataset("data", shape=(0,), maxshape=(None,), chunks=(256,),
                      dtype="i8")
f.swmr_mode = True
print("ready", flush=True)
n = 0
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    ds.resize((n + 100,))
    ds[n:n + 100] = np.arange(n, n + 100)
    n += 100
    ds.flush()
    time.sleep(0.005)
f.close()
print(n, flush=True)
"""

SWMR_READER = r"""
import h5py, numpy as np, sys, time
f = h5py.File(sys.argv[1], "r", libver="latest", swmr=True)
ds = f["data"]
last = 0
checks = 0
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    ds.refresh()
    n = ds.shape[0]
    if n < last:
        sys.exit(f"shrank from {last} to {n}")
    if n:
        tail = ds[max(0, n - 300):n]
        if not np.array_equal(tail, np.arange(max(0, n - 300), n)):
            sys.exit(f"wrong values near {n}")
        checks += 1
    last = n
    time.sleep(0.01)
print(checks, last, flush=True)
"""


@pytest.mark.slow
def test_swmr_writer_with_concurrent_readers_and_write_back(
        mount, source, datapath):
    from test_concurrency import SyncLoop
    m = mount(source, [datapath])
    path = m / "swmr.h5"
    writer = rlib.Child([rlib.PYTHON, "-c", SWMR_WRITER, str(path), "6"])
    assert writer.proc.stdout.readline().strip() == b"ready", \
        writer.proc.stderr.read()
    readers = [rlib.Child([rlib.PYTHON, "-c", SWMR_READER, str(path), "5"])
               for _ in range(2)]
    with SyncLoop(m.path) as loop:
        results = [r.wait(60) for r in readers]
        wrc, wout, werr = writer.wait(60)
    assert wrc == 0, werr
    for rc, out, err in results:
        assert rc == 0, err
        checks, _last = map(int, out.split())
        assert checks > 10
    assert not loop.errors, loop.errors
    n = int(wout.split()[-1])
    import h5py
    with h5py.File(path, "r") as f:
        assert np.array_equal(f["data"][:], np.arange(n))
    in_mount = helpers.read_file(path)
    assert m.unmount() == 0
    in_source = helpers.read_file(source / "swmr.h5")
    if in_source != in_mount:
        diff = [i for i in range(min(len(in_source), len(in_mount)))
                if in_source[i] != in_mount[i]]
        raise AssertionError(
            f"SOURCE's swmr.h5 differs from the mount's after unmount: "
            f"sizes {len(in_source)} and {len(in_mount)}, {len(diff)} bytes "
            f"differ, first at {diff[:8]}")
    with h5py.File(source / "swmr.h5", "r") as f:
        assert np.array_equal(f["data"][:], np.arange(n))
