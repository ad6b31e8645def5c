"""What a freshly mounted SOURCE looks like: the same tree, the same metadata,
the same bytes, without writing anything back."""

import os
import stat

import pytest

import helpers


def test_find_listing_of_the_mount_equals_the_listing_of_source(mnt, source):
    listing = helpers.find_listing(mnt.path)
    assert listing == helpers.find_listing(source)
    assert len(listing) > 15


def test_snapshot_of_the_mount_equals_source_with_xattrs_and_hard_links(
        mnt, source):
    helpers.assert_same_tree(helpers.snapshot(source),
                             helpers.snapshot(mnt.path), "source", "mount")


def test_every_file_read_through_the_mount_is_byte_identical_to_source(
        mnt, source):
    files = [rel for rel in helpers.walk(source)
             if stat.S_ISREG(os.lstat(source / rel).st_mode)]
    assert len(files) >= 9
    for rel in files:
        helpers.run(["cmp", str(source / rel), str(mnt / rel)], timeout=30)


def test_hard_links_from_source_share_one_inode_in_the_mount(mnt):
    a = os.stat(mnt / "sub/notes.txt")
    b = os.stat(mnt / "data/notes-hardlink.txt")
    assert a.st_ino == b.st_ino
    assert a.st_nlink == b.st_nlink == 2


def test_symlinks_from_source_read_back_their_targets_in_the_mount(mnt):
    assert os.readlink(mnt / "link-to-hello") == "hello.txt"
    assert os.readlink(mnt / "dangling-abs") == "/nonexistent/absolute/target"
    assert os.readlink(mnt / "sub/dangling-rel") == "does-not-exist"
    assert helpers.read_file(mnt / "link-to-hello") == b"hello, world\n"
    assert sorted(os.listdir(mnt / "data/link-to-dir")) == ["deepest"]


def test_user_xattrs_from_source_are_readable_in_the_mount(mnt):
    assert os.getxattr(mnt / "hello.txt", "user.comment") == b"greeting"
    assert os.getxattr(mnt / "hello.txt", "user.empty") == b""
    assert os.getxattr(mnt / "sub", "user.dir_attr") == b"on a directory"
    assert os.getxattr(mnt / "data/sample.h5", "user.binary") == \
        bytes(range(256))
    assert sorted(os.listxattr(mnt / "hello.txt")) == \
        ["user.comment", "user.empty"]


def test_a_sparse_file_from_source_reads_as_zeros_in_its_hole(mnt):
    with open(mnt / "sparse.bin", "rb") as f:
        assert f.read(1 << 20) == bytes(1 << 20)
        f.seek(8 << 20)
        assert f.read() == b"end of sparse file"


def test_proc_mounts_shows_type_fuse_h5memfs_with_source_as_device(
        mnt, source):
    entries = helpers.mounts_at(mnt.path)
    assert len(entries) == 1, entries
    device, _, fstype = entries[0][:3]
    assert fstype == "fuse.h5memfs"
    assert device.replace("\\040", " ") == str(source)


def test_temporary_files_left_in_source_are_hidden_from_the_mount(
        mount, source):
    helpers.write_file(source / ".h5memfs-tmp.leftover", b"half written")
    helpers.write_file(source / "sub/.h5memfs-tmp.x1", b"half written")
    m = mount(source)
    assert ".h5memfs-tmp.leftover" not in os.listdir(m.path)
    assert ".h5memfs-tmp.x1" not in os.listdir(m / "sub")
    assert "hello.txt" in os.listdir(m.path)


def test_reading_files_in_the_mount_leaves_source_untouched(mnt, source):
    before = helpers.snapshot(source, ctime=True, ino=True)
    for rel in helpers.walk(mnt.path):
        p = mnt / rel
        if stat.S_ISREG(os.lstat(p).st_mode):
            helpers.read_file(p)
    assert mnt.unmount() == 0
    helpers.assert_same_tree(before,
                             helpers.snapshot(source, ctime=True, ino=True),
                             "before", "after")


@pytest.mark.skip(reason="not observable from outside the daemon: that a "
                  "listing does not read contents is for unit tests and "
                  "the benchmark of 100,000 files")
def test_listing_does_not_load_file_contents():
    pass
