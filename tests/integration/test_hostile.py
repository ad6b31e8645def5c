"""A hostile SOURCE: the daemon runs as root over a directory that others
change at any moment. What SOURCE's names turn into behind the mount
(symlinks to files outside SOURCE, FIFOs, device nodes, sockets,
directories) must never make the daemon touch anything outside SOURCE,
block, or stop writing back every other file.

- Metadata written back (mode, owner, times, xattrs) is applied through a
  handle pinned with O_PATH|O_NOFOLLOW, only when the entry is still the
  one the mount knows (type, device, inode); otherwise it is a conflict:
  logged, reported, the mount keeps its values.
- Data is only ever opened from regular files: a FIFO, device or directory
  where a file was gives EIO (EISDIR for a directory) at once on open
  through the mount, and a dirty file whose name was swapped is saved
  beside it under a conflict name.
"""

import errno
import json
import os
import shutil
import stat
import time
import uuid
from pathlib import Path

import pytest

import helpers
from acceptance import (SLOWDOWN, cli, conflict_files, daemon_lines,
                        file_status, fsync_path, mount_status)


def decoy_file(tmp_path):
    """A file outside SOURCE that nothing may change: fixed bytes, mode,
    owner, times and xattrs."""
    d = tmp_path / "decoy"
    d.mkdir(exist_ok=True)
    p = d / "secret"
    helpers.write_file(p, b"outside SOURCE; must never change\n" * 10)
    os.chmod(p, 0o600)
    os.chown(p, 0, 0)
    os.setxattr(p, "user.keep", b"1")
    os.utime(p, ns=(helpers.T_OLD_NS, helpers.T_OLD_NS))
    return p


def fingerprint(p):
    """Everything an escape would change (atime aside: reading moves it)."""
    st = os.lstat(p)
    return (helpers.read_file(p), stat.S_IMODE(st.st_mode), st.st_uid,
            st.st_gid, st.st_mtime_ns, st.st_ctime_ns,
            sorted((n, os.getxattr(p, n)) for n in os.listxattr(p)))


def make_node(path, kind):
    if kind == "fifo":
        os.mkfifo(path, 0o640)
    elif kind == "regular":
        helpers.write_file(path, b"written through the mount\n")
    elif kind == "chardev":
        os.mknod(path, stat.S_IFCHR | 0o640, os.makedev(1, 3))
    elif kind == "socket":
        os.mknod(path, stat.S_IFSOCK | 0o640)
    else:
        raise ValueError(kind)


def sync(m):
    res = cli("sync", m.path)
    assert res.returncode == 0, res.stderr
    return res


@pytest.mark.parametrize("kind", ["fifo", "regular", "chardev", "socket"])
def test_metadata_never_follows_a_swapped_name(mount, empty_source, tmp_path,
                                               kind):
    decoy = decoy_file(tmp_path)
    before = fingerprint(decoy)
    m = mount(empty_source, allow_stderr=True)
    make_node(m / "x", kind)
    sync(m)
    assert stat.S_IFMT(os.lstat(empty_source / "x").st_mode) == \
        stat.S_IFMT(os.lstat(m / "x").st_mode)
    if kind == "regular":  # changed in the mount, not yet written back
        with open(m / "x", "ab") as f:
            f.write(b"more\n")
    # Someone with write access to SOURCE swaps the name for a symlink.
    os.unlink(empty_source / "x")
    os.symlink(decoy, empty_source / "x")
    os.chown(m / "x", helpers.OTHER_UID, helpers.OTHER_GID)
    os.chmod(m / "x", 0o4755)  # after chown, which clears set-user-ID
    os.utime(m / "x", ns=(helpers.T_OLDER_NS, helpers.T_OLDER_NS))
    if kind == "regular":
        os.setxattr(m / "x", "user.evil", b"1")
    else:  # the mount keeps no xattrs on special files
        assert helpers.errno_of(os.setxattr, m / "x", "trusted.evil",
                                b"1") == errno.EOPNOTSUPP
    sync(m)
    assert fingerprint(decoy) == before
    assert os.readlink(empty_source / "x") == str(decoy)
    # The mount keeps its own view, and says what happened.
    st = os.lstat(m / "x")
    assert stat.S_IMODE(st.st_mode) == 0o4755
    assert (st.st_uid, st.st_gid) == (helpers.OTHER_UID, helpers.OTHER_GID)
    assert any("conflict:" in ln for ln in daemon_lines(m)), m.stderr()
    if kind == "regular":
        # the data is not lost: it went beside, under a conflict name
        names = conflict_files(empty_source, "x", "")
        assert len(names) == 1, os.listdir(empty_source)
        assert helpers.read_file(empty_source / names[0]) == \
            b"written through the mount\nmore\n"
    assert m.unmount() == 0
    assert fingerprint(decoy) == before


@pytest.mark.parametrize("kind", ["fifo", "chardev", "socket"])
def test_metadata_of_a_swapped_special_file_is_not_applied_to_the_new_one(
        mount, empty_source, kind):
    """Same type, other inode: still not what the mount knows."""
    m = mount(empty_source, allow_stderr=True)
    make_node(m / "x", kind)
    sync(m)
    os.unlink(empty_source / "x")
    make_node(empty_source / "x", kind)
    os.chmod(empty_source / "x", 0o600)
    theirs = os.lstat(empty_source / "x")
    os.chmod(m / "x", 0o666)
    sync(m)
    now = os.lstat(empty_source / "x")
    assert (now.st_ino, stat.S_IMODE(now.st_mode)) == \
        (theirs.st_ino, 0o600)
    assert any("conflict:" in ln for ln in daemon_lines(m)), m.stderr()
    assert m.unmount() == 0


def test_metadata_still_lands_when_source_is_unchanged(mount, empty_source):
    """The pinned path applies mode, owner and times to every type."""
    m = mount(empty_source)
    for kind in ("fifo", "regular", "chardev", "socket"):
        make_node(m / kind, kind)
    sync(m)
    for kind in ("fifo", "regular", "chardev", "socket"):
        os.chmod(m / kind, 0o604)
        os.chown(m / kind, helpers.OTHER_UID, helpers.OTHER_GID)
        os.utime(m / kind, ns=(helpers.T_OLDER_NS, helpers.T_OLD_NS))
    os.symlink("fifo", m / "link")
    sync(m)
    os.chown(m / "link", helpers.OTHER_UID, helpers.OTHER_GID,
             follow_symlinks=False)
    os.utime(m / "link", ns=(helpers.T_OLDER_NS, helpers.T_OLD_NS),
             follow_symlinks=False)
    sync(m)
    for kind in ("fifo", "regular", "chardev", "socket"):
        st = os.lstat(empty_source / kind)
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                st.st_mtime_ns) == (0o604, helpers.OTHER_UID,
                                    helpers.OTHER_GID, helpers.T_OLD_NS), kind
    st = os.lstat(empty_source / "link")
    assert (st.st_uid, st.st_gid, st.st_mtime_ns) == \
        (helpers.OTHER_UID, helpers.OTHER_GID, helpers.T_OLD_NS)
    assert m.unmount() == 0


def replace_with(path, kind):
    os.unlink(path)
    if kind == "directory":
        os.mkdir(path)
    else:
        make_node(path, kind)


OPEN_ERRNO = {"fifo": errno.EIO, "chardev": errno.EIO, "socket": errno.EIO,
              "directory": errno.EISDIR}


@pytest.mark.parametrize("kind", ["fifo", "chardev", "directory"])
def test_a_file_turned_into_something_else_fails_fast(mount, empty_source,
                                                      kind):
    """Loads never block on a FIFO and never open a device; sync, commit
    and unmount go on for every other file."""
    helpers.write_file(empty_source / "a.dat", b"a" * 1000)
    helpers.write_file(empty_source / "b.dat", b"b" * 1000)
    m = mount(empty_source, allow_stderr=True)
    os.stat(m / "a.dat")  # the mount knows it as a regular file
    replace_with(empty_source / "a.dat", kind)
    t0 = time.monotonic()
    with pytest.raises(OSError) as e:
        helpers.read_file(m / "a.dat")
    assert e.value.errno == OPEN_ERRNO[kind]
    # a source_timeout (10 s) would be a blocked open
    assert time.monotonic() - t0 < 3 * SLOWDOWN
    helpers.write_file(m / "b.dat", b"B" * 1000)
    helpers.write_file(m / "c.dat", b"c" * 10)
    sync(m)
    assert helpers.read_file(empty_source / "b.dat") == b"B" * 1000
    assert helpers.read_file(empty_source / "c.dat") == b"c" * 10
    assert m.unmount() == 0


@pytest.mark.parametrize("kind", ["fifo", "chardev", "directory"])
def test_a_dirty_file_whose_name_was_swapped_is_saved_beside(
        mount, empty_source, kind):
    helpers.write_file(empty_source / "a.dat", b"a" * 1000)
    m = mount(empty_source, allow_stderr=True)
    with open(m / "a.dat", "r+b") as f:
        f.write(b"OURS")
        replace_with(empty_source / "a.dat", kind)
    sync(m)
    names = conflict_files(empty_source, "a", ".dat")
    assert len(names) == 1, os.listdir(empty_source)
    assert helpers.read_file(empty_source / names[0]) == \
        b"OURS" + b"a" * 996
    assert stat.S_IFMT(os.lstat(empty_source / "a.dat").st_mode) == \
        stat.S_IFMT({"fifo": stat.S_IFIFO, "chardev": stat.S_IFCHR,
                     "directory": stat.S_IFDIR}[kind])
    assert m.unmount() == 0


def test_the_default_rescue_directory_cannot_be_steered(mount, empty_source,
                                                        tmp_path):
    """The old default NAME-DATE-PID could be predicted and planted (as a
    symlink to anywhere) in a world-writable base; the rescue then wrote
    as root wherever the symlink pointed. Now: a 0700 base of the
    daemon's own, a mkdtemp directory in it, files made O_EXCL."""
    name = f"steer-{uuid.uuid4().hex[:8]}"
    mp = tmp_path / name
    mp.mkdir()
    decoy = tmp_path / "decoy"
    decoy.mkdir()
    base = Path("/var/tmp/h5memfs-rescue")
    m = mount(empty_source, options=["validate=strict"], mountpoint=mp,
              allow_stderr=True, expect_exit=2)
    data = b"\x89HDF\r\n\x1a\n" + b"not a valid superblock" * 100
    helpers.write_file(m / "bad.h5", data)  # strict: never written back
    # A symlink at every name the old default could take in the next
    # minute (planted as root here: the old base was another user's to
    # plant in whenever that user had made it first).
    t = time.time()
    for s in range(-2, int(60 * SLOWDOWN)):
        when = time.strftime('%Y%m%d-%H%M%S', time.localtime(t + s))
        os.symlink(decoy, base / f"{name}-{when}-{m.pid}")
    try:
        assert m.unmount() == 2
        assert os.listdir(decoy) == []
        found = [d for d in base.iterdir() if d.name.startswith(name + "-")
                 and not d.is_symlink()]
        assert len(found) == 1, (found, m.stderr())
        st = os.lstat(found[0])
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o700)
        st = os.lstat(base)
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o700)
        assert helpers.read_file(found[0] / "bad.h5") == data
    finally:
        for d in base.iterdir():
            if d.name.startswith(name + "-"):
                if d.is_symlink():
                    d.unlink()
                else:
                    shutil.rmtree(d, ignore_errors=True)


def test_an_xattr_source_refuses_never_keeps_the_data_out(mount,
                                                          empty_source):
    """ext4 keeps an xattr value in one block: 16000 bytes get ENOSPC.
    The file's data, mode and other xattrs land all the same; the
    refusal is logged and in the file's status; the mount keeps it."""
    m = mount(empty_source, allow_stderr=True)
    helpers.write_file(m / "f", b"data")
    os.chmod(m / "f", 0o640)
    os.setxattr(m / "f", "user.small", b"1")
    os.setxattr(m / "f", "user.big", b"x" * 16000)
    sync(m)
    assert helpers.read_file(empty_source / "f") == b"data"
    assert stat.S_IMODE(os.stat(empty_source / "f").st_mode) == 0o640
    assert os.getxattr(empty_source / "f", "user.small") == b"1"
    assert "user.big" not in os.listxattr(empty_source / "f")
    assert os.getxattr(m / "f", "user.big") == b"x" * 16000
    assert any("refused" in ln and "user.big" in ln
               for ln in daemon_lines(m)), m.stderr()
    assert "user.big" in json.dumps(file_status(m, "f"))
    # metadata-only changes too
    os.setxattr(m / "f", "user.big2", b"y" * 16000)
    os.setxattr(m / "f", "user.small2", b"2")
    sync(m)
    assert os.getxattr(empty_source / "f", "user.small2") == b"2"
    assert m.unmount() == 0


def newer_format(path, sb_version=None):
    """An HDF5 file as a newer HDF5 could write it: its datatype message
    carries a version (15) that libhdf5 1.10 does not know; with
    sb_version, the superblock claims that version too."""
    import h5py
    import numpy as np
    import struct
    with h5py.File(path, "w", libver="earliest") as f:
        f.create_dataset("d", data=np.arange(100, dtype="i4"))
    with h5py.File(path, "r") as f:
        addr = h5py.h5o.get_info(f["d"].id).addr
    b = bytearray(helpers.read_file(path))
    version, _, nmesgs = struct.unpack_from("<BBH", b, addr)
    assert version == 1, "expected a version 1 object header"
    off = addr + 16
    for _ in range(nmesgs):
        mtype, size = struct.unpack_from("<HH", b, off)
        if mtype == 3:  # datatype: class in the low, version in the high nibble
            b[off + 8] = (b[off + 8] & 0x0F) | 0xF0
            break
        off += 8 + size
    else:
        raise AssertionError("no datatype message")
    if sb_version is not None:
        b[8] = sb_version
    return bytes(b)


def test_a_newer_format_is_unknown_to_libhdf5_not_corrupt(mount,
                                                          empty_source,
                                                          tmp_path):
    """validate=strict writes back a file libhdf5 refuses only for a
    version number it does not know, when its signature and superblock
    are sound; status says "unknown_to_libhdf5"."""
    helpers.write_file(empty_source / "n.h5", b"old")
    data = newer_format(tmp_path / "newer.h5")
    m = mount(empty_source, options=["validate=strict"], allow_stderr=True)
    helpers.write_file(m / "n.h5", data)
    assert fsync_path(m / "n.h5") == 0
    assert helpers.read_file(empty_source / "n.h5") == data
    h = file_status(m, "n.h5")["hdf5"]
    assert h["opens"] is False and h["unknown_to_libhdf5"] is True, h
    assert any("unknown to this libhdf5" in ln for ln in daemon_lines(m))
    # A superblock version it does not know: its frame cannot be checked
    bad = newer_format(tmp_path / "newer4.h5", sb_version=4)
    helpers.write_file(m / "n.h5", bad)
    assert fsync_path(m / "n.h5") == errno.EIO
    assert helpers.read_file(empty_source / "n.h5") == data
    h = file_status(m, "n.h5")["hdf5"]
    assert h["unknown_to_libhdf5"] is True, h
    helpers.write_file(m / "n.h5", data)  # back to what SOURCE has
    assert fsync_path(m / "n.h5") == 0
    assert m.unmount() == 0


def test_a_discard_that_cannot_load_keeps_the_file_as_it_was(mount,
                                                            empty_source):
    """discard loads SOURCE's version into a fresh image and only then
    replaces the mount's: a load that fails (here: SOURCE's new version
    does not fit in max_memory) leaves the file with its changes, never a
    partial image that a write-back would then save."""
    helpers.write_file(empty_source / "a.dat", b"a" * 300_000)
    m = mount(empty_source, options=["passthrough=on", "max_memory=1M"],
              allow_stderr=True)
    if mount_status(m)["data_path"] != "passthrough":
        pytest.skip("needs the passthrough data path (discard in place)")
    with open(m / "a.dat", "r+b") as f:
        f.write(b"OURS")
    os.unlink(empty_source / "a.dat")
    helpers.write_file(empty_source / "a.dat", b"b" * (2 << 20))
    res = cli("discard", m / "a.dat")
    assert res.returncode != 0, res.stdout
    assert "space" in res.stderr, res.stderr
    assert helpers.read_file(m / "a.dat") == b"OURS" + b"a" * 299_996
    assert m.unmount() == 0
    names = conflict_files(empty_source, "a", ".dat")
    assert len(names) == 1, os.listdir(empty_source)
    assert helpers.read_file(empty_source / names[0]) == \
        b"OURS" + b"a" * 299_996
    assert helpers.read_file(empty_source / "a.dat") == b"b" * (2 << 20)
