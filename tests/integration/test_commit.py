"""Write-back occasions besides fsync and unmount: `commit=SECONDS`
(periodic, skipping and retrying what fails), `sync_on_close` (written
when the last handle closes, before close() returns), and per-file
volatile (`setfattr -n user.h5memfs.volatile -v 1 FILE`: that file's data
is never written back until the attribute is cleared)."""

import errno
import os
import time

import pytest

import helpers
from acceptance import (file_status, fsync_path, make_hdf5,
                        mount_status, rescue_dir,  # noqa: F401 (fixture)
                        wait_until)

VOLATILE = "user.h5memfs.volatile"
COMMIT_WAIT = 6  # seconds a commit=1 change may take to reach SOURCE


@pytest.fixture
def src(empty_source):
    helpers.write_file(empty_source / "f.txt", b"version 0\n")
    make_hdf5(empty_source / "data.h5")
    return empty_source


def source_has(path, data):
    def check():
        try:
            return helpers.read_file(path) == data
        except FileNotFoundError:
            return False
    return check


# --- commit ---------------------------------------------------------------

def test_commit_writes_dirty_files_back_periodically(mount, src):
    m = mount(src, options=["commit=1"])
    fd = os.open(m / "f.txt", os.O_RDWR)
    try:
        # The writer keeps its handle open: commits happen anyway.
        os.pwrite(fd, b"version 1\n", 0)
        wait_until(source_has(src / "f.txt", b"version 1\n"), COMMIT_WAIT,
                   what="the first commit")
        os.pwrite(fd, b"version 2\n", 0)
        wait_until(source_has(src / "f.txt", b"version 2\n"), COMMIT_WAIT,
                   what="the second commit")
    finally:
        os.close(fd)
    # A write the kernel flushed while a pass copied the file keeps it
    # dirty until the next pass: wait for one, do not sample.
    wait_until(lambda: mount_status(m)["dirty_files"] == 0, COMMIT_WAIT,
               what="a pass with nothing left dirty")
    ms = mount_status(m)
    assert ms["commits"] >= 1 and ms["dirty_files"] == 0, ms
    assert file_status(m, "f.txt")["state"] == "clean"
    # A clean file is not rewritten by later passes.
    ino = os.stat(src / "f.txt").st_ino
    before = mount_status(m)["commits"]
    wait_until(lambda: mount_status(m)["commits"] >= before + 2, 5,
               what="two more commit passes")
    assert os.stat(src / "f.txt").st_ino == ino
    assert helpers.tmp_files(src) == []
    assert m.unmount() == 0


def test_commit_writes_new_files_and_directories(mount, src):
    m = mount(src, options=["commit=1"])
    os.makedirs(m / "new/dir")
    helpers.write_file(m / "new/dir/n.bin", b"\x01" * 100000)
    os.rename(m / "f.txt", m / "new/renamed.txt")
    wait_until(source_has(src / "new/dir/n.bin", b"\x01" * 100000),
               COMMIT_WAIT, what="the commit of a new file")
    wait_until(lambda: (src / "new/renamed.txt").exists() and
               not (src / "f.txt").exists(), COMMIT_WAIT,
               what="the commit of a rename")
    assert m.unmount() == 0


def test_commit_is_off_by_default(mount, src):
    m = mount(src)
    helpers.write_file(m / "f.txt", b"not committed\n")
    time.sleep(2.5)
    assert helpers.read_file(src / "f.txt") == b"version 0\n"
    assert mount_status(m)["commits"] == 0
    assert m.unmount() == 0
    assert helpers.read_file(src / "f.txt") == b"not committed\n"


def test_commit_skips_an_invalid_hdf5_image_and_retries_later(
        mount, src, tmp_path):
    old = helpers.read_file(src / "data.h5")
    m = mount(src, options=["commit=1", f"rescue={tmp_path}/if-failed"],
              allow_stderr=True)
    os.truncate(m / "data.h5", 2048)  # libhdf5 cannot open it any more
    helpers.write_file(m / "f.txt", b"committed anyway\n")
    wait_until(source_has(src / "f.txt", b"committed anyway\n"),
               COMMIT_WAIT, what="the commit of the other file")
    wait_until(lambda: file_status(m, "data.h5")["state"] == "invalid HDF5",
               COMMIT_WAIT, what="the refusal")
    passes = mount_status(m)["commits"]
    wait_until(lambda: mount_status(m)["commits"] >= passes + 1, 5,
               what="another commit pass")
    assert helpers.read_file(src / "data.h5") == old
    assert file_status(m, "data.h5")["state"] == "invalid HDF5"
    # Repaired: the next pass writes it.
    make_hdf5(tmp_path / "good.h5", n=55)
    good = helpers.read_file(tmp_path / "good.h5")
    helpers.write_file(m / "data.h5", good)
    wait_until(source_has(src / "data.h5", good), COMMIT_WAIT,
               what="the commit of the repaired image")
    assert m.unmount() == 0


# --- sync_on_close --------------------------------------------------------

def test_sync_on_close_writes_back_before_close_returns(mount, src):
    m = mount(src, options=["sync_on_close"])
    with open(m / "f.txt", "wb") as f:
        f.write(b"closed 1\n")
    assert helpers.read_file(src / "f.txt") == b"closed 1\n"
    os.makedirs(m / "a/b")
    with open(m / "a/b/new.bin", "wb") as f:
        f.write(b"n" * 300000)
    assert helpers.read_file(src / "a/b/new.bin") == b"n" * 300000
    assert mount_status(m)["dirty_files"] == 0
    assert m.unmount() == 0


def test_sync_on_close_writes_when_the_last_handle_closes(mount, src):
    m = mount(src, options=["sync_on_close"])
    fd1 = os.open(m / "f.txt", os.O_RDWR)
    fd2 = os.open(m / "f.txt", os.O_RDONLY)
    os.pwrite(fd1, b"two handles\n", 0)
    os.close(fd1)
    os.close(fd2)
    assert helpers.read_file(src / "f.txt") == b"two handles\n"
    assert m.unmount() == 0


def test_sync_on_close_makes_an_h5py_file_valid_in_source_at_close(
        mount, src):
    import h5py
    m = mount(src, options=["sync_on_close"])
    with h5py.File(m / "data.h5", "a") as f:
        f["new"] = [1, 2, 3]
    with h5py.File(src / "data.h5", "r") as f:
        assert list(f["new"][:]) == [1, 2, 3]
    assert m.unmount() == 0


def test_sync_on_close_reports_a_refused_write_back_at_close(
        mount, src, rescue_dir):
    old = helpers.read_file(src / "data.h5")
    m = mount(src, options=["sync_on_close", f"rescue={rescue_dir}"],
              allow_stderr=True, expect_exit=2)
    fd = os.open(m / "data.h5", os.O_RDWR)
    os.ftruncate(fd, 2048)
    with pytest.raises(OSError) as e:
        os.close(fd)
    assert e.value.errno == errno.EIO
    assert helpers.read_file(src / "data.h5") == old
    assert file_status(m, "data.h5")["state"] == "invalid HDF5"
    assert m.unmount() == 2
    assert os.path.getsize(rescue_dir / "data.h5") == 2048


# --- per-file volatile -------------------------------------------------------

def test_a_volatile_file_is_never_written_back(mount, src):
    before = os.stat(src / "f.txt")
    m = mount(src)
    p = m / "f.txt"
    os.setxattr(p, VOLATILE, b"1")
    assert os.getxattr(p, VOLATILE) == b"1"
    helpers.write_file(p, b"scratch changes\n")
    assert fsync_path(p) == 0
    assert helpers.read_file(src / "f.txt") == b"version 0\n"
    st = file_status(m, "f.txt")
    assert st["state"] == "volatile" and st["volatile"] is True, st
    helpers.write_file(m / "other.txt", b"ordinary")
    assert m.unmount() == 0
    assert helpers.read_file(src / "f.txt") == b"version 0\n"
    assert helpers.read_file(src / "other.txt") == b"ordinary"
    assert VOLATILE not in os.listxattr(src / "f.txt")
    # Nothing of the volatile file's changes reached SOURCE, not even the
    # mtime its writes gave it (other mounts would see a changed file).
    after = os.stat(src / "f.txt")
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == \
        (before.st_ino, before.st_size, before.st_mtime_ns)


def test_a_volatile_file_is_skipped_by_commit_and_sync_on_close(mount, src):
    m = mount(src, options=["commit=1", "sync_on_close"])
    os.setxattr(m / "f.txt", VOLATILE, b"1")
    with open(m / "f.txt", "r+b") as f:
        f.write(b"never\n")
    assert helpers.read_file(src / "f.txt") == b"version 0\n"
    passes = mount_status(m)["commits"]
    wait_until(lambda: mount_status(m)["commits"] >= passes + 2, 5,
               what="two commit passes")
    assert helpers.read_file(src / "f.txt") == b"version 0\n"
    assert m.unmount() == 0
    assert helpers.read_file(src / "f.txt") == b"version 0\n"


@pytest.mark.parametrize("clear", ["value 0", "removexattr"])
def test_clearing_volatile_writes_the_changes_at_the_next_write_back(
        mount, src, clear):
    m = mount(src)
    p = m / "f.txt"
    os.setxattr(p, VOLATILE, b"1")
    helpers.write_file(p, b"made while volatile\n")
    assert fsync_path(p) == 0
    assert helpers.read_file(src / "f.txt") == b"version 0\n"
    if clear == "value 0":
        os.setxattr(p, VOLATILE, b"0")
    else:
        os.removexattr(p, VOLATILE)
    try:
        value = os.getxattr(p, VOLATILE)
    except OSError as e:
        assert e.errno == errno.ENODATA
        value = None
    assert value in (None, b"0"), value
    assert file_status(m, "f.txt")["state"] == "dirty"
    assert fsync_path(p) == 0
    assert helpers.read_file(src / "f.txt") == b"made while volatile\n"
    assert m.unmount() == 0
    assert helpers.read_file(src / "f.txt") == b"made while volatile\n"
    assert [x for x in os.listxattr(src / "f.txt")
            if x.startswith("user.h5memfs")] == []


def test_clearing_volatile_before_unmount_writes_at_unmount(mount, src):
    m = mount(src)
    p = m / "f.txt"
    os.setxattr(p, VOLATILE, b"1")
    helpers.write_file(p, b"kept after all\n")
    os.setxattr(p, VOLATILE, b"0")
    assert m.unmount() == 0
    assert helpers.read_file(src / "f.txt") == b"kept after all\n"


def test_a_volatile_value_other_than_0_or_1_is_refused(mount, src):
    m = mount(src)
    with pytest.raises(OSError) as e:
        os.setxattr(m / "f.txt", VOLATILE, b"yes")
    assert e.value.errno == errno.EINVAL
    assert m.unmount() == 0
