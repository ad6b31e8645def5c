"""Volatile mounts: SOURCE is read, never written, whatever happens in the
mount; without SOURCE the mount is an empty scratch workspace."""

import os
import subprocess

import pytest

import helpers
from helpers import change_everything


def full_snapshot(root):
    return helpers.snapshot(root, ctime=True, ino=True)


def work_in(root):
    """Every kind of change, then fsync and an explicit sync of the mount."""
    change_everything(str(root))
    helpers.write_file(root / "data/table.h5", b"not hdf5 any more")
    with open(root / "new/nested/file.txt", "r+b") as f:
        f.write(b"fsynced")
        f.flush()
        os.fsync(f.fileno())
    os.sync()
    # The changes are real inside the mount.
    assert helpers.read_file(root / "data/table.h5") == b"not hdf5 any more"
    assert not (root / "empty_dir").exists()
    assert os.readlink(root / "new/link-to-renamed") == "renamed.txt"


def chmod_read_only(root):
    helpers.run(["chmod", "-R", "a-w", str(root)], timeout=30)


@pytest.fixture
def ro_bind(tmp_path):
    """A read-only bind mount of a sample SOURCE: even root cannot write."""
    real = tmp_path / "real-src"
    helpers.make_source_tree(real)
    view = tmp_path / "ro-src"
    view.mkdir()
    helpers.run(["mount", "--bind", str(real), str(view)], timeout=10)
    try:
        helpers.run(["mount", "-o", "remount,bind,ro", str(view)],
                    timeout=10)
        yield view
    finally:
        helpers.run(["umount", str(view)], timeout=10, check=False)
        if helpers.mounts_at(view):
            helpers.run(["umount", "-l", str(view)], timeout=10, check=False)


@pytest.mark.parametrize("option", ["volatile", "backing_store=0"])
def test_a_volatile_mount_leaves_a_normal_source_exactly_as_it_was(
        mount, source, option):
    before = full_snapshot(source)
    m = mount(source, options=[option])
    work_in(m.path)
    assert m.unmount() == 0
    helpers.assert_same_tree(before, full_snapshot(source),
                             "before", "after")
    assert helpers.tmp_files(source) == []


def test_a_volatile_mount_leaves_a_chmod_a_w_source_exactly_as_it_was(
        mount, source):
    chmod_read_only(source)
    before = full_snapshot(source)
    m = mount(source, options=["volatile"])
    work_in(m.path)
    assert m.unmount() == 0
    helpers.assert_same_tree(before, full_snapshot(source),
                             "before", "after")


def test_a_volatile_mount_works_over_a_read_only_filesystem(ro_bind, mount):
    before = full_snapshot(ro_bind)
    m = mount(ro_bind, options=["volatile"])
    work_in(m.path)
    assert m.unmount() == 0
    helpers.assert_same_tree(before, full_snapshot(ro_bind),
                             "before", "after")


def test_a_volatile_mount_shows_source_content_before_changes(mount, source):
    m = mount(source, options=["volatile"])
    helpers.assert_same_tree(helpers.snapshot(source),
                             helpers.snapshot(m.path), "source", "mount")


def test_a_volatile_mount_survives_sigterm_without_writing(mount, source):
    before = full_snapshot(source)
    m = mount(source, options=["volatile"])
    work_in(m.path)
    assert m.sigterm() == 0
    helpers.assert_same_tree(before, full_snapshot(source),
                             "before", "after")


def test_volatile_without_source_is_an_empty_writable_workspace(scratch):
    assert os.listdir(scratch.path) == []
    os.makedirs(scratch / "a/b")
    helpers.write_file(scratch / "a/b/f", b"scratch data")
    os.rename(scratch / "a/b/f", scratch / "g")
    os.symlink("g", scratch / "l")
    assert helpers.read_file(scratch / "l") == b"scratch data"
    with open(scratch / "g", "ab") as f:
        f.write(b"!")
        f.flush()
        os.fsync(f.fileno())
    assert helpers.read_file(scratch / "g") == b"scratch data!"
    import h5py
    with h5py.File(scratch / "s.h5", "w") as f:
        f["x"] = list(range(10))
    with h5py.File(scratch / "s.h5", "r") as f:
        assert list(f["x"][:]) == list(range(10))
    sv = os.statvfs(scratch.path)
    assert sv.f_blocks > 0


def test_a_scratch_workspace_starts_empty_again_after_a_remount(scratch):
    helpers.write_file(scratch / "f", b"gone at unmount")
    assert scratch.unmount() == 0
    again = scratch.remount()
    assert os.listdir(again.path) == []


def test_a_scratch_workspace_is_shown_as_fuse_h5memfs(scratch):
    entries = helpers.mounts_at(scratch.path)
    assert len(entries) == 1 and entries[0][2] == "fuse.h5memfs", entries


def test_the_mountpoint_directory_is_unchanged_after_a_scratch_mount(
        tmp_path, mount):
    mp = tmp_path / "mp"
    mp.mkdir()
    helpers.write_file(mp / "hidden-under-mount", b"under")
    m = mount(None, options=["volatile"], mountpoint=mp)
    assert os.listdir(m.path) == []
    helpers.write_file(m / "f", b"x")
    assert m.unmount() == 0
    assert os.listdir(mp) == ["hidden-under-mount"]
    assert subprocess.run(["mountpoint", "-q", str(mp)],
                          timeout=10).returncode != 0
