"""Namespace write-back is conflict-checked like file write-back.

Renames, links, symlinks, special files and directories made in the mount
are journalled and replayed on SOURCE at the next write-back. A replayed
operation whose target name in SOURCE holds something the mount did not
see there (another node, here a plain process writing in SOURCE, made it
since) never replaces it: the mount's object goes beside it under
NAME.conflict-HOST-DATE-TIME.EXT, the log says "conflict:", and status
counts it (conflicts, namespace_conflicts); the mount then shows its
object under that name. Identity checks include ctime, which nobody can
set back. An operation SOURCE refuses for good (EPERM from an immutable
directory) is reported (namespace_errors), dropped so that later ones
are replayed, and the data it concerned goes to the rescue directory at
unmount, which exits 2."""

import errno
import os

import pytest

import helpers
from acceptance import (chattr_i, cli, conflict_files, daemon_lines,  # noqa: F401
                        fsync_path, mount_status, rescue_dir, small_tmpfs,
                        wait_until)

MINE = b"the mount's file\n" * 50
THEIRS = b"another node's file\n" * 7


def sync(m, expect=0):
    res = cli("sync", m.path)
    assert res.returncode == expect, (res.stdout, res.stderr)


def conflict_lines(m):
    return [ln for ln in daemon_lines(m) if "conflict:" in ln]


@pytest.fixture
def src(empty_source):
    helpers.write_file(empty_source / "a.h5", MINE)
    return empty_source


def test_a_rename_over_a_name_another_node_made_keeps_both(mount, src):
    m = mount(src, allow_stderr=True)
    os.rename(m / "a.h5", m / "x.h5")
    helpers.write_file(src / "x.h5", THEIRS)  # another node, meanwhile
    sync(m)
    assert helpers.read_file(src / "x.h5") == THEIRS
    names = conflict_files(src, "x", ".h5")
    assert len(names) == 1, os.listdir(src)
    assert helpers.read_file(src / names[0]) == MINE
    assert not (src / "a.h5").exists()
    st = mount_status(m)
    assert st["conflicts"] == 1 and st["namespace_conflicts"] == 1, st
    assert any(names[0] in ln for ln in conflict_lines(m)), m.stderr()
    # The mount shows its file where SOURCE has it.
    assert names[0] in os.listdir(m.path)
    assert helpers.read_file(m / names[0]) == MINE
    assert m.unmount() == 0
    assert helpers.read_file(src / "x.h5") == THEIRS
    assert helpers.read_file(src / names[0]) == MINE


def test_a_rename_over_a_file_another_node_replaced_keeps_theirs(
        mount, src):
    helpers.write_file(src / "x.h5", b"seen by the mount")
    m = mount(src, allow_stderr=True)
    assert helpers.read_file(m / "x.h5") == b"seen by the mount"
    os.rename(m / "a.h5", m / "x.h5")
    # Another node replaces x.h5 with a new version (a new inode).
    helpers.write_file(src / "x.h5.tmp", THEIRS)
    os.rename(src / "x.h5.tmp", src / "x.h5")
    sync(m)
    assert helpers.read_file(src / "x.h5") == THEIRS
    names = conflict_files(src, "x", ".h5")
    assert len(names) == 1 and helpers.read_file(src / names[0]) == MINE
    assert mount_status(m)["namespace_conflicts"] == 1
    assert m.unmount() == 0


def test_a_rename_over_a_file_edited_in_place_with_its_mtime_set_back(
        mount, src):
    """Same inode, same size, same mtime: only ctime tells."""
    p = src / "x.h5"
    helpers.write_file(p, b"A" * 100)
    os.utime(p, ns=(helpers.T_OLD_NS, helpers.T_OLD_NS))
    m = mount(src, allow_stderr=True)
    assert helpers.read_file(m / "x.h5") == b"A" * 100
    before = os.stat(p)
    os.rename(m / "a.h5", m / "x.h5")
    edit_behind(p, b"B" * 100, before)
    sync(m)
    assert helpers.read_file(p) == b"B" * 100
    names = conflict_files(src, "x", ".h5")
    assert len(names) == 1 and helpers.read_file(src / names[0]) == MINE
    assert m.unmount() == 0


def test_a_rename_over_what_the_mount_saw_replaces_it(mount, src):
    helpers.write_file(src / "x.h5", b"old x")
    m = mount(src)  # no conflict, no log line
    os.listdir(m.path)
    os.rename(m / "a.h5", m / "x.h5")
    sync(m)
    assert helpers.read_file(src / "x.h5") == MINE
    assert conflict_files(src, "x", ".h5") == []
    assert mount_status(m)["conflicts"] == 0
    assert m.unmount() == 0


def test_a_directory_renamed_over_one_another_node_filled_keeps_both(
        mount, src):
    """The mount replaced an empty directory; another node put a file in
    it meanwhile: same inode, so it is exchanged, found not empty, and
    put back, the mount's directory beside it."""
    os.mkdir(src / "x")
    m = mount(src, allow_stderr=True)
    assert os.listdir(m / "x") == []
    os.mkdir(m / "a")
    helpers.write_file(m / "a/mine.txt", b"mine")
    sync(m)
    os.rename(m / "a", m / "x")
    helpers.write_file(src / "x/theirs.txt", THEIRS)
    sync(m)
    assert os.listdir(src / "x") == ["theirs.txt"]
    names = conflict_files(src, "x", "")
    assert len(names) == 1, os.listdir(src)
    assert helpers.read_file(src / names[0] / "mine.txt") == b"mine"
    assert not (src / "a").exists()
    assert mount_status(m)["namespace_conflicts"] == 1
    assert m.unmount() == 0


def test_later_changes_follow_the_file_put_beside(mount, src):
    """Operations journalled after the one that conflicted act on the
    mount's file where it went, never on the other node's."""
    os.mkdir(src / "d")
    m = mount(src, allow_stderr=True)
    os.rename(m / "a.h5", m / "d/x.h5")
    os.link(m / "d/x.h5", m / "d/y.h5")
    os.rename(m / "d", m / "e")
    os.unlink(m / "e/y.h5")
    os.link(m / "e/x.h5", m / "e/z.h5")
    helpers.write_file(src / "d/x.h5", THEIRS)  # another node
    sync(m)
    # their file moved with the directory, and is theirs still
    assert helpers.read_file(src / "e/x.h5") == THEIRS
    names = conflict_files(src / "e", "x", ".h5")
    assert len(names) == 1, os.listdir(src / "e")
    assert sorted(os.listdir(src / "e")) == sorted(["x.h5", names[0],
                                                    "z.h5"])
    assert helpers.read_file(src / "e" / names[0]) == MINE
    assert os.stat(src / "e/z.h5").st_ino == \
        os.stat(src / "e" / names[0]).st_ino
    assert not (src / "d").exists()
    shown = set(os.listdir(m / "e"))
    assert {names[0], "z.h5"} <= shown <= {names[0], "z.h5", "x.h5"}
    assert helpers.read_file(m / "e" / names[0]) == MINE
    assert m.unmount() == 0


def test_a_link_over_a_name_another_node_made_keeps_both(mount, src):
    m = mount(src, allow_stderr=True)
    os.link(m / "a.h5", m / "l.h5")
    helpers.write_file(src / "l.h5", THEIRS)
    sync(m)
    assert helpers.read_file(src / "l.h5") == THEIRS
    names = conflict_files(src, "l", ".h5")
    assert len(names) == 1, os.listdir(src)
    assert os.stat(src / names[0]).st_ino == os.stat(src / "a.h5").st_ino
    assert helpers.read_file(src / "a.h5") == MINE
    assert mount_status(m)["namespace_conflicts"] == 1
    assert m.unmount() == 0


def test_a_symlink_over_a_name_another_node_made_keeps_both(mount, src):
    m = mount(src, allow_stderr=True)
    os.symlink("a.h5", m / "s")
    helpers.write_file(src / "s", THEIRS)
    sync(m)
    assert not os.path.islink(src / "s")
    assert helpers.read_file(src / "s") == THEIRS
    names = conflict_files(src, "s", "")
    assert len(names) == 1, os.listdir(src)
    assert os.readlink(src / names[0]) == "a.h5"
    assert os.readlink(m / names[0]) == "a.h5"
    assert mount_status(m)["namespace_conflicts"] == 1
    assert m.unmount() == 0


def test_a_directory_over_a_file_another_node_made_keeps_both(mount, src):
    m = mount(src, allow_stderr=True)
    os.mkdir(m / "out")
    helpers.write_file(m / "out/r.txt", b"result")
    helpers.write_file(src / "out", THEIRS)
    sync(m)
    assert helpers.read_file(src / "out") == THEIRS
    names = conflict_files(src, "out", "")
    assert len(names) == 1, os.listdir(src)
    assert helpers.read_file(src / names[0] / "r.txt") == b"result"
    assert m.unmount() == 0


# ctime: nobody can set it back ------------------------------------------

def edit_behind(p, data, before):
    """Another program rewrites p in place with data of the same size and
    gives it back its mtime (touch -d): only ctime differs. ctime moves
    with a coarse clock: change the mode until it did."""
    with open(p, "r+b") as f:
        f.write(data)
    os.utime(p, ns=(before.st_atime_ns, before.st_mtime_ns))
    while os.stat(p).st_ctime_ns == before.st_ctime_ns:
        os.chmod(p, before.st_mode & 0o7777)
    st = os.stat(p)
    assert (st.st_ino, st.st_size, st.st_mtime_ns) == \
        (before.st_ino, before.st_size, before.st_mtime_ns)


def test_a_clean_image_edited_with_its_mtime_set_back_is_reloaded(
        mount, src):
    p = src / "a.h5"
    os.utime(p, ns=(helpers.T_OLD_NS, helpers.T_OLD_NS))
    m = mount(src)
    before = os.stat(p)
    assert helpers.read_file(m / "a.h5") == MINE
    theirs = MINE.upper()
    edit_behind(p, theirs, before)
    assert helpers.read_file(m / "a.h5") == theirs
    assert m.unmount() == 0
    assert helpers.read_file(p) == theirs


def test_a_dirty_image_over_a_file_edited_with_its_mtime_set_back_conflicts(
        mount, src):
    p = src / "a.h5"
    os.utime(p, ns=(helpers.T_OLD_NS, helpers.T_OLD_NS))
    m = mount(src, allow_stderr=True)
    before = os.stat(p)
    helpers.write_file(m / "a.h5", b"OURS", "r+b")
    ours = helpers.read_file(m / "a.h5")
    theirs = MINE.upper()
    edit_behind(p, theirs, before)
    assert fsync_path(m / "a.h5") == errno.EIO
    assert helpers.read_file(p) == theirs
    names = conflict_files(src, "a", ".h5")
    assert len(names) == 1 and helpers.read_file(src / names[0]) == ours
    assert m.unmount() == 0


def test_repeated_syncs_with_no_change_behind_give_no_conflict(mount, src):
    """The daemon's own changes (renames, links, modes, times, data)
    move ctime in SOURCE: it records them, and never takes them for
    someone else's."""
    m = mount(src)  # any conflict would log a line: the harness fails
    os.mkdir(m / "d")
    for rnd in range(4):
        helpers.write_file(m / "a.h5", b"round %d\n" % rnd * 100)
        os.rename(m / "a.h5", m / "d/a.h5")
        os.link(m / "d/a.h5", m / "d/b.h5")
        os.chmod(m / "d/a.h5", 0o640 + rnd)
        os.utime(m / "d/b.h5", ns=(helpers.T_OLD_NS, helpers.T_OLD_NS))
        os.symlink("a.h5", m / "d/s")
        sync(m)
        assert helpers.read_file(m / "d/a.h5") == b"round %d\n" % rnd * 100
        helpers.write_file(m / "d/b.h5", b"again %d\n" % rnd)
        sync(m)
        sync(m)
        os.unlink(m / "d/b.h5")
        os.unlink(m / "d/s")
        os.rename(m / "d/a.h5", m / "a.h5")
        sync(m)
        st = mount_status(m)
        assert st["conflicts"] == 0 and st["namespace_errors"] == 0, st
        assert st["journal_pending"] == 0 and st["dirty_files"] == 0, st
    assert not [n for n in os.listdir(src) if ".conflict-" in n]
    assert sorted(os.listdir(src)) == ["a.h5", "d"]
    assert m.unmount() == 0


# SOURCE refusing an operation for good ----------------------------------

def test_a_refused_operation_is_reported_does_not_block_and_is_rescued(
        mount, small_tmpfs, rescue_dir):
    src = small_tmpfs / "src"
    helpers.write_file(src / "f.bin", b"old")
    os.mkdir(src / "locked")
    m = mount(src, options=[f"rescue={rescue_dir}"], allow_stderr=True,
              expect_exit=2)
    helpers.write_file(m / "f.bin", MINE)
    assert os.listdir(m / "locked") == []
    chattr_i(src / "locked", True)
    try:
        os.rename(m / "f.bin", m / "locked/f.bin")
        os.mkdir(m / "later")
        helpers.write_file(m / "later/g.bin", b"later")
        sync(m, expect=1)
        # later operations went on
        assert helpers.read_file(src / "later/g.bin") == b"later"
        st = mount_status(m)
        assert st["namespace_errors"] == 1 and st["journal_pending"] == 0, st
        assert any("refused" in ln and "locked/f.bin" in ln
                   for ln in daemon_lines(m)), m.stderr()
        res = cli("unmount", m.path)
    finally:
        chattr_i(src / "locked", False)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert str(rescue_dir) in res.stderr
    assert helpers.read_file(rescue_dir / "locked/f.bin") == MINE
    assert helpers.read_file(src / "later/g.bin") == b"later"
    assert os.listdir(src / "locked") == []
