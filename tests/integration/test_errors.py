"""Exact errno values: each failing operation is run in the mount and on a
tmpfs directory (the reference) prepared the same way; both must give the
expected errno, so that a difference shows which side departs."""

import errno
import os

import pytest

import helpers


def prepare(root):
    """The same small tree on both sides."""
    helpers.write_file(os.path.join(root, "f"), b"file")
    os.mkdir(os.path.join(root, "d"))
    os.mkdir(os.path.join(root, "full"))
    helpers.write_file(os.path.join(root, "full", "x"), b"x")
    os.mkdir(os.path.join(root, "full", "sub"))
    os.symlink("f", os.path.join(root, "l"))


def rename_out_of(root, elsewhere):
    return os.rename(os.path.join(root, "f"), os.path.join(elsewhere, "f"))


# name, expected errno, operation on a root path
CASES = [
    ("open of a missing file", errno.ENOENT,
     lambda r: os.open(f"{r}/missing", os.O_RDONLY)),
    ("create in a missing directory", errno.ENOENT,
     lambda r: os.open(f"{r}/nodir/f", os.O_CREAT | os.O_WRONLY, 0o644)),
    ("stat of a missing name", errno.ENOENT, lambda r: os.stat(f"{r}/nope")),
    ("unlink of a missing name", errno.ENOENT,
     lambda r: os.unlink(f"{r}/nope")),
    ("rename of a missing name", errno.ENOENT,
     lambda r: os.rename(f"{r}/nope", f"{r}/other")),
    ("mkdir of an existing name", errno.EEXIST,
     lambda r: os.mkdir(f"{r}/d")),
    ("mkdir over a file", errno.EEXIST, lambda r: os.mkdir(f"{r}/f")),
    ("O_CREAT|O_EXCL on an existing file", errno.EEXIST,
     lambda r: os.open(f"{r}/f", os.O_CREAT | os.O_EXCL | os.O_WRONLY)),
    ("O_CREAT|O_EXCL on a symlink", errno.EEXIST,
     lambda r: os.open(f"{r}/l", os.O_CREAT | os.O_EXCL | os.O_WRONLY)),
    ("symlink over an existing name", errno.EEXIST,
     lambda r: os.symlink("x", f"{r}/f")),
    ("link over an existing name", errno.EEXIST,
     lambda r: os.link(f"{r}/f", f"{r}/l")),
    ("rmdir of a non-empty directory", errno.ENOTEMPTY,
     lambda r: os.rmdir(f"{r}/full")),
    ("rename of a directory over a non-empty one", errno.ENOTEMPTY,
     lambda r: os.rename(f"{r}/d", f"{r}/full")),
    ("open of a directory for writing", errno.EISDIR,
     lambda r: os.open(f"{r}/d", os.O_WRONLY)),
    ("open of a directory with O_TRUNC", errno.EISDIR,
     lambda r: os.open(f"{r}/d", os.O_RDWR | os.O_TRUNC)),
    ("unlink of a directory", errno.EISDIR, lambda r: os.unlink(f"{r}/d")),
    ("rename of a file over a directory", errno.EISDIR,
     lambda r: os.rename(f"{r}/f", f"{r}/d")),
    ("truncate of a directory", errno.EISDIR,
     lambda r: os.truncate(f"{r}/d", 0)),
    ("open through a file as a directory", errno.ENOTDIR,
     lambda r: os.open(f"{r}/f/x", os.O_RDONLY)),
    ("mkdir under a file", errno.ENOTDIR, lambda r: os.mkdir(f"{r}/f/x")),
    ("rmdir of a file", errno.ENOTDIR, lambda r: os.rmdir(f"{r}/f")),
    ("rename of a directory over a file", errno.ENOTDIR,
     lambda r: os.rename(f"{r}/d", f"{r}/f")),
    ("O_DIRECTORY open of a file", errno.ENOTDIR,
     lambda r: os.open(f"{r}/f", os.O_RDONLY | os.O_DIRECTORY)),
    ("listdir of a file", errno.ENOTDIR, lambda r: os.listdir(f"{r}/f")),
    ("rename of a directory into itself", errno.EINVAL,
     lambda r: os.rename(f"{r}/full", f"{r}/full/sub/inside")),
    ("readlink of a regular file", errno.EINVAL,
     lambda r: os.readlink(f"{r}/f")),
    ("hard link to a directory", errno.EPERM,
     lambda r: os.link(f"{r}/d", f"{r}/dlink")),
    ("a name of 256 bytes", errno.ENAMETOOLONG,
     lambda r: os.open(f"{r}/{'n' * 256}", os.O_CREAT | os.O_WRONLY, 0o644)),
    ("mkdir of a name of 256 bytes", errno.ENAMETOOLONG,
     lambda r: os.mkdir(f"{r}/{'n' * 256}")),
    ("getxattr of a missing attribute", errno.ENODATA,
     lambda r: os.getxattr(f"{r}/f", "user.missing")),
    ("removexattr of a missing attribute", errno.ENODATA,
     lambda r: os.removexattr(f"{r}/f", "user.missing")),
    ("XATTR_REPLACE of a missing attribute", errno.ENODATA,
     lambda r: os.setxattr(f"{r}/f", "user.missing", b"v",
                           os.XATTR_REPLACE)),
    ("a user xattr on a symlink", errno.EPERM,
     lambda r: os.setxattr(f"{r}/l", "user.k", b"v",
                           follow_symlinks=False)),
    ("rename of a file to another filesystem", errno.EXDEV,
     lambda r: rename_out_of(r, "/tmp" if r.startswith("/dev/shm")
                             else "/dev/shm")),
    ("hard link to another filesystem", errno.EXDEV,
     lambda r: os.link(f"{r}/f", ("/tmp" if r.startswith("/dev/shm")
                                  else "/dev/shm") + "/h5memfs-xdev-link")),
]


@pytest.mark.parametrize("name,expected,op", CASES,
                         ids=[c[0].replace(" ", "_") for c in CASES])
def test_a_failing_operation_gives_the_same_errno_as_tmpfs(
        rw, tmpfs_dir, name, expected, op):
    prepare(str(rw.path))
    prepare(str(tmpfs_dir))
    on_tmpfs = helpers.errno_of(op, str(tmpfs_dir))
    in_mount = helpers.errno_of(op, str(rw.path))
    assert (helpers.errname(in_mount), helpers.errname(on_tmpfs)) == \
        (helpers.errname(expected), helpers.errname(expected)), \
        f"{name}: mount gave {helpers.errname(in_mount)}, tmpfs " \
        f"{helpers.errname(on_tmpfs)}, expected {helpers.errname(expected)}"


def test_a_failed_operation_leaves_the_tree_as_it_was(rw, tmpfs_dir):
    prepare(str(rw.path))
    prepare(str(tmpfs_dir))
    for _, _, op in CASES:
        helpers.errno_of(op, str(rw.path))
        helpers.errno_of(op, str(tmpfs_dir))
    helpers.assert_same_tree(
        {k: {f: v for f, v in e.items() if f != "mtime_ns"}
         for k, e in helpers.snapshot(tmpfs_dir).items() if k},
        {k: {f: v for f, v in e.items() if f != "mtime_ns"}
         for k, e in helpers.snapshot(rw.path).items() if k},
        "tmpfs", "mount")
