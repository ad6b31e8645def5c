"""Conflicts: the identity (device, inode, size, mtime) of each file in
SOURCE is recorded when it is loaded. If SOURCE's file changed since
(another program, another h5memfs mount over the same SOURCE), the
write-back never overwrites it: the image goes beside it as
STEM.conflict-HOST-YYYYmmdd-HHMMSS.EXT (with -N if that name is taken),
fsync returns EIO, the log says "conflict: ...", status says "conflict",
and the image then counts as saved."""

import datetime
import errno
import os
import re
import threading
import time

import pytest

import helpers
from acceptance import (SLOWDOWN, cli, conflict_files, conflict_regex,
                        daemon_lines, ext4, file_status, fsync_path,  # noqa
                        hostname_candidates, mount_status, on_open_of,
                        random_bytes, xfs)


def load(path):
    """Open and read: the file is loaded and its identity recorded."""
    return helpers.read_file(path)


# A conflict needs changes in the mount that are not yet written back (or
# a handle open across the change): a clean image nobody has open is
# simply loaded again from SOURCE when it is next opened (docs/design.md), as
# test_a_clean_image_is_reloaded_instead_of_conflicting checks.

def behind(path, data):
    """Another program rewrites the file in SOURCE, in place."""
    with open(path, "r+b") as f:
        f.truncate(0)
        f.write(data)


def conflict_log_lines(m):
    return [ln for ln in daemon_lines(m) if "conflict:" in ln]


@pytest.fixture
def src(empty_source):
    helpers.write_file(empty_source / "data.h5", b"original\n" * 100)
    os.utime(empty_source / "data.h5", ns=(helpers.T_OLD_NS,
                                           helpers.T_OLD_NS))
    return empty_source


def assert_conflict_copy(directory, stem, ext, content, start, end):
    names = conflict_files(directory, stem, ext)
    assert len(names) == 1, os.listdir(directory)
    stamp = conflict_regex(stem, ext).match(names[0]) or \
        conflict_regex(stem, ext, seq=True).match(names[0])
    when = datetime.datetime.strptime(stamp.group(1), "%Y%m%d-%H%M%S")
    assert start.replace(microsecond=0) - datetime.timedelta(seconds=1) \
        <= when <= end + datetime.timedelta(seconds=1), (names[0], start)
    assert helpers.read_file(directory / names[0]) == content
    return names[0]


def test_a_file_changed_in_source_since_load_is_not_overwritten(mount, src):
    m = mount(src, allow_stderr=True)
    start = datetime.datetime.now()
    fd = os.open(m / "data.h5", os.O_RDWR)
    try:
        os.pwrite(fd, b"OURS", 0)
        behind(src / "data.h5", b"written by another program\n")
        theirs = helpers.read_file(src / "data.h5")
        with pytest.raises(OSError) as e:
            os.fsync(fd)
        assert e.value.errno == errno.EIO
        ours = os.pread(fd, 1 << 20, 0)
    finally:
        os.close(fd)
    end = datetime.datetime.now()
    assert ours == b"OURS" + (b"original\n" * 100)[4:]
    assert helpers.read_file(src / "data.h5") == theirs
    name = assert_conflict_copy(src, "data", ".h5", ours, start, end)
    assert helpers.tmp_files(src) == []
    lines = conflict_log_lines(m)
    assert lines and any(name in ln for ln in lines), m.stderr()
    st = file_status(m, "data.h5")
    assert st["state"] == "conflict", st
    assert st["dirty_bytes"] == 0 and st["last_writeback"]["ok"] is False
    ms = mount_status(m)
    assert ms["conflicts"] == 1 and ms["dirty_files"] == 0, ms
    # Saved beside: nothing left to write, the daemon exits 0.
    assert m.unmount() == 0
    assert helpers.read_file(src / "data.h5") == theirs
    assert conflict_files(src, "data", ".h5") == [name]


@pytest.mark.parametrize("kind", ["xfs", "ext4"])
def test_a_file_put_at_the_name_during_a_write_back_stays_and_ours_goes_beside(
        mount, request, kind):
    """Another node replaces the file after the write-back checked it and
    before its rename (here: when the write-back opens its temporary).
    That file stays whole at the name, and the mount's version goes
    beside: the rename exchanges and checks what came out. On XFS the
    new version is a clone of the file that was checked, never of what
    the name holds by then."""
    mp, _ = request.getfixturevalue(kind)
    src = mp / "src"
    src.mkdir()
    ours = bytearray(random_bytes(1 << 20, 5))
    helpers.write_file(src / "data.bin", bytes(ours))
    theirs = random_bytes(1 << 20, 6)
    helpers.write_file(src / "theirs.new", theirs)
    m = mount(src, allow_stderr=True)
    fd = os.open(m / "data.bin", os.O_RDWR)
    try:
        os.pwrite(fd, b"OURS" * 1024, 0)
        ours[:4096] = b"OURS" * 1024
        with on_open_of(mp, ".h5memfs-tmp.", lambda: os.rename(
                src / "theirs.new", src / "data.bin")) as seen:
            with pytest.raises(OSError) as e:
                os.fsync(fd)
        assert seen, "the write-back opened no temporary"
        assert e.value.errno == errno.EIO
    finally:
        os.close(fd)
    assert helpers.read_file(src / "data.bin") == theirs
    names = conflict_files(src, "data", ".bin")
    assert len(names) == 1, os.listdir(src)
    assert helpers.read_file(src / names[0]) == bytes(ours)
    assert helpers.tmp_files(src) == []
    assert conflict_log_lines(m), m.stderr()
    assert m.unmount() == 0
    assert helpers.read_file(src / "data.bin") == theirs


@pytest.mark.parametrize("how", ["touch", "same size, new inode, same mtime",
                                 "grown"])
def test_each_part_of_the_identity_reveals_a_change(mount, src, how):
    m = mount(src, allow_stderr=True)
    helpers.write_file(m / "data.h5", b"mine", "r+b")
    p = src / "data.h5"
    if how == "touch":
        os.utime(p, ns=(helpers.T_OLD_NS, helpers.T_OLD_NS + 1_000_000))
    elif how == "grown":
        st = os.stat(p)
        with open(p, "ab") as f:
            f.write(b"+")
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    else:
        st = os.stat(p)
        tmp = src / "replacement"
        helpers.write_file(tmp, b"R" * st.st_size)
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.rename(tmp, p)
    theirs = helpers.read_file(p)
    assert fsync_path(m / "data.h5") == errno.EIO
    assert helpers.read_file(p) == theirs
    assert len(conflict_files(src, "data", ".h5")) == 1
    assert m.unmount() == 0
    assert helpers.read_file(p) == theirs


def test_a_second_mount_over_the_same_source_conflicts_instead_of_clobbering(
        mount, src):
    a = mount(src)
    b = mount(src, allow_stderr=True)
    # Both edit the version they loaded; A writes back first.
    helpers.write_file(a / "data.h5", b"from mount A", "r+b")
    helpers.write_file(b / "data.h5", b"from mount B", "r+b")
    from_b = helpers.read_file(b / "data.h5")
    assert fsync_path(a / "data.h5") == 0
    from_a = helpers.read_file(src / "data.h5")
    assert from_a.startswith(b"from mount A")
    assert fsync_path(b / "data.h5") == errno.EIO
    assert helpers.read_file(src / "data.h5") == from_a
    names = conflict_files(src, "data", ".h5")
    assert len(names) == 1
    assert helpers.read_file(src / names[0]) == from_b
    assert conflict_log_lines(b), b.stderr()
    assert b.unmount() == 0
    assert a.unmount() == 0
    assert helpers.read_file(src / "data.h5") == from_a


def test_a_conflict_found_at_unmount_is_saved_beside_and_exits_0(mount, src):
    m = mount(src, allow_stderr=True)
    helpers.write_file(m / "data.h5", b"ours at unmount", "r+b")
    behind(src / "data.h5", b"theirs")
    ours = helpers.read_file(m / "data.h5")
    rc = m.unmount()
    assert helpers.read_file(src / "data.h5") == b"theirs"
    names = conflict_files(src, "data", ".h5")
    assert len(names) == 1
    assert helpers.read_file(src / names[0]) == ours
    assert conflict_log_lines(m), m.stderr()
    # Saved beside SOURCE's file, durable: nothing went to rescue.
    assert rc == 0, f"exit {rc}; log: {m.stderr()}"


def test_a_conflict_name_already_taken_gets_a_number(mount, src):
    m = mount(src, allow_stderr=True)
    helpers.write_file(m / "data.h5", b"ours", "r+b")
    behind(src / "data.h5", b"theirs")
    # Take every plain conflict name of the next seconds, and -1 too.
    host = sorted(hostname_candidates(), key=len)[-1]
    now = time.time()
    taken = {}
    for dt in range(-2, 30):
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now + dt))
        for h in hostname_candidates():
            for suffix in ("", "-1"):
                name = f"data.conflict-{h}-{stamp}{suffix}.h5"
                helpers.write_file(src / name, b"taken " + name.encode())
                taken[name] = helpers.read_file(src / name)
    ours = helpers.read_file(m / "data.h5")
    assert fsync_path(m / "data.h5") == errno.EIO
    # Nothing that existed was overwritten.
    for name, content in taken.items():
        assert helpers.read_file(src / name) == content, name
    new = [n for n in conflict_files(src, "data", ".h5") if n not in taken]
    assert len(new) == 1, new
    assert re.search(rf"-{re.escape(host)}-\d{{8}}-\d{{6}}-\d+\.h5$",
                     new[0]) or re.search(r"-\d{8}-\d{6}-\d+\.h5$", new[0])
    assert not new[0].endswith("-1.h5")
    assert helpers.read_file(src / new[0]) == ours
    assert helpers.read_file(src / "data.h5") == b"theirs"
    assert m.unmount() == 0


@pytest.mark.parametrize("rel,stem,ext", [
    ("notes", "notes", ""),
    ("sub/dir/run.2.nc", "run.2", ".nc"),
])
def test_conflict_names_keep_the_extension_and_the_directory(
        mount, empty_source, rel, stem, ext):
    p = empty_source / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    helpers.write_file(p, b"v1")
    m = mount(empty_source, allow_stderr=True)
    helpers.write_file(m / rel, b"v3 from the mount")
    behind(p, b"v2 from elsewhere")
    assert fsync_path(m / rel) == errno.EIO
    assert helpers.read_file(p) == b"v2 from elsewhere"
    names = conflict_files(p.parent, stem, ext)
    assert len(names) == 1, os.listdir(p.parent)
    assert helpers.read_file(p.parent / names[0]) == b"v3 from the mount"
    assert m.unmount() == 0


def test_later_changes_after_a_conflict_never_overwrite_source_either(
        mount, src):
    """The same handle goes on writing after a conflict: SOURCE's file
    still is not the one loaded, so the next write-back conflicts again
    instead of replacing it."""
    m = mount(src, allow_stderr=True)
    fd = os.open(m / "data.h5", os.O_RDWR)
    try:
        os.pwrite(fd, b"first", 0)
        behind(src / "data.h5", b"theirs")
        with pytest.raises(OSError) as e:
            os.fsync(fd)
        assert e.value.errno == errno.EIO
        first = os.pread(fd, 1 << 20, 0)
        os.pwrite(fd, b"second", 0)
        second = os.pread(fd, 1 << 20, 0)
        assert file_status(m, "data.h5")["state"] in ("dirty", "conflict")
        with pytest.raises(OSError) as e:
            os.fsync(fd)
        assert e.value.errno == errno.EIO
    finally:
        os.close(fd)
    assert helpers.read_file(src / "data.h5") == b"theirs"
    assert m.unmount() == 0
    assert helpers.read_file(src / "data.h5") == b"theirs"
    contents = {helpers.read_file(src / n)
                for n in conflict_files(src, "data", ".h5")}
    assert first in contents and second in contents, contents


def test_a_file_only_read_is_not_written_when_source_changed_behind(
        mount, src):
    m = mount(src)  # no conflict, no log line
    load(m / "data.h5")
    behind(src / "data.h5", b"theirs")
    assert fsync_path(m / "data.h5") == 0
    res = cli("sync", m.path)
    assert res.returncode == 0, res.stderr
    assert m.unmount() == 0
    assert helpers.read_file(src / "data.h5") == b"theirs"
    assert conflict_files(src, "data", ".h5") == []


def test_sync_command_reports_a_conflict_with_exit_1(mount, src):
    m = mount(src, allow_stderr=True)
    helpers.write_file(m / "data.h5", b"ours", "r+b")
    behind(src / "data.h5", b"theirs")
    res = cli("sync", m.path, m / "data.h5")
    assert res.returncode == 1, (res.stdout, res.stderr)
    assert "data.h5" in res.stderr
    assert helpers.read_file(src / "data.h5") == b"theirs"
    assert len(conflict_files(src, "data", ".h5")) == 1
    assert m.unmount() == 0


def test_a_clean_image_is_reloaded_instead_of_conflicting(mount, src):
    # log_level=info: an open whose check of SOURCE did not end within its
    # second (a stalled machine) says so, and only then serves the image
    # it has; the next open checks again
    m = mount(src, options=["log_level=info"], allow_stderr=True)
    load(m / "data.h5")
    behind(src / "data.h5", b"theirs, newer")
    got = helpers.read_file(m / "data.h5")
    deadline = time.monotonic() + 20 * SLOWDOWN
    while got != b"theirs, newer" and time.monotonic() < deadline:
        assert any("did not answer" in ln for ln in daemon_lines(m)), \
            f"stale bytes served with SOURCE answering: {got[:20]!r}"
        time.sleep(0.2)
        got = helpers.read_file(m / "data.h5")
    assert got == b"theirs, newer"
    helpers.write_file(m / "data.h5", b"THEIRS", "r+b")
    assert fsync_path(m / "data.h5") == 0
    assert helpers.read_file(src / "data.h5") == b"THEIRS, newer"
    assert conflict_files(src, "data", ".h5") == []
    assert conflict_log_lines(m) == []
    assert m.unmount() == 0


def test_an_open_as_another_handle_closes_loads_the_new_version(mount, src):
    """An open that finds another handle of a clean file still open checks
    SOURCE too; when the file changed, it waits a moment for that handle
    to go (the kernel sends its RELEASE after the close returns, and a
    worker may count it only after this open was read) and then loads
    SOURCE's new version. Here the other handle really closes 20 ms
    after the open starts; held open longer, it keeps the old image
    (test_a_change_behind_a_handle_held_open_conflicts)."""
    m = mount(src)
    fd = os.open(m / "data.h5", os.O_RDONLY)
    assert os.read(fd, 9) == b"original\n"
    behind(src / "data.h5", b"theirs, newer")
    t = threading.Timer(0.02, os.close, [fd])
    t.start()
    try:
        got = helpers.read_file(m / "data.h5")
    finally:
        t.join()
    assert got == b"theirs, newer"
    assert m.unmount() == 0
    assert helpers.read_file(src / "data.h5") == b"theirs, newer"


def test_a_change_behind_a_handle_held_open_conflicts(mount, src):
    m = mount(src, allow_stderr=True)
    fd = os.open(m / "data.h5", os.O_RDWR)
    try:
        behind(src / "data.h5", b"theirs")
        os.pwrite(fd, b"ours", 0)
        with pytest.raises(OSError) as e:
            os.fsync(fd)
        assert e.value.errno == errno.EIO
    finally:
        os.close(fd)
    assert helpers.read_file(src / "data.h5") == b"theirs"
    names = conflict_files(src, "data", ".h5")
    assert len(names) == 1
    assert helpers.read_file(src / names[0]).startswith(b"oursinal\n")
    assert m.unmount() == 0
