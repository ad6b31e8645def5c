"""POSIX conformance, operation by operation: the success cases and the
exact errno of the error cases. Every test runs three times, through the
`fsd` fixture: on a tmpfs directory (the reference; these runs check the
tests themselves) and on the mount with each data path. A test that passes
on tmpfs and fails on the mount is a difference of the filesystem.

Permissions (other uids) are in test_conformance_perms.py, timestamps in
test_conformance_times.py.
"""

import fcntl
import os
import select
import stat
import struct
import time


import rlib
from rlib import err, helpers

NAME_MAX = 255
PATH_MAX = 4096


def write(path, data=b"", mode=0o644):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def read(path):
    with open(path, "rb") as f:
        return f.read()


# --- open, creat, O_EXCL, O_TRUNC, O_APPEND -----------------------------------

def test_creat_makes_an_empty_file_owned_by_the_caller_with_umask_applied(fsd):
    fd = os.open(fsd.p("f"), os.O_CREAT | os.O_WRONLY, 0o666)
    os.close(fd)
    st = os.stat(fsd.p("f"))
    assert stat.S_ISREG(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o644
    assert (st.st_size, st.st_nlink, st.st_uid, st.st_gid) == (0, 1, 0, 0)


def test_o_creat_on_an_existing_file_opens_it_unchanged(fsd):
    write(fsd.p("f"), b"keep", 0o600)
    fd = os.open(fsd.p("f"), os.O_CREAT | os.O_RDWR, 0o777)
    try:
        assert os.read(fd, 10) == b"keep"
    finally:
        os.close(fd)
    assert stat.S_IMODE(os.stat(fsd.p("f")).st_mode) == 0o600


def test_o_excl_refuses_an_existing_file_a_symlink_and_a_dangling_symlink(fsd):
    write(fsd.p("f"))
    os.symlink("f", fsd.p("l"))
    os.symlink("nowhere", fsd.p("dangling"))
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY
    assert err(os.open, fsd.p("f"), flags) == "EEXIST"
    assert err(os.open, fsd.p("l"), flags) == "EEXIST"
    assert err(os.open, fsd.p("dangling"), flags) == "EEXIST"
    assert not os.path.lexists(fsd.p("nowhere"))
    assert err(os.open, fsd.p("new"), flags) == "OK"


def test_o_creat_through_a_dangling_symlink_creates_its_target(fsd):
    os.symlink("target", fsd.p("l"))
    fd = os.open(fsd.p("l"), os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(fd, b"via link")
    os.close(fd)
    assert read(fsd.p("target")) == b"via link"
    assert os.path.islink(fsd.p("l"))


def test_o_trunc_empties_the_file_and_keeps_its_inode(fsd):
    write(fsd.p("f"), b"x" * 100000)
    ino = os.stat(fsd.p("f")).st_ino
    fd = os.open(fsd.p("f"), os.O_RDWR | os.O_TRUNC)
    try:
        assert os.fstat(fd).st_size == 0
        assert os.read(fd, 10) == b""
    finally:
        os.close(fd)
    assert os.stat(fsd.p("f")).st_ino == ino
    assert os.stat(fsd.p("f")).st_size == 0


def test_o_trunc_of_an_open_file_is_seen_by_the_other_descriptor(fsd):
    write(fsd.p("f"), b"0123456789")
    fd = os.open(fsd.p("f"), os.O_RDONLY)
    try:
        os.close(os.open(fsd.p("f"), os.O_WRONLY | os.O_TRUNC))
        assert os.fstat(fd).st_size == 0
        assert os.pread(fd, 10, 0) == b""
    finally:
        os.close(fd)


def test_o_append_writes_at_the_end_even_with_pwrite(fsd):
    write(fsd.p("f"), b"start")
    fd = os.open(fsd.p("f"), os.O_WRONLY | os.O_APPEND)
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, b"-one")
        # Linux: pwrite on an O_APPEND descriptor appends (pwrite(2) BUGS).
        os.pwrite(fd, b"-two", 0)
        assert os.lseek(fd, 0, os.SEEK_CUR) == len(b"start-one")
    finally:
        os.close(fd)
    assert read(fsd.p("f")) == b"start-one-two"


def test_two_o_append_writers_never_overwrite_each_other(fsd):
    write(fsd.p("f"))
    fds = [os.open(fsd.p("f"), os.O_WRONLY | os.O_APPEND) for _ in range(2)]
    try:
        for i in range(200):
            os.write(fds[i % 2], b"%d:%04d\n" % (i % 2, i))
    finally:
        for fd in fds:
            os.close(fd)
    lines = read(fsd.p("f")).splitlines()
    assert lines == [b"%d:%04d" % (i % 2, i) for i in range(200)]


def test_open_errors(fsd):
    write(fsd.p("f"))
    os.mkdir(fsd.p("d"))
    os.symlink("f", fsd.p("l"))
    assert err(os.open, fsd.p("missing"), os.O_RDONLY) == "ENOENT"
    assert err(os.open, fsd.p("nodir", "f"), os.O_CREAT | os.O_WRONLY) == \
        "ENOENT"
    assert err(os.open, fsd.p("f", "x"), os.O_RDONLY) == "ENOTDIR"
    assert err(os.open, fsd.p("f") + "/", os.O_RDONLY) == "ENOTDIR"
    assert err(os.open, fsd.p("new") + "/", os.O_CREAT | os.O_WRONLY) == \
        "EISDIR"
    assert err(os.open, fsd.p("f"), os.O_RDONLY | os.O_DIRECTORY) == \
        "ENOTDIR"
    assert err(os.open, fsd.p("d"), os.O_WRONLY) == "EISDIR"
    assert err(os.open, fsd.p("d"), os.O_RDWR) == "EISDIR"
    assert err(os.open, fsd.p("d"), os.O_CREAT | os.O_WRONLY) == "EISDIR"
    assert err(os.open, fsd.p("l"), os.O_RDONLY | os.O_NOFOLLOW) == "ELOOP"
    assert err(os.open, fsd.p("d"), os.O_RDONLY | os.O_DIRECTORY) == "OK"


# --- read, write, pread, pwrite, lseek ------------------------------------------

def test_read_write_and_the_file_position(fsd):
    fd = os.open(fsd.p("f"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        assert os.write(fd, b"hello world") == 11
        assert os.lseek(fd, 0, os.SEEK_CUR) == 11
        assert os.read(fd, 5) == b""
        os.lseek(fd, 6, os.SEEK_SET)
        assert os.read(fd, 100) == b"world"
        assert os.lseek(fd, -5, os.SEEK_END) == 6
        assert os.pread(fd, 5, 0) == b"hello"
        assert os.lseek(fd, 0, os.SEEK_CUR) == 6  # pread keeps the position
        assert os.pwrite(fd, b"W", 6) == 1
        assert os.lseek(fd, 0, os.SEEK_CUR) == 6
        assert os.pread(fd, 100, 0) == b"hello World"
        assert os.pread(fd, 10, 11) == b""
        assert os.pread(fd, 10, 1 << 40) == b""
    finally:
        os.close(fd)


def test_a_write_past_the_end_leaves_a_hole_of_zeros(fsd):
    fd = os.open(fsd.p("f"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"a")
        os.pwrite(fd, b"z", 3 << 20)
        assert os.fstat(fd).st_size == (3 << 20) + 1
        data = os.pread(fd, 4 << 20, 0)
        assert data[0:1] == b"a" and data[-1:] == b"z"
        assert data[1:-1].count(0) == len(data) - 2
    finally:
        os.close(fd)


def test_seek_data_and_seek_hole(fsd):
    fd = os.open(fsd.p("f"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, b"x" * 10, 0)
        os.pwrite(fd, b"y" * 10, 4 << 20)
        size = os.fstat(fd).st_size
        assert os.lseek(fd, 0, os.SEEK_DATA) == 0
        hole = os.lseek(fd, 0, os.SEEK_HOLE)
        assert 10 <= hole <= size
        # A filesystem may report no hole but the implicit one at the end
        # (lseek(2); the kernel's generic answer, the daemon path's):
        # then there is no data after it.
        if hole == size:
            assert err(os.lseek, fd, hole, os.SEEK_DATA) == "ENXIO"
        else:
            data = os.lseek(fd, hole, os.SEEK_DATA)
            assert hole <= data <= (4 << 20)
        assert err(os.lseek, fd, size, os.SEEK_DATA) == "ENXIO"
        assert err(os.lseek, fd, size + 1, os.SEEK_HOLE) == "ENXIO"
        assert os.lseek(fd, size - 1, os.SEEK_HOLE) == size
    finally:
        os.close(fd)


def test_read_write_errors(fsd):
    write(fsd.p("f"), b"data")
    os.mkdir(fsd.p("d"))
    ro = os.open(fsd.p("f"), os.O_RDONLY)
    wo = os.open(fsd.p("f"), os.O_WRONLY)
    dfd = os.open(fsd.p("d"), os.O_RDONLY)
    try:
        assert err(os.write, ro, b"x") == "EBADF"
        assert err(os.pwrite, ro, b"x", 0) == "EBADF"
        assert err(os.read, wo, 1) == "EBADF"
        assert err(os.read, dfd, 1) == "EISDIR"
        assert err(os.pwrite, wo, b"x", -1) == "EINVAL"
        assert err(os.pread, ro, 1, -1) == "EINVAL"
        assert err(os.lseek, ro, -1, os.SEEK_SET) == "EINVAL"
        assert err(os.lseek, ro, 0, 99) == "EINVAL"
    finally:
        for fd in (ro, wo, dfd):
            os.close(fd)


def test_zero_length_reads_and_writes_return_zero(fsd):
    write(fsd.p("f"), b"data")
    fd = os.open(fsd.p("f"), os.O_RDWR)
    try:
        assert os.write(fd, b"") == 0
        assert os.pwrite(fd, b"", 1 << 30) == 0
        assert os.read(fd, 0) == b""
        assert os.fstat(fd).st_size == 4
    finally:
        os.close(fd)


def test_large_single_requests_are_served_whole(fsd):
    data = os.urandom(9 << 20)
    fd = os.open(fsd.p("f"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        assert os.write(fd, data) == len(data)
        got = bytearray()
        while len(got) < len(data):
            chunk = os.pread(fd, len(data), len(got))
            assert chunk
            got += chunk
        assert bytes(got) == data
    finally:
        os.close(fd)


def test_writes_and_truncates_at_the_largest_offsets(fsd):
    """MAX_LFS_FILESIZE is 2^63-1 for tmpfs and FUSE alike; a request whose
    end would pass 2^63 is EINVAL (rw_verify_area)."""
    top = (1 << 63) - 1
    fd = os.open(fsd.p("f"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        assert err(os.pwrite, fd, b"x", top) == "EINVAL"
        assert err(os.pwrite, fd, b"xyz", top - 1) == "EINVAL"
        assert os.fstat(fd).st_size == 0
        assert os.pwrite(fd, b"xy", top - 2) == 2
        assert os.fstat(fd).st_size == top
        assert os.pread(fd, 2, top - 2) == b"xy"
        assert os.pread(fd, 10, 1 << 40) == b"\0" * 10
        os.ftruncate(fd, 0)
        os.ftruncate(fd, top)
        assert os.fstat(fd).st_size == top
        assert os.pread(fd, 4, top - 4) == b"\0" * 4
        os.ftruncate(fd, 5)
        assert os.fstat(fd).st_size == 5
    finally:
        os.close(fd)


def _fsize_child(path, code):
    """Run code in a child with RLIMIT_FSIZE of 1 MiB and SIGXFSZ ignored;
    returns its stdout."""
    prog = ("import os,resource,signal,sys\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (1<<20, 1<<20))\n"
            "p = sys.argv[1]\n"
            "def e(f, *a):\n"
            "    try:\n"
            "        r = f(*a); return 'OK' if r is None else r\n"
            "    except OSError as x:\n"
            "        import errno; return errno.errorcode[x.errno]\n" + code)
    res = rlib.run([rlib.PYTHON, "-c", prog, path], timeout=30)
    return res.stdout.split()


def test_rlimit_fsize_gives_efbig_and_short_writes(fsd):
    write(fsd.p("f"), b"")
    out = _fsize_child(fsd.p("f"), (
        "fd = os.open(p, os.O_RDWR)\n"
        "print(e(os.pwrite, fd, b'x', 1<<20))\n"
        "print(e(os.pwrite, fd, b'abcd', (1<<20) - 2))\n"
        "print(e(os.ftruncate, fd, (1<<20) + 1))\n"
        "print(e(os.truncate, p, 2<<20))\n"
        "print(e(os.ftruncate, fd, 1<<20))\n"))
    assert out == ["EFBIG", "2", "EFBIG", "EFBIG", "OK"]
    assert os.stat(fsd.p("f")).st_size == 1 << 20


# --- truncate, ftruncate --------------------------------------------------------

def test_truncate_up_reads_zeros_down_forgets_bytes(fsd):
    write(fsd.p("f"), b"abcdefgh")
    os.truncate(fsd.p("f"), 4)
    assert read(fsd.p("f")) == b"abcd"
    os.truncate(fsd.p("f"), 100000)
    assert read(fsd.p("f")) == b"abcd" + b"\0" * (100000 - 4)
    fd = os.open(fsd.p("f"), os.O_RDWR)
    try:
        os.ftruncate(fd, 2)
        assert os.fstat(fd).st_size == 2
        os.ftruncate(fd, 70000)
        assert os.pread(fd, 70000, 0) == b"ab" + b"\0" * 69998
        os.ftruncate(fd, 0)
        assert os.pread(fd, 10, 0) == b""
    finally:
        os.close(fd)


def test_truncate_errors(fsd):
    write(fsd.p("f"), b"data")
    os.mkdir(fsd.p("d"))
    assert err(os.truncate, fsd.p("f"), -1) == "EINVAL"
    assert err(os.truncate, fsd.p("d"), 0) == "EISDIR"
    assert err(os.truncate, fsd.p("missing"), 0) == "ENOENT"
    assert err(os.truncate, fsd.p("f", "x"), 0) == "ENOTDIR"
    ro = os.open(fsd.p("f"), os.O_RDONLY)
    try:
        assert err(os.ftruncate, ro, 0) == "EINVAL"
    finally:
        os.close(ro)
    dfd = os.open(fsd.p("d"), os.O_RDONLY)
    try:
        assert err(os.ftruncate, dfd, 0) == "EINVAL"
    finally:
        os.close(dfd)
    assert read(fsd.p("f")) == b"data"


# --- link, unlink ---------------------------------------------------------------

def test_link_adds_a_name_to_the_same_inode(fsd):
    write(fsd.p("f"), b"shared")
    os.mkdir(fsd.p("d"))
    os.link(fsd.p("f"), fsd.p("d", "g"))
    a, b = os.stat(fsd.p("f")), os.stat(fsd.p("d", "g"))
    assert a.st_ino == b.st_ino and a.st_nlink == b.st_nlink == 2
    write(fsd.p("d", "g"), b"changed through the link")
    assert read(fsd.p("f")) == b"changed through the link"
    os.unlink(fsd.p("f"))
    assert os.stat(fsd.p("d", "g")).st_nlink == 1
    assert read(fsd.p("d", "g")) == b"changed through the link"


def test_link_errors(fsd):
    write(fsd.p("f"))
    write(fsd.p("g"))
    os.mkdir(fsd.p("d"))
    os.symlink("f", fsd.p("l"))
    assert err(os.link, fsd.p("f"), fsd.p("g")) == "EEXIST"
    assert err(os.link, fsd.p("f"), fsd.p("l")) == "EEXIST"
    assert err(os.link, fsd.p("d"), fsd.p("d2")) == "EPERM"
    assert err(os.link, fsd.p("missing"), fsd.p("x")) == "ENOENT"
    assert err(os.link, fsd.p("f"), fsd.p("nodir", "x")) == "ENOENT"
    assert err(os.link, fsd.p("f"), fsd.p("g", "x")) == "ENOTDIR"
    assert err(os.link, fsd.p("f"), os.path.join(fsd.other, "x")) == "EXDEV"
    assert err(os.link, fsd.p("f"), fsd.p("n" * 256)) == "ENAMETOOLONG"
    assert err(os.link, fsd.p("f"), fsd.p("n" * 255)) == "OK"


def test_link_to_a_symlink_links_the_symlink_itself(fsd):
    write(fsd.p("f"))
    os.symlink("f", fsd.p("l"))
    os.link(fsd.p("l"), fsd.p("l2"), follow_symlinks=False)
    assert os.path.islink(fsd.p("l2"))
    assert os.lstat(fsd.p("l2")).st_nlink == 2
    assert os.readlink(fsd.p("l2")) == "f"


def test_unlink_of_an_open_file_keeps_its_data_until_close(fsd):
    write(fsd.p("f"), b"still here")
    fd = os.open(fsd.p("f"), os.O_RDWR)
    try:
        os.unlink(fsd.p("f"))
        assert not os.path.lexists(fsd.p("f"))
        assert os.fstat(fd).st_nlink == 0
        assert os.pread(fd, 100, 0) == b"still here"
        os.pwrite(fd, b"!", 10)
        assert os.pread(fd, 100, 0) == b"still here!"
        assert os.listdir(fsd.path) == []
        write(fsd.p("f"), b"new file")  # the name is free again
        assert os.pread(fd, 100, 0) == b"still here!"
    finally:
        os.close(fd)
    assert read(fsd.p("f")) == b"new file"


def test_unlink_errors(fsd):
    os.mkdir(fsd.p("d"))
    write(fsd.p("f"))
    assert err(os.unlink, fsd.p("missing")) == "ENOENT"
    assert err(os.unlink, fsd.p("d")) == "EISDIR"
    assert err(os.unlink, fsd.p("f", "x")) == "ENOTDIR"
    assert err(os.unlink, fsd.p("n" * 256)) == "ENAMETOOLONG"


# --- rename, renameat2 ----------------------------------------------------------

def test_rename_over_an_existing_file_replaces_it_atomically(fsd):
    write(fsd.p("a"), b"new")
    write(fsd.p("b"), b"old")
    fd = os.open(fsd.p("b"), os.O_RDONLY)
    try:
        ino = os.stat(fsd.p("a")).st_ino
        os.rename(fsd.p("a"), fsd.p("b"))
        assert os.stat(fsd.p("b")).st_ino == ino
        assert read(fsd.p("b")) == b"new"
        assert not os.path.exists(fsd.p("a"))
        assert os.pread(fd, 10, 0) == b"old"  # the replaced file lives on
        assert os.fstat(fd).st_nlink == 0
    finally:
        os.close(fd)


def test_rename_between_names_of_one_inode_does_nothing(fsd):
    write(fsd.p("a"), b"x")
    os.link(fsd.p("a"), fsd.p("b"))
    os.rename(fsd.p("a"), fsd.p("b"))
    assert os.path.exists(fsd.p("a")) and os.path.exists(fsd.p("b"))
    assert os.stat(fsd.p("a")).st_nlink == 2


def test_rename_of_directories_moves_the_subtree_and_link_counts(fsd):
    os.makedirs(fsd.p("a", "sub"))
    os.mkdir(fsd.p("b"))
    write(fsd.p("a", "sub", "f"), b"deep")
    os.rename(fsd.p("a"), fsd.p("b", "a"))
    assert read(fsd.p("b", "a", "sub", "f")) == b"deep"
    assert os.stat(fsd.p("b")).st_nlink == 3
    os.mkdir(fsd.p("empty"))
    os.rename(fsd.p("b", "a"), fsd.p("empty"))  # over an empty directory
    assert read(fsd.p("empty", "sub", "f")) == b"deep"
    assert os.stat(fsd.p("b")).st_nlink == 2


def test_rename_errors(fsd):
    write(fsd.p("f"))
    os.makedirs(fsd.p("d", "sub"))
    os.mkdir(fsd.p("full"))
    write(fsd.p("full", "x"))
    os.mkdir(fsd.p("empty"))
    assert err(os.rename, fsd.p("missing"), fsd.p("x")) == "ENOENT"
    assert err(os.rename, fsd.p("f"), fsd.p("nodir", "x")) == "ENOENT"
    assert err(os.rename, fsd.p("f"), fsd.p("d")) == "EISDIR"
    assert err(os.rename, fsd.p("d"), fsd.p("f")) == "ENOTDIR"
    assert err(os.rename, fsd.p("empty"), fsd.p("full")) == "ENOTEMPTY"
    assert err(os.rename, fsd.p("d"), fsd.p("d", "sub", "x")) == "EINVAL"
    assert err(os.rename, fsd.p("d"), fsd.p("d", "x")) == "EINVAL"
    assert err(os.rename, fsd.p("f"), os.path.join(fsd.other, "f")) == \
        "EXDEV"
    assert err(os.rename, fsd.p("f"), fsd.p("n" * 256)) == "ENAMETOOLONG"
    assert err(os.rename, fsd.p("d", "."), fsd.p("x")) in ("EBUSY", "EINVAL")
    assert err(os.rename, fsd.p("f"), fsd.p("f", "x")) == "ENOTDIR"
    assert sorted(os.listdir(fsd.path)) == ["d", "empty", "f", "full"]


def test_renameat2_noreplace(fsd):
    write(fsd.p("a"), b"a")
    write(fsd.p("b"), b"b")
    r2 = helpers.renameat2
    assert err(r2, fsd.p("a"), fsd.p("b"), helpers.RENAME_NOREPLACE) == \
        "EEXIST"
    assert read(fsd.p("b")) == b"b"
    assert err(r2, fsd.p("a"), fsd.p("c"), helpers.RENAME_NOREPLACE) == "OK"
    assert read(fsd.p("c")) == b"a" and not os.path.exists(fsd.p("a"))


def test_renameat2_exchange_swaps_files_and_directories(fsd):
    write(fsd.p("f"), b"file")
    os.mkdir(fsd.p("d"))
    write(fsd.p("d", "inner"), b"inner")
    fino, dino = os.stat(fsd.p("f")).st_ino, os.stat(fsd.p("d")).st_ino
    helpers.renameat2(fsd.p("f"), fsd.p("d"), helpers.RENAME_EXCHANGE)
    assert os.path.isdir(fsd.p("f")) and os.path.isfile(fsd.p("d"))
    assert os.stat(fsd.p("f")).st_ino == dino
    assert os.stat(fsd.p("d")).st_ino == fino
    assert read(fsd.p("f", "inner")) == b"inner"
    assert read(fsd.p("d")) == b"file"


def test_renameat2_errors(fsd):
    write(fsd.p("a"))
    r2 = helpers.renameat2
    assert err(r2, fsd.p("a"), fsd.p("missing"),
               helpers.RENAME_EXCHANGE) == "ENOENT"
    assert err(r2, fsd.p("a"), fsd.p("b"),
               helpers.RENAME_EXCHANGE | helpers.RENAME_NOREPLACE) == "EINVAL"
    assert err(r2, fsd.p("a"), fsd.p("b"), 1 << 10) == "EINVAL"
    assert os.path.exists(fsd.p("a"))


# --- mkdir, rmdir, readdir ------------------------------------------------------

def test_mkdir_and_rmdir_and_the_parent_link_count(fsd):
    base = os.stat(fsd.path).st_nlink
    os.mkdir(fsd.p("d"), 0o777)
    st = os.stat(fsd.p("d"))
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o755
    assert st.st_nlink == 2
    assert os.stat(fsd.path).st_nlink == base + 1
    os.mkdir(fsd.p("d", "e"))
    assert os.stat(fsd.p("d")).st_nlink == 3
    os.rmdir(fsd.p("d", "e"))
    os.rmdir(fsd.p("d"))
    assert os.stat(fsd.path).st_nlink == base
    assert os.listdir(fsd.path) == []


def test_mkdir_rmdir_errors(fsd):
    os.makedirs(fsd.p("d", "sub"))
    write(fsd.p("f"))
    assert err(os.mkdir, fsd.p("d")) == "EEXIST"
    assert err(os.mkdir, fsd.p("f")) == "EEXIST"
    assert err(os.mkdir, fsd.p("nodir", "x")) == "ENOENT"
    assert err(os.mkdir, fsd.p("f", "x")) == "ENOTDIR"
    assert err(os.mkdir, fsd.p("n" * 256)) == "ENAMETOOLONG"
    assert err(os.rmdir, fsd.p("d")) == "ENOTEMPTY"
    assert err(os.rmdir, fsd.p("f")) == "ENOTDIR"
    assert err(os.rmdir, fsd.p("missing")) == "ENOENT"
    assert err(os.rmdir, fsd.p("d", ".")) == "EINVAL"
    assert err(os.rmdir, fsd.p("d", "sub", "..")) == "ENOTEMPTY"


def test_setgid_directory_passes_on_its_group(fsd):
    os.mkdir(fsd.p("g"))
    os.chown(fsd.p("g"), 0, rlib.OTHER_GID)
    os.chmod(fsd.p("g"), 0o2775)
    write(fsd.p("g", "f"))
    os.mkdir(fsd.p("g", "sub"))
    assert os.stat(fsd.p("g", "f")).st_gid == rlib.OTHER_GID
    st = os.stat(fsd.p("g", "sub"))
    assert st.st_gid == rlib.OTHER_GID and st.st_mode & stat.S_ISGID


def test_readdir_lists_every_name_once_with_its_type(fsd):
    names = {f"f{i:04d}" for i in range(500)}
    for n in names:
        write(fsd.p(n))
    os.mkdir(fsd.p("dir"))
    os.symlink("f0000", fsd.p("sym"))
    got = {}
    with os.scandir(fsd.path) as it:
        for e in it:
            assert e.name not in got
            got[e.name] = ("d" if e.is_dir(follow_symlinks=False) else
                           "l" if e.is_symlink() else "f")
    assert set(got) == names | {"dir", "sym"}
    assert got["dir"] == "d" and got["sym"] == "l" and got["f0001"] == "f"


def test_readdir_while_unlinking_sees_each_remaining_name_once(fsd):
    for i in range(300):
        write(fsd.p(f"f{i:03d}"))
    seen = []
    with os.scandir(fsd.path) as it:
        for i, e in enumerate(it):
            seen.append(e.name)
            if i == 10:
                for j in range(150, 300):
                    os.unlink(fsd.p(f"f{j:03d}"))
    assert len(seen) == len(set(seen))
    assert {f"f{i:03d}" for i in range(150)} <= set(seen)


# --- symlink, readlink ----------------------------------------------------------

def test_symlink_and_readlink_keep_the_exact_target(fsd):
    targets = ["plain", "../up/and/down", "/abs/path", "with space",
               "x" * 4095, "\x01odd\nbytes", "trailing/"]
    for i, t in enumerate(targets):
        os.symlink(t, fsd.p(f"l{i}"))
        assert os.readlink(fsd.p(f"l{i}")) == t
        st = os.lstat(fsd.p(f"l{i}"))
        assert stat.S_ISLNK(st.st_mode) and st.st_size == len(t.encode())
    os.symlink(b"\xff\xfe", os.fsencode(fsd.p("bin")))
    assert os.readlink(os.fsencode(fsd.p("bin"))) == b"\xff\xfe"


def test_symlink_errors_and_loops(fsd):
    write(fsd.p("f"))
    os.symlink("b", fsd.p("a"))
    os.symlink("a", fsd.p("b"))
    assert err(os.stat, fsd.p("a")) == "ELOOP"
    assert err(os.open, fsd.p("a"), os.O_RDONLY) == "ELOOP"
    assert err(os.symlink, "x", fsd.p("f")) == "EEXIST"
    assert err(os.symlink, "x" * 4096, fsd.p("long")) == "ENAMETOOLONG"
    assert err(os.symlink, "x", fsd.p("n" * 256)) == "ENAMETOOLONG"
    assert err(os.readlink, fsd.p("f")) == "EINVAL"
    assert err(os.readlink, fsd.p("missing")) == "ENOENT"
    # 40 links are followed (MAXSYMLINKS), the 41st is ELOOP.
    write(fsd.p("t0"), b"end")
    for i in range(1, 42):
        os.symlink(f"t{i - 1}", fsd.p(f"t{i}"))
    assert read(fsd.p("t40")) == b"end"
    assert err(os.stat, fsd.p("t41")) == "ELOOP"


def test_symlinks_resolve_through_directories(fsd):
    os.makedirs(fsd.p("real", "sub"))
    write(fsd.p("real", "sub", "f"), b"found")
    os.symlink("real/sub", fsd.p("shortcut"))
    os.symlink("../../real", fsd.p("real", "sub", "back"))
    assert read(fsd.p("shortcut", "f")) == b"found"
    assert read(fsd.p("shortcut", "back", "sub", "f")) == b"found"


# --- chmod, chown ---------------------------------------------------------------

def test_chmod_sets_every_mode_bit(fsd):
    write(fsd.p("f"))
    for mode in (0o7777, 0o4755, 0o2711, 0o1700, 0o000, 0o644):
        os.chmod(fsd.p("f"), mode)
        assert stat.S_IMODE(os.stat(fsd.p("f")).st_mode) == mode
    fd = os.open(fsd.p("f"), os.O_RDONLY)
    try:
        os.fchmod(fd, 0o600)
        assert stat.S_IMODE(os.fstat(fd).st_mode) == 0o600
    finally:
        os.close(fd)


def test_chown_and_lchown(fsd):
    write(fsd.p("f"))
    os.symlink("f", fsd.p("l"))
    os.chown(fsd.p("f"), rlib.OTHER_UID, rlib.OTHER_GID)
    st = os.stat(fsd.p("f"))
    assert (st.st_uid, st.st_gid) == (rlib.OTHER_UID, rlib.OTHER_GID)
    os.chown(fsd.p("l"), 4321, 8765, follow_symlinks=False)
    assert (os.lstat(fsd.p("l")).st_uid, os.lstat(fsd.p("l")).st_gid) == \
        (4321, 8765)
    assert os.stat(fsd.p("f")).st_uid == rlib.OTHER_UID
    os.chown(fsd.p("f"), -1, 99)
    st = os.stat(fsd.p("f"))
    assert (st.st_uid, st.st_gid) == (rlib.OTHER_UID, 99)


def test_chown_clears_setuid_and_group_exec_setgid(fsd):
    write(fsd.p("f"))
    os.chmod(fsd.p("f"), 0o6755)
    os.chown(fsd.p("f"), rlib.OTHER_UID, rlib.OTHER_GID)
    assert stat.S_IMODE(os.stat(fsd.p("f")).st_mode) == 0o755


def test_chmod_chown_of_missing_names(fsd):
    assert err(os.chmod, fsd.p("missing"), 0o644) == "ENOENT"
    assert err(os.chown, fsd.p("missing"), 1, 1) == "ENOENT"


# --- xattrs ---------------------------------------------------------------------

def test_user_xattrs_set_get_list_remove(fsd):
    write(fsd.p("f"))
    os.mkdir(fsd.p("d"))
    for p in (fsd.p("f"), fsd.p("d")):
        os.setxattr(p, "user.a", b"1")
        os.setxattr(p, "user.empty", b"")
        os.setxattr(p, "user.bin", bytes(range(256)) * 4)
        assert os.getxattr(p, "user.a") == b"1"
        assert os.getxattr(p, "user.empty") == b""
        assert os.getxattr(p, "user.bin") == bytes(range(256)) * 4
        assert sorted(os.listxattr(p)) == ["user.a", "user.bin",
                                           "user.empty"]
        os.setxattr(p, "user.a", b"22")
        assert os.getxattr(p, "user.a") == b"22"
        os.removexattr(p, "user.a")
        assert sorted(os.listxattr(p)) == ["user.bin", "user.empty"]


def test_xattr_flags_and_errors(fsd):
    write(fsd.p("f"))
    os.symlink("f", fsd.p("l"))
    p = fsd.p("f")
    os.setxattr(p, "user.x", b"v")
    assert err(os.setxattr, p, "user.x", b"w", os.XATTR_CREATE) == "EEXIST"
    assert err(os.setxattr, p, "user.y", b"w", os.XATTR_REPLACE) == "ENODATA"
    assert err(os.setxattr, p, "user.y", b"w", os.XATTR_CREATE) == "OK"
    assert err(os.setxattr, p, "user.y", b"z", os.XATTR_REPLACE) == "OK"
    assert os.getxattr(p, "user.y") == b"z"
    assert err(os.getxattr, p, "user.missing") == "ENODATA"
    assert err(os.removexattr, p, "user.missing") == "ENODATA"
    assert err(os.getxattr, fsd.p("missing"), "user.x") == "ENOENT"
    # XATTR_NAME_MAX is 255 bytes, prefix included.
    assert err(os.setxattr, p, "user." + "n" * 251, b"v") == "ERANGE"
    assert err(os.setxattr, p, "user." + "n" * 250, b"v") == "OK"
    assert err(os.setxattr, p, "", b"v") == "ERANGE"
    # user.* on a symlink is refused by the VFS.
    assert err(os.setxattr, fsd.p("l"), "user.x", b"v",
               follow_symlinks=False) == "EPERM"
    assert err(os.setxattr, p, "user.big", b"v" * (65537)) == "E2BIG"


def test_xattr_buffer_sizes(fsd):
    write(fsd.p("f"))
    os.setxattr(fsd.p("f"), "user.ten", b"0123456789")
    assert rlib.getxattr_sized(fsd.p("f"), "user.ten", 0) == 10
    assert err(rlib.getxattr_sized, fsd.p("f"), "user.ten", 5) == "ERANGE"
    assert rlib.getxattr_sized(fsd.p("f"), "user.ten", 10) == b"0123456789"
    need = rlib.listxattr_sized(fsd.p("f"), 0)
    assert need == len(b"user.ten\0")
    assert err(rlib.listxattr_sized, fsd.p("f"), need - 1) == "ERANGE"
    assert rlib.listxattr_sized(fsd.p("f"), need) == b"user.ten\0"


def test_xattrs_of_an_unknown_namespace_are_not_supported(fsd):
    write(fsd.p("f"))
    assert err(os.setxattr, fsd.p("f"), "nosuchns.x", b"v") == "ENOTSUP"
    assert err(os.getxattr, fsd.p("f"), "nosuchns.x") == "ENOTSUP"
    assert err(os.removexattr, fsd.p("f"), "nosuchns.x") == "ENOTSUP"


def test_trusted_xattrs_work_for_root(fsd):
    write(fsd.p("f"))
    assert err(os.setxattr, fsd.p("f"), "trusted.t", b"v") == "OK"
    assert os.getxattr(fsd.p("f"), "trusted.t") == b"v"


def test_a_new_file_lists_no_xattrs(fsd):
    write(fsd.p("f"))
    os.mkdir(fsd.p("d"))
    assert os.listxattr(fsd.p("f")) == []
    assert os.listxattr(fsd.p("d")) == []
    assert os.listxattr(fsd.path) == []


# --- statfs ---------------------------------------------------------------------

def test_statvfs_is_sane(fsd):
    sv = os.statvfs(fsd.path)
    assert sv.f_namemax == NAME_MAX
    assert sv.f_bsize > 0 and sv.f_frsize > 0
    assert 0 <= sv.f_bavail <= sv.f_bfree <= sv.f_blocks
    assert sv.f_blocks > 0
    fd = os.open(fsd.p("f"), os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        assert os.fstatvfs(fd).f_namemax == NAME_MAX
    finally:
        os.close(fd)


# --- flock, fcntl locks -----------------------------------------------------------

LOCK_CHILD = r"""
import fcntl, os, struct, sys, errno
p, kind = sys.argv[1], sys.argv[2]
fd = os.open(p, os.O_RDWR)
def e(f, *a):
    try:
        f(*a); return "OK"
    except OSError as x:
        return errno.errorcode[x.errno]
if kind == "flock_ex": print(e(fcntl.flock, fd, fcntl.LOCK_EX | fcntl.LOCK_NB))
if kind == "flock_sh": print(e(fcntl.flock, fd, fcntl.LOCK_SH | fcntl.LOCK_NB))
if kind.startswith("lockf"):
    start, length = map(int, kind.split(":")[1:])
    print(e(fcntl.lockf, fd, fcntl.LOCK_EX | fcntl.LOCK_NB, length, start))
if kind.startswith("getlk"):
    start, length = map(int, kind.split(":")[1:])
    arg = struct.pack("hhqqi", fcntl.F_WRLCK, 0, start, length, 0)
    res = fcntl.fcntl(fd, fcntl.F_GETLK, arg)
    t, w, s, l, pid = struct.unpack("hhqqi", res)
    print("UNLCK" if t == fcntl.F_UNLCK else f"{t}:{s}:{l}:{pid}")
"""


def lock_child(path, kind):
    res = rlib.run([rlib.PYTHON, "-c", LOCK_CHILD, path, kind], timeout=20)
    return res.stdout.strip()


def test_flock_conflicts_between_processes(fsd):
    write(fsd.p("f"))
    fd = os.open(fsd.p("f"), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        assert lock_child(fsd.p("f"), "flock_sh") == "OK"
        assert lock_child(fsd.p("f"), "flock_ex") == "EAGAIN"
        fcntl.flock(fd, fcntl.LOCK_EX)  # upgrade
        assert lock_child(fsd.p("f"), "flock_sh") == "EAGAIN"
        fcntl.flock(fd, fcntl.LOCK_UN)
        assert lock_child(fsd.p("f"), "flock_ex") == "OK"
        fcntl.flock(fd, fcntl.LOCK_EX)
    finally:
        os.close(fd)  # closing releases the flock
    assert lock_child(fsd.p("f"), "flock_ex") == "OK"


def test_fcntl_record_locks_conflict_by_range_and_report_the_owner(fsd):
    write(fsd.p("f"), b"x" * 1000)
    fd = os.open(fsd.p("f"), os.O_RDWR)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX, 100, 200)  # bytes 200..299
        assert lock_child(fsd.p("f"), "lockf:250:10") == "EAGAIN"
        assert lock_child(fsd.p("f"), "lockf:0:200") == "OK"
        assert lock_child(fsd.p("f"), "lockf:300:0") == "OK"
        assert lock_child(fsd.p("f"), "getlk:0:0") == \
            f"{fcntl.F_WRLCK}:200:100:{os.getpid()}"
        # Closing any descriptor of the file drops the process's locks.
        os.close(os.open(fsd.p("f"), os.O_RDONLY))
        assert lock_child(fsd.p("f"), "lockf:250:10") == "OK"
    finally:
        os.close(fd)


def test_ofd_locks_conflict_between_descriptors_of_one_process(fsd):
    write(fsd.p("f"), b"x" * 100)
    a = os.open(fsd.p("f"), os.O_RDWR)
    b = os.open(fsd.p("f"), os.O_RDWR)
    try:
        lk = struct.pack("hhqqi", fcntl.F_WRLCK, 0, 0, 10, 0)
        fcntl.fcntl(a, fcntl.F_OFD_SETLK, lk)
        assert err(fcntl.fcntl, b, fcntl.F_OFD_SETLK, lk) == "EAGAIN"
        un = struct.pack("hhqqi", fcntl.F_UNLCK, 0, 0, 10, 0)
        fcntl.fcntl(a, fcntl.F_OFD_SETLK, un)
        assert err(fcntl.fcntl, b, fcntl.F_OFD_SETLK, lk) == "OK"
    finally:
        os.close(a)
        os.close(b)


def test_a_blocking_lock_waits_for_the_holder(fsd):
    # Order, not time: the holder writes "released" just before it lets
    # go, so a waiter that really waited reads it once it has the lock. A
    # slow machine can only make the check weaker (a waiter that reaches
    # lockf after the release), never fail it.
    write(fsd.p("f"), b"held")
    fd = os.open(fsd.p("f"), os.O_RDWR)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX)
        code = ("import fcntl,os,sys; fd=os.open(sys.argv[1],os.O_RDWR);"
                "print('locking', flush=True); fcntl.lockf(fd, fcntl.LOCK_EX);"
                "print(os.pread(fd, 100, 0).decode())")
        child = rlib.Child([rlib.PYTHON, "-c", code, fsd.p("f")])
        ready, _, _ = select.select([child.proc.stdout], [], [],
                                    20 * rlib.SLOWDOWN)
        assert ready and child.proc.stdout.readline() == b"locking\n"
        time.sleep(0.5)  # time to reach lockf and block in it
        os.pwrite(fd, b"released", 0)
        fcntl.lockf(fd, fcntl.LOCK_UN)
        rc, out, errout = child.wait(20)
        assert rc == 0, errout
        assert out.split() == ["released"]
    finally:
        os.close(fd)


# --- names ------------------------------------------------------------------------

def test_names_at_name_max_work_and_longer_ones_are_enametoolong(fsd):
    long_ok = "n" * NAME_MAX
    write(fsd.p(long_ok), b"x")
    os.mkdir(fsd.p("d" * NAME_MAX))
    os.symlink("t", fsd.p("s" * NAME_MAX))
    assert read(fsd.p(long_ok)) == b"x"
    assert set(os.listdir(fsd.path)) == {long_ok, "d" * NAME_MAX,
                                         "s" * NAME_MAX}
    too = "n" * (NAME_MAX + 1)
    assert err(os.open, fsd.p(too), os.O_CREAT | os.O_WRONLY) == \
        "ENAMETOOLONG"
    assert err(os.stat, fsd.p(too)) == "ENAMETOOLONG"
    # Multi-byte names count bytes: 128 two-byte characters are 256.
    assert err(os.mkdir, fsd.p("\u00e9" * 128)) == "ENAMETOOLONG"
    assert err(os.mkdir, fsd.p("\u00e9" * 127)) == "OK"


def test_paths_longer_than_path_max_are_enametoolong(fsd):
    comp = "c" * 200
    path = fsd.p(*([comp] * 21))  # > 4096 bytes
    assert err(os.stat, path) == "ENAMETOOLONG"
    assert err(os.open, path, os.O_CREAT | os.O_WRONLY) == "ENAMETOOLONG"


def test_deep_directories_work_through_relative_paths(fsd):
    fd = os.open(fsd.path, os.O_RDONLY)
    try:
        for i in range(300):
            os.mkdir(f"d{i}", dir_fd=fd)
            nfd = os.open(f"d{i}", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        f = os.open("leaf", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd)
        os.write(f, b"deep")
        os.close(f)
    finally:
        os.close(fd)
    n = 0
    for _root, _dirs, files in os.walk(fsd.path):
        n += len(files)
    assert n == 1


def test_odd_bytes_in_names(fsd):
    names = [b"\x01ctrl", b"new\nline", b"\xff\xfe", b"tab\tname", b" lead",
             b"trail ", b"\x7f", b"-dash", b"a\\b", b"\xe2\x98\x83"]
    root = os.fsencode(fsd.path)
    for i, n in enumerate(names):
        with open(os.path.join(root, n), "wb") as f:
            f.write(b"%d" % i)
    assert sorted(os.listdir(root)) == sorted(names)
    for i, n in enumerate(names):
        assert read(os.path.join(root, n)) == b"%d" % i
    os.rename(os.path.join(root, names[0]), os.path.join(root, b"\x02x"))
    assert os.path.exists(os.path.join(root, b"\x02x"))
