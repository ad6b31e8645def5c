"""Errors keep data: when SOURCE is full, read-only or refuses the
write-back, fsync reports the error (ENOSPC, EROFS, EPERM/EACCES), the
image stays dirty in memory, SOURCE keeps its previous file whole (no
temporaries left), and a later write-back succeeds once the cause is
gone. At unmount or SIGTERM what still cannot be written goes to
`rescue=DIR` (default /var/tmp/h5memfs-rescue/MOUNTNAME-DATE-PID-XXXXXX) at its
path in the mount, the log names each file and where it went, and the
daemon exits 2.

SOURCE is the directory `src` of a 2 MiB tmpfs; a filler file beside it
(outside the mount's view) fills the filesystem."""

import errno
import fcntl
import os
import re
import shutil
import signal
import struct
import uuid
from pathlib import Path

import pytest

import helpers
from acceptance import (chattr_i, cli, daemon_lines, file_status,  # noqa: F401
                        fill, fsync_path, mount_status, remount,
                        rescue_dir, small_tmpfs, wait_until,
                        xfs)

KiB = 1 << 10
OLD = b"old content\n" * 1000          # 12 KB in SOURCE
NEW = bytes(range(256)) * (2400)       # 600 KB written in the mount


@pytest.fixture
def fs(small_tmpfs):
    src = small_tmpfs / "src"
    helpers.write_file(src / "f.bin", OLD)
    os.makedirs(src / "sub/deeper")
    helpers.write_file(src / "sub/deeper/g.bin", OLD)
    return small_tmpfs, src


def xfs_shutdown(mountpoint):
    """Force an XFS shutdown (XFS_IOC_GOINGDOWN, no log flush): every
    later I/O on it fails with EIO. Done with the ioctl rather than
    `xfs_io -x -c shutdown`, which first statfs()es every mount of the
    machine and so waits on any slow FUSE mount elsewhere."""
    fd = os.open(mountpoint, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.ioctl(fd, 0x8004587D, struct.pack("I", 2))
    finally:
        os.close(fd)


def spare_rescue(top):
    """A rescue directory for mounts that must end with exit 0: should the
    test fail with SOURCE still full or read-only, what the daemon saves
    goes beside the test's files, not to /var/tmp."""
    return f"rescue={top.parent}/rescue-if-failed"


def assert_kept(m, src, rel, new, old, st_before=None):
    """SOURCE has old, whole (and untouched: same mtime); the mount still
    has new, dirty."""
    assert helpers.read_file(src / rel) == old
    if st_before is not None:
        st = os.stat(src / rel)
        assert (st.st_ino, st.st_size, st.st_mtime_ns) == \
            (st_before.st_ino, st_before.st_size, st_before.st_mtime_ns), \
            "the failed write-back changed SOURCE's file"
    assert helpers.tmp_files(src) == []
    assert helpers.read_file(m / rel) == new
    st = file_status(m, rel)
    assert st["state"] == "dirty", st
    assert st["last_writeback"]["ok"] is False and \
        st["last_writeback"]["error"], st


def test_a_full_source_gives_enospc_keeps_the_data_and_retries(fs, mount):
    top, src = fs
    fill(top / "filler", 1600 * KiB)
    before = os.stat(src / "f.bin")
    m = mount(src, options=[spare_rescue(top)], allow_stderr=True)
    helpers.write_file(m / "f.bin", NEW)
    assert fsync_path(m / "f.bin") == errno.ENOSPC
    assert_kept(m, src, "f.bin", NEW, OLD, before)
    assert mount_status(m)["writeback_errors"] >= 1
    assert any("f.bin" in ln for ln in daemon_lines(m)), m.stderr()
    # Room again: the next write-back goes through.
    os.unlink(top / "filler")
    assert fsync_path(m / "f.bin") == 0
    assert helpers.read_file(src / "f.bin") == NEW
    assert file_status(m, "f.bin")["state"] == "clean"
    assert m.unmount() == 0
    assert helpers.read_file(src / "f.bin") == NEW


def test_a_read_only_source_gives_erofs_keeps_the_data_and_retries(
        fs, mount):
    top, src = fs
    m = mount(src, options=[spare_rescue(top)], allow_stderr=True)
    helpers.write_file(m / "f.bin", NEW)
    before = os.stat(src / "f.bin")
    remount(top, "ro")
    try:
        assert fsync_path(m / "f.bin") == errno.EROFS
        assert_kept(m, src, "f.bin", NEW, OLD, before)
    finally:
        remount(top, "rw")
    assert fsync_path(m / "f.bin") == 0
    assert helpers.read_file(src / "f.bin") == NEW
    assert m.unmount() == 0


def test_a_directory_that_refuses_changes_gives_an_error_and_retries(
        fs, mount):
    top, src = fs
    m = mount(src, options=[spare_rescue(top)], allow_stderr=True)
    helpers.write_file(m / "sub/deeper/g.bin", NEW)
    helpers.write_file(m / "f.bin", b"unaffected")
    chattr_i(src / "sub/deeper", True)
    try:
        err = fsync_path(m / "sub/deeper/g.bin")
        assert err in (errno.EPERM, errno.EACCES), errno.errorcode.get(err)
        assert_kept(m, src, "sub/deeper/g.bin", NEW, OLD)
        # Another file is not held back by it.
        assert fsync_path(m / "f.bin") == 0
        assert helpers.read_file(src / "f.bin") == b"unaffected"
    finally:
        chattr_i(src / "sub/deeper", False)
    assert fsync_path(m / "sub/deeper/g.bin") == 0
    assert helpers.read_file(src / "sub/deeper/g.bin") == NEW
    assert m.unmount() == 0


def test_commit_retries_until_room_is_made(fs, mount):
    top, src = fs
    fill(top / "filler", 1600 * KiB)
    before = os.stat(src / "f.bin")
    m = mount(src, options=["commit=1", spare_rescue(top)],
              allow_stderr=True)
    helpers.write_file(m / "f.bin", NEW)
    wait_until(lambda: file_status(m, "f.bin")["last_writeback"]["error"],
               timeout=10, what="a failed commit")
    assert_kept(m, src, "f.bin", NEW, OLD, before)
    os.unlink(top / "filler")
    wait_until(lambda: helpers.read_file(src / "f.bin") == NEW, timeout=10,
               what="the commit after space was freed")
    assert [n for n in os.listdir(src) if "conflict" in n] == []
    assert m.unmount() == 0


def test_the_sync_command_fails_on_a_full_source_then_succeeds(fs, mount):
    """A whole-mount sync that cannot write a file leaves SOURCE's file
    as it was (data and times): the retry writes it, no conflict."""
    top, src = fs
    fill(top / "filler", 1600 * KiB)
    os.utime(src / "f.bin", ns=(helpers.T_OLD_NS, helpers.T_OLD_NS))
    before = os.stat(src / "f.bin")
    m = mount(src, options=[spare_rescue(top)], allow_stderr=True)
    helpers.write_file(m / "f.bin", NEW)
    res = cli("sync", m.path)
    assert res.returncode == 1, res.stderr
    assert_kept(m, src, "f.bin", NEW, OLD, before)
    os.unlink(top / "filler")
    res = cli("sync", m.path)
    assert res.returncode == 0, res.stderr
    assert helpers.read_file(src / "f.bin") == NEW
    assert [n for n in os.listdir(src) if "conflict" in n] == []
    assert m.unmount() == 0


# --- rescue at the end of the mount ------------------------------------

def make_changes(m):
    """Three dirty files: in SOURCE, nested, and new in a new directory."""
    helpers.write_file(m / "f.bin", b"F" * 5000)
    helpers.write_file(m / "sub/deeper/g.bin", b"G" * 7000)
    os.makedirs(m / "brand/new")
    helpers.write_file(m / "brand/new/h.txt", b"H" * 300)
    return {"f.bin": b"F" * 5000, "sub/deeper/g.bin": b"G" * 7000,
            "brand/new/h.txt": b"H" * 300}


def assert_rescued(m, src, where, changes):
    for rel, data in changes.items():
        assert helpers.read_file(where / rel) == data, rel
        assert any(rel in ln and str(where) in ln
                   for ln in daemon_lines(m)), (rel, m.stderr())
    assert helpers.read_file(src / "f.bin") == OLD
    assert helpers.read_file(src / "sub/deeper/g.bin") == OLD
    assert not (src / "brand").exists()
    assert helpers.tmp_files(src) == []


@pytest.mark.parametrize("end", ["unmount", "sigterm"])
def test_what_cannot_be_written_at_the_end_goes_to_rescue_and_exits_2(
        fs, mount, rescue_dir, end):
    top, src = fs
    m = mount(src, options=[f"rescue={rescue_dir}"], allow_stderr=True,
              expect_exit=2)
    changes = make_changes(m)
    remount(top, "ro")
    try:
        rc = m.unmount() if end == "unmount" else m.sigterm()
    finally:
        remount(top, "rw")
    assert_rescued(m, src, rescue_dir, changes)
    assert rc == 2


def test_a_full_source_at_unmount_goes_to_rescue(fs, mount, rescue_dir):
    top, src = fs
    fill(top / "filler", 1600 * KiB)
    m = mount(src, options=[f"rescue={rescue_dir}"], allow_stderr=True,
              expect_exit=2)
    helpers.write_file(m / "f.bin", NEW)
    rc = m.unmount()
    assert helpers.read_file(rescue_dir / "f.bin") == NEW
    assert helpers.read_file(src / "f.bin") == OLD
    assert helpers.tmp_files(src) == []
    assert rc == 2


def test_only_what_failed_goes_to_rescue(fs, mount, rescue_dir):
    top, src = fs
    m = mount(src, options=[f"rescue={rescue_dir}"], allow_stderr=True,
              expect_exit=2)
    helpers.write_file(m / "f.bin", b"fine")
    helpers.write_file(m / "sub/deeper/g.bin", b"blocked")
    chattr_i(src / "sub/deeper", True)
    try:
        rc = m.unmount()
    finally:
        chattr_i(src / "sub/deeper", False)
    assert helpers.read_file(src / "f.bin") == b"fine"
    assert helpers.read_file(src / "sub/deeper/g.bin") == OLD
    assert helpers.read_file(rescue_dir / "sub/deeper/g.bin") == b"blocked"
    assert not (rescue_dir / "f.bin").exists()
    assert rc == 2


def test_the_default_rescue_directory_is_named_after_mount_date_and_pid(
        fs, mount, tmp_path):
    top, src = fs
    name = f"rescue-{uuid.uuid4().hex[:8]}"
    mp = tmp_path / name
    mp.mkdir()
    base = Path("/var/tmp/h5memfs-rescue")
    m = mount(src, mountpoint=mp, allow_stderr=True, expect_exit=2)
    pid = m.pid
    helpers.write_file(m / "f.bin", b"to be rescued")
    found = []
    try:
        remount(top, "ro")
        try:
            rc = m.unmount()
        finally:
            remount(top, "rw")
        found = [d for d in (base.iterdir() if base.exists() else [])
                 if d.name.startswith(name + "-")]
        assert len(found) == 1, f"no {base}/{name}-DATE-PID: {m.stderr()}"
        assert re.fullmatch(rf"{name}-\d{{8}}-\d{{6}}-{pid}-\w{{6}}",
                            found[0].name), found[0].name
        assert helpers.read_file(found[0] / "f.bin") == b"to be rescued"
        assert any(str(found[0]) in ln for ln in daemon_lines(m)), m.stderr()
        assert rc == 2
    finally:
        for d in (base.iterdir() if base.exists() else []):
            if d.name.startswith(name + "-"):
                shutil.rmtree(d, ignore_errors=True)


def test_a_rescue_that_fails_too_is_logged_and_exits_non_zero(
        fs, mount, tmp_path):
    top, src = fs
    m = mount(src, options=[f"rescue={top}/rescue"], allow_stderr=True,
              expect_exit=2)
    helpers.write_file(m / "f.bin", b"nowhere to go")
    remount(top, "ro")  # neither SOURCE nor the rescue dir can be written
    try:
        rc = m.unmount()
    finally:
        remount(top, "rw")
    assert helpers.read_file(src / "f.bin") == OLD
    assert any("f.bin" in ln for ln in daemon_lines(m)), m.stderr()
    assert rc != 0


def test_a_file_that_could_not_be_written_then_was_is_not_rescued(
        fs, mount, rescue_dir):
    top, src = fs
    m = mount(src, options=[f"rescue={rescue_dir}"], allow_stderr=True)
    helpers.write_file(m / "f.bin", NEW)
    remount(top, "ro")
    try:
        assert fsync_path(m / "f.bin") == errno.EROFS
    finally:
        remount(top, "rw")
    assert m.unmount() == 0
    assert helpers.read_file(src / "f.bin") == NEW
    assert not rescue_dir.exists()


def test_a_signal_during_an_error_still_exits_cleanly_after_recovery(
        fs, mount, rescue_dir):
    """SIGTERM once SOURCE accepts writes again: written, exit 0."""
    top, src = fs
    fill(top / "filler", 1600 * KiB)
    m = mount(src, options=[f"rescue={rescue_dir}"], allow_stderr=True)
    helpers.write_file(m / "f.bin", NEW)
    assert fsync_path(m / "f.bin") == errno.ENOSPC
    os.unlink(top / "filler")
    assert m.signal(signal.SIGTERM) == 0
    assert helpers.read_file(src / "f.bin") == NEW


def test_io_errors_keep_the_data_and_it_is_rescued_at_unmount(
        xfs, mount, rescue_dir):
    """SOURCE's filesystem fails (an XFS forced shutdown: every I/O is
    EIO): fsync reports EIO, the image stays dirty in memory, and the
    unmount saves it to rescue and exits 2."""
    top = xfs[0]
    src = top / "src"
    src.mkdir()
    helpers.write_file(src / "f.bin", OLD)
    os.sync()
    m = mount(src, options=[f"rescue={rescue_dir}"], allow_stderr=True,
              expect_exit=2)
    helpers.write_file(m / "f.bin", NEW)
    xfs_shutdown(top)
    assert fsync_path(m / "f.bin") == errno.EIO
    assert helpers.read_file(m / "f.bin") == NEW
    st = file_status(m, "f.bin")
    assert st["state"] == "dirty" and st["last_writeback"]["ok"] is False
    rc = m.unmount()
    assert helpers.read_file(rescue_dir / "f.bin") == NEW
    assert any("f.bin" in ln and str(rescue_dir) in ln
               for ln in daemon_lines(m)), m.stderr()
    assert rc == 2
