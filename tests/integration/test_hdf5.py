"""HDF5 programs in the mount: the HDF5 tools, h5py and PyTables, with HDF5
file locking left on, as by default."""

import os
import time

import numpy as np
import pytest

import helpers
from h5mount import SLOWDOWN

H5_FILES = ["data/sample.h5", "data/table.h5"]


def tool_output(argv_tail, path):
    """Run an HDF5 tool on path from inside its directory, so that its
    output names the file the same way wherever it lives."""
    res = helpers.run([*argv_tail, os.path.basename(path)], timeout=60,
                      cwd=os.path.dirname(path))
    return res.stdout.replace(str(os.path.dirname(path)), "DIR")


def test_hdf5_file_locking_is_left_on():
    assert "HDF5_USE_FILE_LOCKING" not in os.environ


@pytest.mark.parametrize("rel", H5_FILES)
def test_h5dump_through_the_mount_equals_h5dump_on_source(mnt, source, rel):
    want = tool_output(["h5dump"], str(source / rel))
    assert "DATASET" in want
    assert tool_output(["h5dump"], str(mnt / rel)) == want


@pytest.mark.parametrize("rel", H5_FILES)
def test_h5ls_recursive_through_the_mount_equals_h5ls_on_source(
        mnt, source, rel):
    want = tool_output(["h5ls", "-r", "-v"], str(source / rel))
    assert tool_output(["h5ls", "-r", "-v"], str(mnt / rel)) == want


def test_h5py_creates_extends_and_reads_a_resizable_dataset_in_the_mount(
        rw, empty_source):
    import h5py
    path = rw / "grow.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("x", shape=(0, 3), maxshape=(None, 3),
                              dtype="i8", chunks=(64, 3))
        for i in range(50):
            ds.resize(ds.shape[0] + 10, axis=0)
            ds[-10:] = np.arange(i * 30, i * 30 + 30).reshape(10, 3)
        f.attrs["rows"] = 500
    with h5py.File(path, "r") as f:
        assert f["x"].shape == (500, 3)
        assert (f["x"][:].ravel() == np.arange(1500)).all()
    with h5py.File(path, "a") as f:
        f["x"].resize(600, axis=0)
        f["x"][500:] = -1
        f.create_dataset("y", data=np.ones((100, 100)))
    with h5py.File(path, "r") as f:
        assert f["x"].shape == (600, 3)
        assert (f["x"][500:] == -1).all()
        assert f["y"][:].sum() == 10000
    # Nothing reaches SOURCE before write-back ...
    assert not (empty_source / "grow.h5").exists()
    assert rw.unmount() == 0
    # ... and all of it after.
    with h5py.File(empty_source / "grow.h5", "r") as f:
        assert f["x"].shape == (600, 3)
        assert (f["x"][:500].ravel() == np.arange(1500)).all()
        assert f.attrs["rows"] == 500
        assert f["y"][:].sum() == 10000


def test_h5py_edits_an_existing_source_file_and_source_has_them_after_unmount(
        mnt, source):
    import h5py
    with h5py.File(mnt / "data/sample.h5", "a") as f:
        f["growing"].resize(30, axis=0)
        f["growing"][10:] = 7.0
        f["measurements/run1/ints"][:10] = -5
        f.create_group("new/group").attrs["made"] = "in the mount"
    assert mnt.unmount() == 0
    with h5py.File(source / "data/sample.h5", "r") as f:
        assert f["growing"].shape == (30,)
        assert (f["growing"][10:] == 7.0).all()
        assert (f["growing"][:10] == np.linspace(0, 1, 10)).all()
        assert (f["measurements/run1/ints"][:10] == -5).all()
        assert (f["measurements/run1/ints"][10:] == np.arange(10, 1000)).all()
        assert f["new/group"].attrs["made"] == "in the mount"
        assert f.attrs["title"] == "h5memfs sample"


def test_pytables_appends_rows_across_a_close_and_reopen_with_locking_on(
        rw, empty_source):
    import tables

    class Row(tables.IsDescription):
        idx = tables.Int64Col(pos=0)
        value = tables.Float64Col(pos=1)
        label = tables.StringCol(12, pos=2)

    path = str(rw / "rows.h5")
    with tables.open_file(path, "w") as f:
        t = f.create_table("/", "t", Row, "rows")
        for i in range(1000):
            t.row["idx"] = i
            t.row["value"] = i / 4
            t.row["label"] = f"row{i}".encode()
            t.row.append()
        t.flush()
    with tables.open_file(path, "a") as f:
        t = f.root.t
        assert t.nrows == 1000
        t.append([(i, i / 4, f"row{i}".encode())
                  for i in range(1000, 2500)])
        f.create_array("/", "arr", np.arange(10000))
    with tables.open_file(path, "r") as f:
        t = f.root.t
        assert t.nrows == 2500
        assert (t.col("idx") == np.arange(2500)).all()
        assert t[2499]["label"] == b"row2499"
        assert (f.root.arr[:] == np.arange(10000)).all()
        assert len(t.read_where("idx >= 2400")) == 100
    assert rw.unmount() == 0
    with tables.open_file(str(empty_source / "rows.h5"), "r") as f:
        assert f.root.t.nrows == 2500
        assert (f.root.t.col("value") == np.arange(2500) / 4).all()


def test_two_processes_holding_an_hdf5_file_for_writing_conflict_on_its_lock(
        rw):
    import h5py
    path = rw / "locked.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.arange(10)
        f.flush()
        res = helpers.run_python(
            "import h5py, sys\n"
            "try:\n"
            "    h5py.File(sys.argv[1], 'a')\n"
            "    print('opened')\n"
            "except OSError as e:\n"
            "    print('refused', e)\n", path)
        assert res.stdout.startswith("refused"), res.stdout
    res = helpers.run_python(
        "import h5py, sys\n"
        "with h5py.File(sys.argv[1], 'a') as f: print(f['x'][3])\n", path)
    assert res.stdout.strip() == "3"


def test_h5py_sees_a_file_written_by_another_process_in_the_mount(rw):
    import h5py
    path = rw / "other.h5"
    helpers.run_python(
        "import h5py, numpy, sys\n"
        "with h5py.File(sys.argv[1], 'w') as f:\n"
        "    f['z'] = numpy.arange(12).reshape(3, 4)\n", path)
    with h5py.File(path, "r") as f:
        assert (f["z"][:] == np.arange(12).reshape(3, 4)).all()


def test_h5repack_and_h5diff_work_between_files_in_the_mount(mnt):
    helpers.run(["h5repack", "-f", "GZIP=1", str(mnt / "data/sample.h5"),
                 str(mnt / "repacked.h5")], timeout=60)
    res = helpers.run(["h5diff", str(mnt / "data/sample.h5"),
                       str(mnt / "repacked.h5")], timeout=60, check=False)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("rel", H5_FILES)
def test_h5stat_through_the_mount_equals_h5stat_on_source(mnt, source, rel):
    want = tool_output(["h5stat"], str(source / rel))
    assert tool_output(["h5stat"], str(mnt / rel)) == want


def test_h5copy_and_h5clear_work_on_files_in_the_mount(mnt):
    helpers.run(["h5copy", "-i", str(mnt / "data/sample.h5"), "-o",
                 str(mnt / "copied.h5"), "-s", "/measurements",
                 "-d", "/m"], timeout=60)
    helpers.run(["h5clear", "-s", str(mnt / "copied.h5")], timeout=60)
    out = helpers.run(["h5ls", "-r", str(mnt / "copied.h5")]).stdout
    assert "/m/run1/ints" in out


def test_h5jam_adds_a_user_block_to_a_file_in_the_mount(mnt, tmp_path):
    ub = tmp_path / "userblock.txt"
    ub.write_bytes(b"user block text\n")
    helpers.run(["h5jam", "-i", str(mnt / "data/sample.h5"), "-u", str(ub),
                 "-o", str(mnt / "jammed.h5")], timeout=60)
    assert helpers.read_file(mnt / "jammed.h5")[:16] == b"user block text\n"
    import h5py
    with h5py.File(mnt / "jammed.h5", "r") as f:
        assert f.userblock_size == 512
        assert (f["measurements/run1/ints"][:] == np.arange(1000)).all()


CDL = """netcdf sample {
dimensions:
    time = UNLIMITED ;
    x = 4 ;
variables:
    double temp(time, x) ;
        temp:units = "K" ;
    int x(x) ;
data:
    temp = 1, 2, 3, 4, 5, 6, 7, 8 ;
    x = 10, 20, 30, 40 ;
}
"""


def test_netcdf4_tools_read_and_write_in_the_mount(rw, tmp_path):
    cdl = tmp_path / "sample.cdl"
    cdl.write_text(CDL)
    helpers.run(["ncgen", "-k", "nc4", "-o", str(tmp_path / "ref.nc"),
                 str(cdl)], timeout=60)
    helpers.run(["ncgen", "-k", "nc4", "-o", str(rw / "sample.nc"),
                 str(cdl)], timeout=60)
    want = tool_output(["ncdump"], str(tmp_path / "ref.nc"))
    assert tool_output(["ncdump"], str(rw / "sample.nc")).replace(
        "sample", "ref") == want.replace("sample", "ref")
    helpers.run(["nccopy", "-d", "1", str(rw / "sample.nc"),
                 str(rw / "copy.nc")], timeout=60)
    assert tool_output(["ncdump"], str(rw / "copy.nc")).replace(
        "netcdf copy", "netcdf ref") == want.replace("sample", "ref")


SWMR_READER = r"""
import h5py, sys, time
f = h5py.File(sys.argv[1], "r", libver="latest", swmr=True)
ds = f["x"]
seen = 0
deadline = time.monotonic() + float(sys.argv[2])
while seen < 500 and time.monotonic() < deadline:
    ds.refresh()
    n = ds.shape[0]
    if n > seen:
        data = ds[:n]
        assert (data == list(range(n))).all(), "torn data"
        seen = n
    time.sleep(0.01)
print(seen)
"""


def test_an_swmr_writer_is_followed_by_a_reader_in_another_process(rw):
    import subprocess
    import h5py
    path = rw / "swmr.h5"
    f = h5py.File(path, "w", libver="latest")
    try:
        ds = f.create_dataset("x", shape=(0,), maxshape=(None,), dtype="i8",
                              chunks=(64,))
        f.swmr_mode = True
        reader = subprocess.Popen([helpers.PYTHON, "-c", SWMR_READER,
                                   str(path), str(20 * SLOWDOWN)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE,
                                  stdin=subprocess.DEVNULL)
        try:
            for i in range(0, 500, 50):
                ds.resize(i + 50, axis=0)
                ds[i:i + 50] = np.arange(i, i + 50)
                ds.flush()
                time.sleep(0.02)
            out, err = reader.communicate(timeout=30 * SLOWDOWN)
        finally:
            if reader.poll() is None:
                reader.kill()
                reader.communicate(timeout=10 * SLOWDOWN)
    finally:
        f.close()
    assert reader.returncode == 0, err.decode()
    assert out.decode().strip() == "500"
