"""validate=strict|warn|off: before an image with the HDF5 signature (at
offset 0, 512, 1024, 2048, ...) replaces its file in SOURCE, libhdf5 opens
it in place and reads every object header. Under strict (the default) an
image that fails is not written: fsync returns EIO, SOURCE keeps its file,
the log and status say why, and every later write-back tries again. warn
logs and writes; off does not check. Images without the signature are
written as they are. An image whose writer still has it open (superblock
status flags) is judged by its structure."""

import errno
import os
import select
import subprocess

import pytest

import helpers
from h5mount import SLOWDOWN
from acceptance import (assert_no_libhdf5_noise, cli, daemon_lines,
                        file_status, fsync_path, h5_readable, make_hdf5,
                        mount_status, rescue_dir)  # noqa: F401 (fixture)

TRUNCATE = "truncated"
ZEROED = "zeroed object headers"


def corrupt(path, how=TRUNCATE, base=0):
    """Damage an HDF5 file in the mount so that libhdf5 cannot open it,
    keeping its signature: cut it short, or zero the metadata that
    follows the superblock (object headers, B-tree, heap)."""
    if how == TRUNCATE:
        os.truncate(path, base + 2048)
    else:
        fd = os.open(path, os.O_RDWR)
        try:
            os.pwrite(fd, b"\0" * 1000, base + 96)
        finally:
            os.close(fd)


@pytest.fixture
def h5src(empty_source):
    make_hdf5(empty_source / "data.h5")
    return empty_source


def refused_log_lines(m, rel):
    return [ln for ln in daemon_lines(m)
            if f"not writing back {rel}: libhdf5 cannot open it (" in ln]


# --- strict -----------------------------------------------------------------

@pytest.mark.parametrize("how", [TRUNCATE, ZEROED])
@pytest.mark.parametrize("option", [[], ["validate=strict"]],
                         ids=["default", "strict"])
def test_strict_refuses_an_image_libhdf5_cannot_open_and_keeps_source(
        mount, h5src, tmp_path, rescue_dir, how, option):
    src_file = h5src / "data.h5"
    old = helpers.read_file(src_file)
    old_ino = os.stat(src_file).st_ino
    m = mount(h5src, options=option + [f"rescue={rescue_dir}"],
              allow_stderr=True)
    corrupt(m / "data.h5", how)
    bad = helpers.read_file(m / "data.h5")
    assert fsync_path(m / "data.h5") == errno.EIO
    # SOURCE keeps its file, untouched, and no temporary is left.
    assert helpers.read_file(src_file) == old
    assert os.stat(src_file).st_ino == old_ino
    assert helpers.tmp_files(h5src) == []
    # The image stays in memory as it was written.
    assert helpers.read_file(m / "data.h5") == bad
    assert len(refused_log_lines(m, "data.h5")) >= 1, m.stderr()
    st = file_status(m, "data.h5")
    assert st["state"] == "invalid HDF5", st
    assert st["last_writeback"]["ok"] is False, st
    assert st["hdf5"] is not None and st["hdf5"]["opens"] is False, st
    assert st["hdf5"]["error"], st
    ms = mount_status(m)
    assert ms["invalid"] >= 1 and ms["dirty_files"] == 1, ms
    # A valid image written over it is accepted at the next fsync.
    make_hdf5(tmp_path / "good.h5", n=777)
    good = helpers.read_file(tmp_path / "good.h5")
    helpers.write_file(m / "data.h5", good)
    assert fsync_path(m / "data.h5") == 0
    assert helpers.read_file(src_file) == good
    assert h5_readable(src_file)
    st = file_status(m, "data.h5")
    assert st["state"] == "clean" and st["last_writeback"]["ok"] is True, st
    assert m.unmount() == 0
    assert helpers.read_file(src_file) == good
    assert not rescue_dir.exists() or not any(rescue_dir.rglob("*"))


def test_strict_tries_again_at_every_write_back_and_rescues_at_unmount(
        mount, h5src, rescue_dir):
    src_file = h5src / "data.h5"
    old = helpers.read_file(src_file)
    m = mount(h5src, options=[f"rescue={rescue_dir}"], allow_stderr=True,
              expect_exit=2)
    corrupt(m / "data.h5")
    bad = helpers.read_file(m / "data.h5")
    for _ in range(3):
        assert fsync_path(m / "data.h5") == errno.EIO
    res = cli("sync", m.path)
    assert res.returncode == 1, (res.stdout, res.stderr)
    res = cli("sync", m.path, m / "data.h5")
    assert res.returncode == 1, (res.stdout, res.stderr)
    assert helpers.read_file(src_file) == old
    assert file_status(m, "data.h5")["state"] == "invalid HDF5"
    # Unmount: still refused, so it goes to rescue and the daemon says 2.
    assert m.unmount() == 2
    assert helpers.read_file(src_file) == old
    assert helpers.tmp_files(h5src) == []
    assert helpers.read_file(rescue_dir / "data.h5") == bad
    assert any("data.h5" in ln and str(rescue_dir) in ln
               for ln in daemon_lines(m)), m.stderr()


def test_a_refused_image_leaves_source_untouched_across_whole_mount_syncs(
        mount, h5src, tmp_path):
    """The whole-mount sync refuses the image: SOURCE's file keeps its
    data and its times (nothing of the refused version lands there), so
    the repaired image is then written over it, with no conflict."""
    src_file = h5src / "data.h5"
    before = os.stat(src_file)
    old = helpers.read_file(src_file)
    m = mount(h5src, options=[f"rescue={tmp_path}/if-failed"],
              allow_stderr=True)
    corrupt(m / "data.h5")
    res = cli("sync", m.path)
    assert res.returncode == 1, (res.stdout, res.stderr)
    after = os.stat(src_file)
    assert helpers.read_file(src_file) == old
    assert (after.st_ino, after.st_mtime_ns) == \
        (before.st_ino, before.st_mtime_ns), \
        "a refused write-back changed SOURCE's file"
    make_hdf5(tmp_path / "good.h5", n=99)
    good = helpers.read_file(tmp_path / "good.h5")
    helpers.write_file(m / "data.h5", good)
    res = cli("sync", m.path)
    assert res.returncode == 0, (res.stdout, res.stderr)
    assert helpers.read_file(src_file) == good
    assert [n for n in os.listdir(h5src) if "conflict" in n] == []
    assert m.unmount() == 0


def test_strict_refuses_an_invalid_new_file_that_has_no_version_in_source(
        mount, empty_source, rescue_dir, tmp_path):
    make_hdf5(tmp_path / "v.h5")
    m = mount(empty_source, options=[f"rescue={rescue_dir}"],
              allow_stderr=True, expect_exit=2)
    helpers.write_file(m / "new.h5", helpers.read_file(tmp_path / "v.h5"))
    corrupt(m / "new.h5")
    assert fsync_path(m / "new.h5") == errno.EIO
    assert not (empty_source / "new.h5").exists()
    assert m.unmount() == 2
    assert not (empty_source / "new.h5").exists()
    assert (rescue_dir / "new.h5").exists()


@pytest.mark.parametrize("userblock", [512, 1024, 2048, 4096])
def test_strict_finds_the_signature_after_a_user_block(
        mount, empty_source, rescue_dir, userblock):
    src_file = empty_source / "ub.h5"
    make_hdf5(src_file, userblock=userblock)
    old = helpers.read_file(src_file)
    m = mount(empty_source, options=[f"rescue={rescue_dir}"],
              allow_stderr=True)
    helpers.read_file(m / "ub.h5")
    st = file_status(m, "ub.h5")
    assert st["hdf5"] and st["hdf5"]["userblock"] == userblock, st
    assert st["hdf5"]["opens"] is True, st
    corrupt(m / "ub.h5", ZEROED, base=userblock)
    assert fsync_path(m / "ub.h5") == errno.EIO
    assert helpers.read_file(src_file) == old
    assert file_status(m, "ub.h5")["state"] == "invalid HDF5"
    # Put the good bytes back: clean again, written.
    helpers.write_file(m / "ub.h5", old)
    assert fsync_path(m / "ub.h5") == 0
    assert m.unmount() == 0
    assert helpers.read_file(src_file) == old


@pytest.mark.parametrize("offset", [1024, 4096])
def test_strict_refuses_garbage_carrying_the_signature_at_a_valid_offset(
        mount, empty_source, rescue_dir, offset):
    sig = b"\x89HDF\r\n\x1a\n"
    helpers.write_file(empty_source / "blob.bin", b"old content")
    m = mount(empty_source, options=[f"rescue={rescue_dir}"],
              allow_stderr=True, expect_exit=2)
    data = bytearray(b"x" * (offset + 4096))
    data[offset:offset + 8] = sig
    helpers.write_file(m / "blob.bin", bytes(data))
    assert fsync_path(m / "blob.bin") == errno.EIO
    assert helpers.read_file(empty_source / "blob.bin") == b"old content"
    assert m.unmount() == 2
    assert helpers.read_file(rescue_dir / "blob.bin") == bytes(data)


@pytest.mark.parametrize("content", [
    b"plain text, no signature\n",
    b"\x00" * 70000,
    # the signature where HDF5 never looks for it
    b"y" * 100 + b"\x89HDF\r\n\x1a\n" + b"y" * 5000,
    b"z" * 1000 + b"\x89HDF\r\n\x1a\n" + b"z" * 5000,
], ids=["text", "zeros", "sig-at-100", "sig-at-1000"])
def test_strict_writes_an_image_without_the_signature_as_it_is(
        mount, h5src, content):
    m = mount(h5src)
    helpers.write_file(m / "data.h5", content)
    helpers.write_file(m / "other.bin", content)
    assert fsync_path(m / "data.h5") == 0
    assert fsync_path(m / "other.bin") == 0
    assert helpers.read_file(h5src / "data.h5") == content
    assert helpers.read_file(h5src / "other.bin") == content
    assert m.unmount() == 0


def test_a_valid_hdf5_edit_passes_strict_validation(mount, h5src):
    import h5py
    m = mount(h5src)
    with h5py.File(m / "data.h5", "r+") as f:
        f["ints"][:10] = -1
        f.create_dataset("added", data=[1.5, 2.5])
    assert fsync_path(m / "data.h5") == 0
    assert helpers.read_file(h5src / "data.h5") == \
        helpers.read_file(m / "data.h5")
    with h5py.File(h5src / "data.h5", "r") as f:
        assert list(f["ints"][:11]) == [-1] * 10 + [10]
        assert list(f["added"][:]) == [1.5, 2.5]
    assert m.unmount() == 0


# --- warn and off -------------------------------------------------------

def test_warn_logs_and_writes_an_invalid_image(mount, h5src):
    m = mount(h5src, options=["validate=warn"], allow_stderr=True)
    corrupt(m / "data.h5")
    bad = helpers.read_file(m / "data.h5")
    assert fsync_path(m / "data.h5") == 0
    assert helpers.read_file(h5src / "data.h5") == bad
    assert any("data.h5" in ln for ln in daemon_lines(m)), \
        f"no log line names data.h5: {m.stderr()!r}"
    assert file_status(m, "data.h5")["state"] == "clean"
    assert m.unmount() == 0
    assert helpers.read_file(h5src / "data.h5") == bad


def test_off_writes_an_invalid_image_without_a_check_or_a_log(mount, h5src):
    m = mount(h5src, options=["validate=off"])  # stderr must stay empty
    corrupt(m / "data.h5")
    bad = helpers.read_file(m / "data.h5")
    assert fsync_path(m / "data.h5") == 0
    assert helpers.read_file(h5src / "data.h5") == bad
    assert m.unmount() == 0
    assert helpers.read_file(h5src / "data.h5") == bad


def test_a_wrong_validate_value_is_refused_at_mount(tmp_path, empty_source):
    mp = tmp_path / "mp"
    mp.mkdir()
    from acceptance import DAEMON
    res = helpers.run([str(DAEMON), "-f", "-o", "validate=maybe",
                       str(empty_source), str(mp)], timeout=20, check=False)
    assert res.returncode != 0
    assert "validate" in res.stderr, res.stderr
    assert not helpers.mounts_at(mp)


# --- writers that still have the file open ------------------------------

WRITER = r"""
import sys, h5py, numpy as np
path, mode = sys.argv[1], sys.argv[2]
f = h5py.File(path, "w", libver="latest")
f.create_dataset("series", data=np.arange(1000.0), maxshape=(None,),
                 chunks=(100,))
f.create_group("g").attrs["k"] = 7
if mode == "swmr":
    f.swmr_mode = True
    ds = f["series"]
    ds.resize((2000,))
    ds[1000:] = np.arange(1000.0)
    ds.flush()
f.flush()
print("ready", flush=True)
sys.stdin.readline()
f.close()
print("closed", flush=True)
"""


@pytest.mark.parametrize("mode", ["latest", "swmr"])
def test_a_file_its_writer_still_has_open_validates_by_structure(
        mount, empty_source, mode):
    m = mount(empty_source)
    path = m / "live.h5"
    proc = subprocess.Popen([helpers.PYTHON, "-c", WRITER, str(path), mode],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 30 * SLOWDOWN)
        assert ready, "the writer did not get ready"
        line = proc.stdout.readline()
        assert line == "ready\n", (line, proc.stderr.read())
        # fsync while the writer holds it: accepted, written as it is.
        assert fsync_path(path) == 0
        assert helpers.read_file(empty_source / "live.h5") == \
            helpers.read_file(path)
        st = file_status(m, "live.h5")
        assert st["last_writeback"]["ok"] is True, st
        assert st["hdf5"] is not None, st
        assert st["hdf5"]["superblock_version"] >= 2, st
        assert st["hdf5"]["writer_open"] is True, st
        if mode == "swmr":
            assert st["hdf5"]["swmr_writer"] is True, st
        assert st["hdf5"]["opens"] is True, st
        proc.stdin.write("\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=30 * SLOWDOWN)
        assert proc.returncode == 0 and out == "closed\n", err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert m.unmount() == 0
    assert h5_readable(empty_source / "live.h5")


def test_status_reports_what_libhdf5_sees_in_a_valid_image(mount, h5src):
    helpers.write_file(h5src / "plain.txt", b"not hdf5")
    m = mount(h5src)
    helpers.read_file(m / "data.h5")
    helpers.read_file(m / "plain.txt")
    st = file_status(m, "data.h5")
    h = st["hdf5"]
    assert h is not None, st
    assert h["superblock_version"] == 0 and h["userblock"] == 0, h
    assert h["opens"] is True and h["error"] is None, h
    assert h["writer_open"] is False and h["swmr_writer"] is False, h
    assert h["objects"] >= 4, h  # root, ints, grp, grp/chunked
    assert file_status(m, "plain.txt")["hdf5"] is None
    assert m.unmount() == 0


def test_libhdf5_error_stacks_never_reach_the_log(mount, h5src, rescue_dir):
    """The refusal is logged in the daemon's words; libhdf5's own error
    stack (HDF5-DIAG ...) is not printed, whichever thread looked at the
    image: fsync, the sync command, status, or the unmount."""
    m = mount(h5src, options=[f"rescue={rescue_dir}"], allow_stderr=True,
              expect_exit=2)
    corrupt(m / "data.h5")
    assert fsync_path(m / "data.h5") == errno.EIO
    assert cli("sync", m.path).returncode == 1
    assert file_status(m, "data.h5")["state"] == "invalid HDF5"
    assert m.unmount() == 2
    assert refused_log_lines(m, "data.h5"), m.stderr()
    assert_no_libhdf5_noise(m)
