"""Write-back: SOURCE is untouched until fsync, unmount or SIGTERM/SIGINT,
and then mirrors the mount: names, contents, directories, renames,
deletions, symlinks, hard links, modes, times and user xattrs."""

import os
import select
import signal
import subprocess
import time

import pytest

import h5mount
import helpers
from helpers import change_everything


def test_source_is_untouched_until_write_back(mnt, source):
    before = helpers.snapshot(source, ctime=True, ino=True)
    change_everything(mnt.path)
    helpers.assert_same_tree(before,
                             helpers.snapshot(source, ctime=True, ino=True),
                             "before", "after changes in the mount")


def test_fsync_makes_new_bytes_durable_in_source_while_mounted(mnt, source):
    old = helpers.read_file(source / "random.bin")
    fd = os.open(mnt / "random.bin", os.O_RDWR)
    try:
        os.pwrite(fd, b"NEW BYTES", 1000)
        assert helpers.read_file(source / "random.bin") == old
        os.fsync(fd)
        got = helpers.read_file(source / "random.bin")
        assert got == old[:1000] + b"NEW BYTES" + old[1009:]
        os.pwrite(fd, b"again", 0)
        os.fdatasync(fd)
        assert helpers.read_file(source / "random.bin")[:5] == b"again"
    finally:
        os.close(fd)
    assert not helpers.tmp_files(source)


def test_fsync_writes_back_mode_times_and_xattrs_of_the_file(mnt, source):
    path = mnt / "hello.txt"
    os.chmod(path, 0o604)
    os.utime(path, ns=(1_100_000_000_000_000_007, 1_200_000_000_000_000_009))
    os.setxattr(path, "user.comment", b"changed")
    os.setxattr(path, "user.new", b"added")
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    st = os.stat(source / "hello.txt")
    assert st.st_mode & 0o7777 == 0o604
    assert st.st_mtime_ns == 1_200_000_000_000_000_009
    assert helpers.user_xattrs(source / "hello.txt") == {
        "user.comment": b"changed", "user.empty": b"", "user.new": b"added"}


def test_fsync_of_a_new_file_in_a_new_directory_makes_its_name_durable(
        mnt, source):
    os.makedirs(mnt / "a/b")
    fd = os.open(mnt / "a/b/new.txt", os.O_CREAT | os.O_WRONLY, 0o640)
    try:
        os.write(fd, b"durable")
        assert not (source / "a").exists()
        os.fsync(fd)
    finally:
        os.close(fd)
    assert helpers.read_file(source / "a/b/new.txt") == b"durable"
    assert os.stat(source / "a/b/new.txt").st_mode & 0o777 == 0o640
    assert not helpers.tmp_files(source)


def test_fsync_replays_pending_renames_unlinks_and_links_to_source(
        mnt, source):
    os.rename(mnt / "sub", mnt / "sub-renamed")
    os.unlink(mnt / "random.bin")
    os.rmdir(mnt / "empty_dir")
    os.symlink("hello.txt", mnt / "new-link")
    os.link(mnt / "hello.txt", mnt / "hello-hardlink")
    os.mkdir(mnt / "newdir")
    helpers.write_file(mnt / "other.txt", b"to be synced")
    fd = os.open(mnt / "other.txt", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    assert not (source / "sub").exists()
    assert helpers.read_file(source / "sub-renamed/deeper/deepest/leaf.txt") \
        == b"leaf\n"
    assert not (source / "random.bin").exists()
    assert not (source / "empty_dir").exists()
    assert os.readlink(source / "new-link") == "hello.txt"
    assert os.stat(source / "hello-hardlink").st_ino == \
        os.stat(source / "hello.txt").st_ino
    assert (source / "newdir").is_dir()
    assert helpers.read_file(source / "other.txt") == b"to be synced"


def test_unmount_writes_back_every_kind_of_change(mnt, source):
    change_everything(mnt.path)
    want = helpers.snapshot(mnt.path, dir_mtime=False)
    assert mnt.unmount() == 0
    helpers.assert_same_tree(want, helpers.snapshot(source, dir_mtime=False),
                             "mount before unmount", "source after")


def test_unmount_writes_back_directory_times(mnt, source):
    change_everything(mnt.path)
    os.utime(mnt / "new/nested", ns=(10**18, 1_300_000_000_000_000_033))
    want = helpers.snapshot(mnt.path)
    assert mnt.unmount() == 0
    st = os.stat(source / "new/nested")
    assert st.st_mtime_ns == 1_300_000_000_000_000_033
    helpers.assert_same_tree(want, helpers.snapshot(source),
                             "mount before unmount", "source after")


def test_unmount_leaves_files_that_were_only_read_as_they_were(mnt, source):
    before = helpers.snapshot(source, ctime=True, ino=True)
    helpers.read_file(mnt / "data/sample.h5")
    helpers.read_file(mnt / "random.bin")
    helpers.write_file(mnt / "hello.txt", b"changed", "r+b")
    assert mnt.unmount() == 0
    after = helpers.snapshot(source, ctime=True, ino=True)
    for rel in ("data/sample.h5", "random.bin", "sub/notes.txt"):
        assert after[rel] == before[rel], rel


def test_truncates_leave_source_with_the_times_the_mount_shows(
        mount, empty_source):
    # truncate(2) to the same size (0 included) and ftruncate(2): on the
    # daemon path the kernel keeps mtime and ctime, and the daemon must
    # not invent its own for SOURCE.
    m = mount(empty_source)
    for name, data, size in (("same", b"xx", 2), ("empty", b"", 0),
                             ("shorter", b"xyz", 1), ("via_fd", b"ab", 2)):
        helpers.write_file(m / name, data)
        os.utime(m / name, ns=(helpers.T_OLDER_NS, helpers.T_OLD_NS))
        if name == "via_fd":
            fd = os.open(m / name, os.O_WRONLY)
            os.ftruncate(fd, size)
            os.close(fd)
        else:
            os.truncate(m / name, size)
    want = {n: os.stat(m / n).st_mtime_ns
            for n in ("same", "empty", "shorter", "via_fd")}
    assert want["shorter"] != helpers.T_OLD_NS
    assert want["via_fd"] != helpers.T_OLD_NS
    assert m.unmount() == 0
    got = {n: os.stat(empty_source / n).st_mtime_ns for n in want}
    assert got == want


def test_no_temporary_files_remain_in_source_after_write_back(mnt, source):
    change_everything(mnt.path)
    for i in range(20):
        helpers.write_file(mnt / f"new/f{i}", os.urandom(10000))
    fd = os.open(mnt / "new/f3", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    assert helpers.tmp_files(source) == []
    assert mnt.unmount() == 0
    assert helpers.tmp_files(source) == []


def test_remount_after_write_back_shows_the_same_content(mnt, source):
    change_everything(mnt.path)
    want = helpers.snapshot(mnt.path)
    assert mnt.unmount() == 0
    again = mnt.remount()
    helpers.assert_same_tree(want, helpers.snapshot(again.path),
                             "first mount", "second mount")


def test_umount_instead_of_fusermount3_writes_back_and_exits_0(mnt, source):
    helpers.write_file(mnt / "via-umount", b"umount(8)")
    os.chmod(mnt / "via-umount", 0o612)
    assert mnt.umount() == 0
    assert helpers.read_file(source / "via-umount") == b"umount(8)"
    assert os.stat(source / "via-umount").st_mode & 0o7777 == 0o612
    assert not mnt.is_mounted()


HOLDER = r"""
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
os.write(fd, b"written by a process that keeps the file open\n" * 1000)
print("ready", flush=True)
time.sleep(120)
"""


HELD = b"written by a process that keeps the file open\n" * 1000


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT],
                         ids=["SIGTERM", "SIGINT"])
def test_a_signal_with_a_file_open_for_writing_writes_back_and_exits_0(
        mnt, source, sig):
    # Five rounds: the signal comes right after the holder's write, and a
    # race there does not show every time.
    m = mnt
    for round_ in range(5):
        name = f"held{round_}.txt"
        helpers.write_file(m / f"closed{round_}.txt", b"closed before")
        holder = subprocess.Popen([helpers.PYTHON, "-c", HOLDER,
                                   str(m / name)], stdout=subprocess.PIPE,
                                  stdin=subprocess.DEVNULL)
        try:
            ready, _, _ = select.select([holder.stdout], [], [],
                                        20 * h5mount.SLOWDOWN)
            assert ready and holder.stdout.readline() == b"ready\n"
            assert m.signal(sig) == 0
        finally:
            holder.kill()
            holder.wait(10 * h5mount.SLOWDOWN)
            holder.stdout.close()
        assert not m.is_mounted()
        assert helpers.read_file(source / name) == HELD, f"round {round_}"
        assert helpers.read_file(source / f"closed{round_}.txt") == \
            b"closed before"
        assert helpers.tmp_files(source) == []
        if round_ < 4:
            m = m.remount()


def test_hdf5_files_written_in_the_mount_are_valid_in_source_after_sigterm(
        mnt, source):
    import h5py
    import numpy as np
    with h5py.File(mnt / "sig.h5", "w") as f:
        f["data"] = np.arange(100_000)
    assert mnt.sigterm() == 0
    with h5py.File(source / "sig.h5", "r") as f:
        assert (f["data"][:] == np.arange(100_000)).all()


def test_a_sparse_file_keeps_its_hole_in_source_after_write_back(
        rw, empty_source):
    fd = os.open(rw / "sparse", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, b"head", 0)
        os.pwrite(fd, b"tail", 1 << 30)
    finally:
        os.close(fd)
    assert rw.unmount() == 0
    st = os.stat(empty_source / "sparse")
    assert st.st_size == (1 << 30) + 4
    assert st.st_blocks * 512 < 4 << 20, \
        f"{st.st_blocks * 512} bytes allocated for 8 bytes of data"


@pytest.mark.slow
def test_a_sparse_file_over_4_gib_is_written_back_with_its_bytes(
        rw, empty_source):
    fd = os.open(rw / "big.bin", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, b"head", 0)
        os.pwrite(fd, b"tail", 5 << 30)
    finally:
        os.close(fd)
    assert rw.unmount() == 0
    path = empty_source / "big.bin"
    assert os.path.getsize(path) == (5 << 30) + 4
    fd = os.open(path, os.O_RDONLY)
    try:
        assert os.pread(fd, 4, 0) == b"head"
        assert os.pread(fd, 4, 5 << 30) == b"tail"
        assert os.pread(fd, 4096, 3 << 30) == bytes(4096)
    finally:
        os.close(fd)


# --- namespace edge cases, each checked against SOURCE after unmount ----------

def unmount_and_compare(m, source):
    """Unmount m (exit 0) and require SOURCE to equal the mount as it was
    just before, directory times aside (tested on their own above)."""
    want = helpers.snapshot(m.path, dir_mtime=False)
    assert m.unmount() == 0
    helpers.assert_same_tree(want, helpers.snapshot(source, dir_mtime=False),
                             "mount before unmount", "source after")
    assert helpers.tmp_files(source) == []


def test_two_names_swapped_through_a_third_are_written_back_swapped(
        mnt, source):
    os.rename(mnt / "hello.txt", mnt / "tmp")
    os.rename(mnt / "random.bin", mnt / "hello.txt")
    os.rename(mnt / "tmp", mnt / "random.bin")
    os.rename(mnt / "sub", mnt / "tmpdir")
    os.rename(mnt / "data", mnt / "sub")
    os.rename(mnt / "tmpdir", mnt / "data")
    unmount_and_compare(mnt, source)
    assert helpers.read_file(source / "random.bin") == b"hello, world\n"
    assert (source / "data/deeper/deepest/leaf.txt").exists()


def test_a_new_file_renamed_over_a_name_then_over_another_lands_alone(
        mnt, source):
    """The file a new file replaced stays in SOURCE at the new file's
    name until it is written; moving that name over another one must not
    bring the replaced file's bytes back, nor count as a conflict."""
    helpers.write_file(mnt / "new", b"NEW")
    os.rename(mnt / "new", mnt / "hello.txt")
    os.rename(mnt / "random.bin", mnt / "sub/r")
    os.rename(mnt / "hello.txt", mnt / "sub/r")
    unmount_and_compare(mnt, source)
    assert helpers.read_file(source / "sub/r") == b"NEW"
    assert not list(source.glob("**/*conflict*"))


def test_a_new_file_renamed_over_a_hard_link_then_over_its_twin(
        mnt, source):
    """In SOURCE the replaced name and the target are one file: rename(2)
    between them does nothing there, yet the old name must go."""
    helpers.write_file(mnt / "new", b"NEW")
    os.rename(mnt / "new", mnt / "data/notes-hardlink.txt")
    os.rename(mnt / "sub/notes.txt", mnt / "data/moved")
    os.rename(mnt / "data/notes-hardlink.txt", mnt / "data/moved")
    unmount_and_compare(mnt, source)
    assert helpers.read_file(source / "data/moved") == b"NEW"
    assert not (source / "data/notes-hardlink.txt").exists()


def test_a_tree_deeper_than_path_max_is_written_back(mnt, source):
    """SOURCE's paths are resolved in pieces shorter than PATH_MAX: a
    file 5,000 bytes of path deep is fsynced, renamed and written back."""
    depth, comp = 160, "d" * 30

    def walk(root, make=False):
        fd = os.open(root, os.O_RDONLY)
        for _ in range(depth):
            if make:
                os.mkdir(comp, dir_fd=fd)
            nfd = os.open(comp, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        return fd

    fd = walk(mnt.path, make=True)
    try:
        f = os.open("leaf", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd)
        try:
            os.write(f, b"at the bottom")
            os.fsync(f)
        finally:
            os.close(f)
        os.rename("leaf", "moved", src_dir_fd=fd, dst_dir_fd=fd)
    finally:
        os.close(fd)
    assert mnt.unmount() == 0
    fd = walk(source)
    try:
        assert os.listdir(fd) == ["moved"]
        f = os.open("moved", os.O_RDONLY, dir_fd=fd)
        assert os.read(f, 100) == b"at the bottom"
        os.close(f)
    finally:
        os.close(fd)


def test_a_directory_and_a_file_that_trade_names_are_written_back(
        mnt, source):
    os.rmdir(mnt / "empty_dir")
    helpers.write_file(mnt / "empty_dir", b"now a file")
    os.unlink(mnt / "hello.txt")
    os.mkdir(mnt / "hello.txt")
    helpers.write_file(mnt / "hello.txt/inside", b"now a directory")
    unmount_and_compare(mnt, source)


def test_a_file_fsynced_then_renamed_then_removed_ends_as_the_mount_says(
        mnt, source):
    path = mnt / "first"
    helpers.write_file(path, b"v1")
    fd = os.open(path, os.O_RDWR)
    try:
        os.fsync(fd)
        assert helpers.read_file(source / "first") == b"v1"
        os.rename(path, mnt / "second")
        os.pwrite(fd, b"v2", 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    assert not (source / "first").exists()
    assert helpers.read_file(source / "second") == b"v2"
    os.unlink(mnt / "second")
    helpers.write_file(mnt / "third", b"v3")
    unmount_and_compare(mnt, source)
    assert not (source / "second").exists()


def test_a_dirty_file_in_a_renamed_directory_lands_at_its_new_path(
        mnt, source):
    fd = os.open(mnt / "sub/deeper/deepest/leaf.txt", os.O_RDWR)
    try:
        os.pwrite(fd, b"LEAF", 0)
        os.rename(mnt / "sub", mnt / "sub2")
        os.rename(mnt / "sub2/deeper", mnt / "top")
        os.fsync(fd)
    finally:
        os.close(fd)
    assert helpers.read_file(source / "top/deepest/leaf.txt") == b"LEAF\n"
    assert not (source / "sub/deeper").exists()
    unmount_and_compare(mnt, source)


def test_a_hard_link_whose_first_name_is_removed_keeps_the_data(
        mnt, source):
    os.link(mnt / "random.bin", mnt / "sub/other-name")
    os.unlink(mnt / "random.bin")
    helpers.write_file(mnt / "sub/other-name", b"CHANGED", "r+b")
    os.link(mnt / "sub/other-name", mnt / "third-name")
    unmount_and_compare(mnt, source)
    assert os.stat(source / "sub/other-name").st_ino == \
        os.stat(source / "third-name").st_ino


def test_a_file_unlinked_while_open_is_not_written_back(mnt, source):
    fd = os.open(mnt / "ghost", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"boo")
        os.unlink(mnt / "ghost")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.unlink(mnt / "hello.txt")
    unmount_and_compare(mnt, source)
    assert not (source / "ghost").exists()
    assert not (source / "hello.txt").exists()


def test_many_files_in_many_directories_are_all_written_back(rw,
                                                             empty_source):
    for d in range(40):
        os.mkdir(rw / f"d{d}")
        for f in range(25):
            helpers.write_file(rw / f"d{d}/f{f}", f"{d}/{f}".encode() * 100)
    for d in range(0, 39, 3):
        os.unlink(rw / f"d{d}/f0")
        os.rename(rw / f"d{d}/f1", rw / f"d{d + 1}/moved-from-{d}")
    unmount_and_compare(rw, empty_source)


@pytest.mark.parametrize("name", [
    "n" * 255, "-leading-dash", ".hidden", "new\nline", "back\\slash",
    "tab\there", "\u00fcnic\u00f8de-\u4e2d\u6587", "a b  c", "semi;colon",
    ".h5memfs-tmp",
])
def test_an_odd_file_name_is_written_back_and_remounted(rw, empty_source,
                                                        name):
    helpers.write_file(rw / name, b"odd name")
    os.mkdir(rw / (name[:250] + "-d"))
    os.setxattr(rw / name, "user.k", b"v")
    want = helpers.snapshot(rw.path, dir_mtime=False)
    assert rw.unmount() == 0
    helpers.assert_same_tree(want, helpers.snapshot(empty_source,
                                                    dir_mtime=False))
    again = rw.remount()
    assert helpers.read_file(again / name) == b"odd name"


def test_fsync_of_an_unchanged_file_leaves_source_as_it_was(mnt, source):
    before = helpers.snapshot(source, ctime=True, ino=True)
    fd = os.open(mnt / "data/sample.h5", os.O_RDWR)
    try:
        os.read(fd, 100)
        os.fsync(fd)
    finally:
        os.close(fd)
    assert helpers.snapshot(source, ctime=True, ino=True) == before


def test_fsync_of_a_directory_succeeds(mnt, source):
    os.mkdir(mnt / "newdir")
    helpers.write_file(mnt / "newdir/f", b"x")
    fd = os.open(mnt / "newdir", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def test_shared_mmap_writes_reach_source_at_unmount_without_msync(
        mnt, source):
    import mmap
    size = os.path.getsize(mnt / "random.bin")
    fd = os.open(mnt / "random.bin", os.O_RDWR)
    try:
        with mmap.mmap(fd, size) as m:
            m[5000:5008] = b"MMAPPED!"
    finally:
        os.close(fd)
    assert mnt.unmount() == 0
    assert helpers.read_file(source / "random.bin")[5000:5008] == b"MMAPPED!"


# --- changes made while a write-back pass runs ---------------------------------

BIG = 128 << 20  # a write-back long enough to act during it


def _during_a_write_back(m, source, action):
    """Run `h5memfs sync MNT` and call action() while it writes a file
    (a temporary is in SOURCE), then require the sync to succeed. Where
    the write ends before the window is seen, action() runs after it and
    the test proves less, but still holds (not a failure: timing is the
    machine's). The command's setxattr holds the mount root's inode
    lock: action() must not create, remove or look up names in the root,
    or it waits for the end of the pass."""
    proc = subprocess.Popen([str(h5mount.DAEMON), "sync", str(m.path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 30 * h5mount.SLOWDOWN
        while not helpers.tmp_files(source) and proc.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.0005)
        action()
        out, err = proc.communicate(timeout=60 * h5mount.SLOWDOWN)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err


@pytest.mark.parametrize("kind", ["new", "from SOURCE"])
def test_a_new_file_renamed_over_a_file_being_written_back_is_no_conflict(
        mount, empty_source, kind):
    """The atomic-save pattern (write a new file, rename it over the old
    one) racing the write-back of the old one: SOURCE's file there
    changes under the rename, and the new file must replace that new
    version at the next write-back, without a conflict."""
    os.mkdir(empty_source / "d")
    if kind == "from SOURCE":
        helpers.write_file(empty_source / "d/big", b"\0" * BIG)
    m = mount(empty_source)
    helpers.write_file(m / "d/big", b"B" * BIG,
                       "r+b" if kind != "new" else "wb")

    def save():
        helpers.write_file(m / "d/new", b"the new version")
        os.rename(m / "d/new", m / "d/big")

    _during_a_write_back(m, empty_source, save)
    assert m.unmount() == 0
    assert helpers.read_file(empty_source / "d/big") == b"the new version"
    assert sorted(os.listdir(empty_source / "d")) == ["big"]


def test_directories_changed_during_a_write_back_get_the_mount_times(
        mount, empty_source):
    """A directory made, and a rename in a directory, after a pass
    replayed the journal but before it set directory times: the times of
    both must still reach SOURCE (they were set before the replay that
    moved them, or dropped as "not in SOURCE yet")."""
    os.mkdir(empty_source / "a")
    os.mkdir(empty_source / "d")
    helpers.write_file(empty_source / "a/x", b"x")
    m = mount(empty_source)
    os.listdir(m / "a")
    helpers.write_file(m / "d/big", b"B" * BIG)

    def change():
        os.mkdir(m / "a/new")
        os.rename(m / "a/x", m / "a/y")

    _during_a_write_back(m, empty_source, change)
    want = helpers.snapshot(m.path)
    assert m.unmount() == 0
    helpers.assert_same_tree(want, helpers.snapshot(empty_source),
                             "mount before unmount", "source after")
