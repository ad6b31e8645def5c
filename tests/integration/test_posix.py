"""The POSIX surface of the mount, with real syscalls: data, sizes and holes,
namespace operations, metadata, xattrs, statfs and locks."""

import errno
import fcntl
import os
import random
import stat
import time

import pytest

import helpers
from h5mount import SLOWDOWN
from acceptance import public_dir  # noqa: F401 (fixture)

GiB = 1 << 30
TiB = 1 << 40


# --- data -------------------------------------------------------------------

def test_written_bytes_read_back_identical_at_every_offset(rw):
    data = os.urandom(5 * 1024 * 1024 + 123)
    helpers.write_file(rw / "big.bin", data)
    assert os.path.getsize(rw / "big.bin") == len(data)
    assert helpers.read_file(rw / "big.bin") == data
    fd = os.open(rw / "big.bin", os.O_RDONLY)
    try:
        for off in (0, 1, 4095, 4096, 65535, 65536, 1 << 20, len(data) - 7):
            assert os.pread(fd, 4096, off) == data[off:off + 4096]
        assert os.pread(fd, 10, len(data)) == b""
    finally:
        os.close(fd)


def test_o_append_writes_go_to_the_end_even_after_a_seek(rw):
    path = rw / "append.txt"
    helpers.write_file(path, b"abc")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, b"def")
        fd2 = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd2, b"ghi")
        finally:
            os.close(fd2)
        os.write(fd, b"jkl")
    finally:
        os.close(fd)
    assert helpers.read_file(path) == b"abcdefghijkl"


def test_o_trunc_empties_an_existing_file(mnt):
    fd = os.open(mnt / "random.bin", os.O_WRONLY | os.O_TRUNC)
    try:
        assert os.fstat(fd).st_size == 0
        os.write(fd, b"new")
    finally:
        os.close(fd)
    assert helpers.read_file(mnt / "random.bin") == b"new"


def test_o_excl_on_an_existing_name_fails_with_eexist(mnt):
    with pytest.raises(FileExistsError):
        os.open(mnt / "hello.txt", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    fd = os.open(mnt / "fresh", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    os.close(fd)
    assert stat.S_IMODE(os.stat(mnt / "fresh").st_mode) == 0o600


def test_seek_data_and_seek_hole_see_writes_not_yet_flushed(rw):
    # On the daemon path the last writes may still be in the kernel's
    # writeback cache: the answers must still agree with the data.
    fd = os.open(rw / "f", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, b"x" * 10, 0)
        os.pwrite(fd, b"y" * 10, 4 << 20)
        size = os.fstat(fd).st_size
        assert os.lseek(fd, 0, os.SEEK_DATA) == 0
        assert os.lseek(fd, (4 << 20) - 1, os.SEEK_DATA) <= 4 << 20
        hole = os.lseek(fd, 0, os.SEEK_HOLE)
        assert 10 <= hole <= size
        assert os.lseek(fd, size - 1, os.SEEK_HOLE) == size
        assert helpers.errno_of(os.lseek, fd, size, os.SEEK_DATA) == \
            errno.ENXIO
    finally:
        os.close(fd)


def test_ftruncate_up_reads_zeros_and_down_then_up_forgets_old_bytes(rw):
    path = rw / "trunc.bin"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"x" * 10000)
        os.ftruncate(fd, 100000)
        assert os.fstat(fd).st_size == 100000
        assert os.pread(fd, 90000, 10000) == bytes(90000)
        os.ftruncate(fd, 10)
        assert os.fstat(fd).st_size == 10
        os.ftruncate(fd, 5000)
        assert os.pread(fd, 5000, 0) == b"x" * 10 + bytes(4990)
    finally:
        os.close(fd)
    os.truncate(path, 3)
    assert helpers.read_file(path) == b"xxx"


def test_a_write_past_the_end_leaves_a_hole_that_reads_as_zeros(rw):
    path = rw / "hole.bin"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"start")
        os.pwrite(fd, b"end", 100 * 1024 * 1024)
        st = os.fstat(fd)
        assert st.st_size == 100 * 1024 * 1024 + 3
        assert os.pread(fd, 1 << 20, 1 << 20) == bytes(1 << 20)
        assert os.pread(fd, 8, 0) == b"start" + bytes(3)
        assert os.pread(fd, 10, 100 * 1024 * 1024) == b"end"
    finally:
        os.close(fd)
    os.sync()
    assert os.stat(path).st_blocks * 512 < 4 * 1024 * 1024


def test_a_file_over_4_gib_keeps_bytes_written_at_5_gib(scratch):
    path = scratch / "huge.bin"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"head")
        os.pwrite(fd, b"tail bytes", 5 * GiB)
        assert os.fstat(fd).st_size == 5 * GiB + 10
        assert os.pread(fd, 10, 5 * GiB) == b"tail bytes"
        assert os.pread(fd, 4096, 4 * GiB + 17) == bytes(4096)
        assert os.pread(fd, 4, 0) == b"head"
        os.pwrite(fd, b"X", 4 * GiB - 1)
        assert os.pread(fd, 3, 4 * GiB - 2) == b"\0X\0"
    finally:
        os.close(fd)
    assert os.stat(path).st_size == 5 * GiB + 10
    assert helpers.vm_rss_kib(scratch.pid) < 200 * 1024


def test_ftruncate_to_1_tib_is_fast_and_takes_no_memory(scratch):
    path = scratch / "tera.bin"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        t0 = time.monotonic()
        os.ftruncate(fd, TiB)
        elapsed = time.monotonic() - t0
        assert os.fstat(fd).st_size == TiB
        assert os.pread(fd, 4096, TiB // 2) == bytes(4096)
        os.pwrite(fd, b"last", TiB - 4)
        assert os.pread(fd, 8, TiB - 8) == bytes(4) + b"last"
        rss = helpers.vm_rss_kib(scratch.pid)
        os.ftruncate(fd, 0)
        assert os.fstat(fd).st_size == 0
    finally:
        os.close(fd)
    assert elapsed < 2.0 * SLOWDOWN, f"ftruncate to 1 TiB took {elapsed:.2f}s"
    assert rss < 200 * 1024, f"daemon RSS {rss} KiB after a 1 TiB ftruncate"


def test_random_writes_truncates_and_reads_match_a_reference_file(
        rw, tmpfs_dir):
    """A small fsx: the same random operations on the mount and on tmpfs."""
    rnd = random.Random(1234)
    paths = [rw / "fsx.bin", tmpfs_dir / "fsx.bin"]
    fds = [os.open(p, os.O_RDWR | os.O_CREAT, 0o644) for p in paths]
    try:
        for step in range(600):
            op = rnd.choice(["write", "write", "read", "trunc", "append"])
            off = rnd.randrange(0, 3 * 1024 * 1024)
            n = rnd.choice([1, 7, 4096, 5000, 65536, 200_000])
            data = rnd.randbytes(n)
            got = []
            for fd in fds:
                if op == "write":
                    got.append(os.pwrite(fd, data, off))
                elif op == "read":
                    got.append(os.pread(fd, n, off))
                elif op == "trunc":
                    os.ftruncate(fd, off)
                elif op == "append":
                    os.lseek(fd, 0, os.SEEK_END)
                    got.append(os.write(fd, data))
                got.append(os.fstat(fd).st_size)
            assert got[:len(got) // 2] == got[len(got) // 2:], \
                f"step {step}: {op} at {off} length {n} differs"
    finally:
        for fd in fds:
            os.close(fd)
    assert helpers.sha256(paths[0]) == helpers.sha256(paths[1])


# --- namespace ----------------------------------------------------------------

def test_mkdir_rmdir_and_unlink_change_the_listing(rw):
    os.mkdir(rw / "d")
    os.mkdir(rw / "d/e", 0o711)
    helpers.write_file(rw / "d/e/f", b"1")
    assert stat.S_IMODE(os.stat(rw / "d/e").st_mode) == 0o711
    assert sorted(os.listdir(rw / "d")) == ["e"]
    os.unlink(rw / "d/e/f")
    assert os.listdir(rw / "d/e") == []
    os.rmdir(rw / "d/e")
    os.rmdir(rw / "d")
    assert os.listdir(rw.path) == []


def test_directory_link_count_follows_its_subdirectories(rw):
    os.mkdir(rw / "d")
    base = os.stat(rw / "d").st_nlink
    os.mkdir(rw / "d/a")
    os.mkdir(rw / "d/b")
    assert os.stat(rw / "d").st_nlink == base + 2
    os.rmdir(rw / "d/a")
    assert os.stat(rw / "d").st_nlink == base + 1


def test_rename_over_an_existing_name_replaces_it(mnt):
    fd = os.open(mnt / "hello.txt", os.O_RDONLY)
    try:
        os.rename(mnt / "sub/notes.txt", mnt / "hello.txt")
        assert helpers.read_file(mnt / "hello.txt") == \
            b"line one\nline two\n" * 100
        assert not (mnt / "sub/notes.txt").exists()
        # A file still open under the replaced name keeps its content.
        assert os.pread(fd, 100, 0) == b"hello, world\n"
    finally:
        os.close(fd)


def test_rename_of_a_directory_moves_its_whole_subtree(mnt):
    os.rename(mnt / "sub", mnt / "data/moved")
    assert not (mnt / "sub").exists()
    assert helpers.read_file(mnt / "data/moved/deeper/deepest/leaf.txt") == \
        b"leaf\n"
    os.mkdir(mnt / "emptytarget")
    os.rename(mnt / "data/moved", mnt / "emptytarget")
    assert helpers.read_file(mnt / "emptytarget/deeper/deepest/leaf.txt") == \
        b"leaf\n"


def test_renameat2_noreplace_refuses_an_existing_target_with_eexist(mnt):
    with pytest.raises(OSError) as e:
        helpers.renameat2(mnt / "empty", mnt / "hello.txt",
                          helpers.RENAME_NOREPLACE)
    assert e.value.errno == errno.EEXIST
    assert helpers.read_file(mnt / "hello.txt") == b"hello, world\n"
    helpers.renameat2(mnt / "empty", mnt / "newname",
                      helpers.RENAME_NOREPLACE)
    assert (mnt / "newname").exists() and not (mnt / "empty").exists()


def test_renameat2_exchange_swaps_two_names(mnt):
    try:
        helpers.renameat2(mnt / "hello.txt", mnt / "sub",
                          helpers.RENAME_EXCHANGE)
    except OSError as e:
        if e.errno == errno.EINVAL:
            pytest.skip("RENAME_EXCHANGE not supported (EINVAL)")
        raise
    assert os.path.isdir(mnt / "hello.txt")
    assert helpers.read_file(mnt / "sub") == b"hello, world\n"
    assert (mnt / "hello.txt/notes.txt").exists()


def test_hard_links_share_inode_data_and_count(rw):
    helpers.write_file(rw / "a", b"first")
    os.mkdir(rw / "d")
    os.link(rw / "a", rw / "d/b")
    sa, sb = os.stat(rw / "a"), os.stat(rw / "d/b")
    assert sa.st_ino == sb.st_ino
    assert sa.st_nlink == sb.st_nlink == 2
    helpers.write_file(rw / "d/b", b"second", "r+b")
    assert helpers.read_file(rw / "a") == b"second"
    os.unlink(rw / "a")
    assert os.stat(rw / "d/b").st_nlink == 1
    assert helpers.read_file(rw / "d/b") == b"second"


def test_an_unlinked_open_file_stays_readable_and_writable(rw):
    helpers.write_file(rw / "gone", b"still here")
    fd = os.open(rw / "gone", os.O_RDWR)
    try:
        os.unlink(rw / "gone")
        assert not (rw / "gone").exists()
        os.pwrite(fd, b"STILL", 0)
        assert os.pread(fd, 100, 0) == b"STILL here"
    finally:
        os.close(fd)
    assert os.listdir(rw.path) == []


def test_symlinks_read_back_and_resolve(rw):
    helpers.write_file(rw / "target", b"pointed at")
    os.symlink("target", rw / "rel")
    os.symlink(str(rw / "target"), rw / "abs")
    os.symlink("nowhere", rw / "dangling")
    assert os.readlink(rw / "rel") == "target"
    assert os.readlink(rw / "abs") == str(rw / "target")
    assert os.readlink(rw / "dangling") == "nowhere"
    assert stat.S_ISLNK(os.lstat(rw / "rel").st_mode)
    assert os.lstat(rw / "rel").st_size == len("target")
    assert helpers.read_file(rw / "rel") == b"pointed at"
    assert not os.path.exists(rw / "dangling")


# --- metadata -----------------------------------------------------------------

def test_chmod_changes_the_mode_bits_including_setgid_and_sticky(rw):
    helpers.write_file(rw / "f", b"")
    os.mkdir(rw / "d")
    for mode in (0o600, 0o755, 0o4711, 0o000):
        os.chmod(rw / "f", mode)
        assert stat.S_IMODE(os.stat(rw / "f").st_mode) == mode
    os.chmod(rw / "d", 0o3775)
    assert stat.S_IMODE(os.stat(rw / "d").st_mode) == 0o3775


@pytest.fixture
def shared_rw(public_dir, mount):
    """An empty SOURCE mounted with allow_other where every user can reach
    it; returns (mount, source)."""
    src = public_dir / "src"
    src.mkdir(mode=0o755)
    mp = public_dir / "mnt"
    mp.mkdir()
    return mount(src, options=["allow_other"], mountpoint=mp), src


def test_writes_and_o_trunc_by_another_user_clear_setuid_and_setgid(
        shared_rw):
    # With HANDLE_KILLPRIV_V2 the daemon clears them; on the passthrough
    # path the kernel writes the image itself and only says so by an
    # empty SETATTR (write) or FUSE_OPEN_KILL_SUIDGID (O_TRUNC open).
    m, src = shared_rw
    cases = {"write": "os.pwrite(os.open(p, os.O_WRONLY), b'y', 0)",
             "append": "os.write(os.open(p, os.O_WRONLY | os.O_APPEND), b'y')",
             "o_trunc": "os.open(p, os.O_WRONLY | os.O_TRUNC)",
             "truncate": "os.truncate(p, 1)"}
    for name in cases:
        helpers.write_file(m / name, b"xyz")
        os.chmod(m / name, 0o6777)
        helpers.write_file(m / (name + ".g"), b"xyz")
        os.chmod(m / (name + ".g"), 0o2767)  # no group x: setgid stays
    for name, code in cases.items():
        for p in (m / name, m / (name + ".g")):
            helpers.run(["setpriv", f"--reuid={helpers.OTHER_UID}",
                         f"--regid={helpers.OTHER_GID}", "--clear-groups",
                         helpers.PYTHON, "-c", "import os, sys\n"
                         f"p = sys.argv[1]\n{code}\n", str(p)], timeout=30)
        assert stat.S_IMODE(os.stat(m / name).st_mode) == 0o777, name
        assert stat.S_IMODE(os.stat(m / (name + ".g")).st_mode) == \
            0o2767, name
    # The owner's own write as root (CAP_FSETID) keeps them.
    helpers.write_file(m / "root", b"xyz")
    os.chmod(m / "root", 0o6777)
    with open(m / "root", "r+b") as f:
        f.write(b"y")
    os.truncate(m / "root", 1)
    assert stat.S_IMODE(os.stat(m / "root").st_mode) == 0o6777
    assert m.unmount() == 0
    assert stat.S_IMODE(os.stat(src / "write").st_mode) == 0o777
    assert stat.S_IMODE(os.stat(src / "root").st_mode) == 0o6777


@pytest.mark.parametrize("rule", ["relatime", "strictatime", "noatime"])
def test_reads_and_listings_update_atime_by_the_mount_rule(
        mount, empty_source, rule):
    m = mount(empty_source, options=[rule])
    old, older = helpers.T_OLD_NS, helpers.T_OLDER_NS
    helpers.write_file(m / "f", b"data")
    os.mkdir(m / "d")
    helpers.write_file(m / "d" / "g", b"")
    os.utime(m / "f", ns=(older, old))
    os.utime(m / "d", ns=(older, old))
    with open(m / "f", "rb") as f:
        assert f.read() == b"data"
    os.listdir(m / "d")
    if rule == "noatime":
        assert os.stat(m / "f").st_atime_ns == older
        assert os.stat(m / "d").st_atime_ns == older
    else:
        for p in (m / "f", m / "d"):
            assert abs(os.stat(p).st_atime_ns - time.time_ns()) < 60 * 10**9
        # relatime: an atime later than mtime and ctime, and recent,
        # stays; strictatime: every read moves it
        later = time.time_ns() + 3600 * 10**9
        os.utime(m / "f", ns=(later, old))
        with open(m / "f", "rb") as f:
            f.read()
        assert (os.stat(m / "f").st_atime_ns == later) == \
            (rule == "relatime")
    assert m.unmount() == 0


def test_chown_gives_a_file_to_another_user_and_group(rw):
    helpers.write_file(rw / "f", b"")
    os.chown(rw / "f", helpers.OTHER_UID, helpers.OTHER_GID)
    st = os.stat(rw / "f")
    assert (st.st_uid, st.st_gid) == (helpers.OTHER_UID, helpers.OTHER_GID)
    os.symlink("f", rw / "l")
    os.chown(rw / "l", 4444, 5555, follow_symlinks=False)
    st = os.lstat(rw / "l")
    assert (st.st_uid, st.st_gid) == (4444, 5555)
    assert os.stat(rw / "f").st_uid == helpers.OTHER_UID


def test_utime_sets_times_with_nanosecond_precision(rw):
    helpers.write_file(rw / "f", b"")
    atime, mtime = 1_234_567_890_123_456_789, 1_600_000_000_000_000_001
    os.utime(rw / "f", ns=(atime, mtime))
    st = os.stat(rw / "f")
    assert st.st_atime_ns == atime
    assert st.st_mtime_ns == mtime
    os.symlink("f", rw / "l")
    os.utime(rw / "l", ns=(atime, mtime + 2), follow_symlinks=False)
    assert os.lstat(rw / "l").st_mtime_ns == mtime + 2
    assert os.stat(rw / "f").st_mtime_ns == mtime


def test_a_write_updates_mtime_and_ctime(rw):
    helpers.write_file(rw / "f", b"")
    os.utime(rw / "f", ns=(10**18, 10**18))
    before = os.stat(rw / "f")
    helpers.write_file(rw / "f", b"more", "ab")
    after = os.stat(rw / "f")
    assert after.st_mtime_ns > before.st_mtime_ns
    assert after.st_ctime_ns >= before.st_ctime_ns
    assert abs(after.st_mtime - time.time()) < 60


def test_new_files_belong_to_the_creating_user_with_the_umask_applied(rw):
    old = os.umask(0o027)
    try:
        fd = os.open(rw / "f", os.O_CREAT | os.O_WRONLY, 0o666)
        os.close(fd)
        os.mkdir(rw / "d", 0o777)
    finally:
        os.umask(old)
    st = os.stat(rw / "f")
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert stat.S_IMODE(os.stat(rw / "d").st_mode) == 0o750
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())


def test_user_xattrs_set_get_list_replace_and_remove(rw):
    path = rw / "f"
    helpers.write_file(path, b"")
    os.setxattr(path, "user.a", b"one")
    os.setxattr(path, "user.big", b"z" * 4000)
    os.setxattr(path, "user.bin", b"\0\1\2\xff")
    assert os.getxattr(path, "user.a") == b"one"
    assert os.getxattr(path, "user.big") == b"z" * 4000
    assert os.getxattr(path, "user.bin") == b"\0\1\2\xff"
    assert sorted(os.listxattr(path)) == ["user.a", "user.big", "user.bin"]
    os.setxattr(path, "user.a", b"two", os.XATTR_REPLACE)
    assert os.getxattr(path, "user.a") == b"two"
    with pytest.raises(OSError) as e:
        os.setxattr(path, "user.a", b"three", os.XATTR_CREATE)
    assert e.value.errno == errno.EEXIST
    with pytest.raises(OSError) as e:
        os.setxattr(path, "user.none", b"x", os.XATTR_REPLACE)
    assert e.value.errno == errno.ENODATA
    os.removexattr(path, "user.a")
    assert sorted(os.listxattr(path)) == ["user.big", "user.bin"]
    with pytest.raises(OSError) as e:
        os.getxattr(path, "user.a")
    assert e.value.errno == errno.ENODATA
    with pytest.raises(OSError) as e:
        os.removexattr(path, "user.a")
    assert e.value.errno == errno.ENODATA


def test_xattrs_on_directories_work(rw):
    os.mkdir(rw / "d")
    os.setxattr(rw / "d", "user.k", b"v")
    assert os.getxattr(rw / "d", "user.k") == b"v"
    assert os.listxattr(rw / "d") == ["user.k"]


def test_trusted_xattrs_are_kept_for_root_and_hidden_from_others(
        shared_rw):
    m, src = shared_rw
    helpers.write_file(src / "old", b"x")
    os.chmod(src / "old", 0o644)
    os.setxattr(src / "old", "trusted.from_source", b"s")
    # made in SOURCE behind the mount: seen within about a second
    deadline = time.monotonic() + 10 * SLOWDOWN
    while not os.path.exists(m / "old") and time.monotonic() < deadline:
        time.sleep(0.1)
    helpers.write_file(m / "f", b"x")
    os.chmod(m / "f", 0o644)
    os.setxattr(m / "f", "trusted.t", b"v")
    os.setxattr(m / "f", "user.u", b"w")
    assert os.getxattr(m / "f", "trusted.t") == b"v"
    assert sorted(os.listxattr(m / "f")) == ["trusted.t", "user.u"]
    assert os.getxattr(m / "old", "trusted.from_source") == b"s"
    # As tmpfs: trusted.* is for CAP_SYS_ADMIN only, not even listed.
    r = helpers.run(["setpriv", f"--reuid={helpers.OTHER_UID}",
                     f"--regid={helpers.OTHER_GID}", "--clear-groups",
                     helpers.PYTHON, "-c", "import os, sys\n"
                     "print(sorted(os.listxattr(sys.argv[1])))\n",
                     str(m / "f")], timeout=30)
    assert r.stdout.strip() == "['user.u']"
    # Unknown namespaces are not supported; security.* holds only what
    # was set (security.capability is never kept: the mount is nosuid).
    for call in (lambda: os.setxattr(m / "f", "nosuchns.x", b"v"),
                 lambda: os.getxattr(m / "f", "nosuchns.x"),
                 lambda: os.removexattr(m / "f", "nosuchns.x")):
        assert helpers.errno_of(call) == errno.EOPNOTSUPP
    assert helpers.errno_of(os.getxattr, m / "f", "security.x") == \
        errno.ENODATA
    assert helpers.errno_of(os.getxattr, m / "f",
                            "security.capability") == errno.ENODATA
    os.removexattr(m / "old", "trusted.from_source")
    assert m.unmount() == 0
    assert os.getxattr(src / "f", "trusted.t") == b"v"
    assert os.getxattr(src / "f", "user.u") == b"w"
    assert os.listxattr(src / "old") == []


def test_statvfs_reports_a_sane_filesystem(rw):
    helpers.write_file(rw / "f", b"x" * 100000)
    sv = os.statvfs(rw.path)
    assert sv.f_bsize > 0 and sv.f_frsize > 0
    assert sv.f_blocks > 0
    assert 0 <= sv.f_bfree <= sv.f_blocks
    assert 0 <= sv.f_bavail <= sv.f_blocks
    assert sv.f_namemax == 255


def test_statvfs_reports_the_default_memory_cap_of_half_the_ram(rw):
    ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    sv = os.statvfs(rw.path)
    total = sv.f_blocks * sv.f_frsize
    assert 0.45 * ram <= total <= 0.55 * ram, (total, ram)


# --- locks --------------------------------------------------------------------

FLOCK_CHILD = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    print("locked")
except OSError as e:
    print("refused", e.errno)
"""

LOCKF_CHILD = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 0)
    print("locked")
except OSError as e:
    print("refused", e.errno)
"""


def test_flock_conflicts_between_processes_and_frees_on_unlock(rw):
    path = rw / "flock"
    helpers.write_file(path, b"lock me")
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        res = helpers.run_python(FLOCK_CHILD, path)
        assert res.stdout.split() == ["refused", str(errno.EWOULDBLOCK)]
        # Another open file in this process conflicts as well.
        fd2 = os.open(path, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd2, fcntl.LOCK_SH | fcntl.LOCK_NB)
        finally:
            os.close(fd2)
        fcntl.flock(fd, fcntl.LOCK_UN)
        res = helpers.run_python(FLOCK_CHILD, path)
        assert res.stdout.split() == ["locked"]
    finally:
        os.close(fd)


def test_fcntl_record_locks_conflict_with_a_child_process(rw):
    path = rw / "lockf"
    helpers.write_file(path, b"0123456789" * 10)
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX, 10, 0)
        res = helpers.run_python(LOCKF_CHILD, path)
        assert res.stdout.split()[0] == "refused"
        assert int(res.stdout.split()[1]) in (errno.EACCES, errno.EAGAIN)
        # A lock on another range does not conflict.
        res = helpers.run_python(LOCKF_CHILD.replace("10, 0)", "10, 50)"),
                                 path)
        assert res.stdout.split() == ["locked"]
        fcntl.lockf(fd, fcntl.LOCK_UN, 10, 0)
        res = helpers.run_python(LOCKF_CHILD, path)
        assert res.stdout.split() == ["locked"]
    finally:
        os.close(fd)


# --- tools and concurrency -------------------------------------------------------

def test_cp_and_cat_copy_bytes_into_out_of_and_within_the_mount(
        mnt, source, tmp_path):
    helpers.run(["cp", str(source / "random.bin"), str(mnt / "c1")])
    helpers.run(["cp", "--reflink=auto", str(mnt / "c1"), str(mnt / "c2")])
    helpers.run(["cp", "-a", str(mnt / "data"), str(mnt / "data-copy")])
    helpers.run(["cp", str(mnt / "c2"), str(tmp_path / "out")])
    with open(mnt / "c3", "wb") as out:
        helpers.run(["cat", str(mnt / "c2")], stdout=out, text=False)
    for p in (mnt / "c1", mnt / "c2", mnt / "c3", tmp_path / "out"):
        helpers.run(["cmp", str(source / "random.bin"), str(p)])
    helpers.run(["diff", "-r", "--no-dereference", str(source / "data"),
                 str(mnt / "data-copy")])


def test_posix_fallocate_extends_a_file_with_zeros(rw):
    fd = os.open(rw / "alloc", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"abc")
        os.posix_fallocate(fd, 0, 1 << 20)
        assert os.fstat(fd).st_size == 1 << 20
        assert os.pread(fd, 1 << 20, 0) == b"abc" + bytes((1 << 20) - 3)
    finally:
        os.close(fd)


CONCURRENT_WRITER = r"""
import os, sys
root, me = sys.argv[1], int(sys.argv[2])
shared = os.open(os.path.join(root, "shared"), os.O_WRONLY)
for i in range(40):
    path = os.path.join(root, f"w{me}-{i}")
    with open(path, "wb") as f:
        f.write(bytes([me]) * (1000 + 97 * i))
    os.pwrite(shared, bytes([me]) * 4096, (me * 40 + i) * 4096)
    with open(path, "rb") as f:
        assert f.read() == bytes([me]) * (1000 + 97 * i), path
    if i % 2:
        os.rename(path, path + ".renamed")
os.close(shared)
print("done")
"""


def test_many_processes_writing_at_once_lose_nothing(rw, empty_source):
    import subprocess
    nproc = 8
    helpers.write_file(rw / "shared", b"")
    os.truncate(rw / "shared", nproc * 40 * 4096)
    procs = [subprocess.Popen([helpers.PYTHON, "-c", CONCURRENT_WRITER,
                               str(rw.path), str(me)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL)
             for me in range(nproc)]
    results = []
    for p in procs:
        try:
            results.append(p.communicate(timeout=40 * SLOWDOWN))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0 and out == b"done\n", err.decode()
    shared = helpers.read_file(rw / "shared")
    for me in range(nproc):
        for i in range(40):
            name = f"w{me}-{i}" + (".renamed" if i % 2 else "")
            assert helpers.read_file(rw / name) == \
                bytes([me]) * (1000 + 97 * i)
            off = (me * 40 + i) * 4096
            assert shared[off:off + 4096] == bytes([me]) * 4096
    want = helpers.snapshot(rw.path, dir_mtime=False)
    assert rw.unmount() == 0
    helpers.assert_same_tree(want, helpers.snapshot(empty_source,
                                                    dir_mtime=False))


def test_rename_onto_another_name_of_the_same_inode_changes_nothing(rw):
    helpers.write_file(rw / "a", b"same inode")
    os.link(rw / "a", rw / "b")
    os.rename(rw / "a", rw / "b")
    assert sorted(os.listdir(rw.path)) == ["a", "b"]
    assert os.stat(rw / "a").st_nlink == 2
    os.rename(rw / "a", rw / "a")
    assert helpers.read_file(rw / "a") == b"same inode"


def test_an_open_descriptor_sees_writes_and_truncates_made_elsewhere(rw):
    path = rw / "shared"
    helpers.write_file(path, b"A" * 100000)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert os.pread(fd, 10, 0) == b"A" * 10
        helpers.run_python(
            "import os, sys\n"
            "fd = os.open(sys.argv[1], os.O_WRONLY)\n"
            "os.pwrite(fd, b'B' * 10, 0)\n"
            "os.pwrite(fd, b'C' * 10, 200000)\n", path)
        assert os.pread(fd, 10, 0) == b"B" * 10
        assert os.fstat(fd).st_size == 200010
        assert os.pread(fd, 10, 200000) == b"C" * 10
        os.truncate(path, 5)
        assert os.fstat(fd).st_size == 5
        assert os.pread(fd, 100, 0) == b"BBBBB"
        helpers.write_file(path, b"new content")  # O_TRUNC by another open
        assert os.pread(fd, 100, 0) == b"new content"
    finally:
        os.close(fd)
