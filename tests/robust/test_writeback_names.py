"""Chains of namespace changes (renames over names that were themselves
replaced, hard links, exchanges, cycles through a temporary name,
directory moves) between two write-backs: after the unmount SOURCE must
mirror the mount exactly (names, bytes, modes, link groups, mtimes), with
no conflict copy and nothing on the daemon's stderr. On both data paths.

Each case is a list of steps on the mount; the starting SOURCE tree is
  a = "A", b0 = "B0", d/e = "E", d/f = "F" or a hard link of a, x/ empty.
"""

import os

import pytest

import rlib
from rlib import helpers

R = os.rename


def ex(a, b):
    helpers.renameat2(a, b, helpers.RENAME_EXCHANGE)


def new(path, data):
    helpers.write_file(path, data)


CASES = {
    # rename over a name, then move that name over another one
    "over-then-over": lambda m: (new(m / "b", b"B"), R(m / "b", m / "d/f"),
                                 R(m / "a", m / "d/e"),
                                 R(m / "d/f", m / "d/e")),
    "over-then-over-hardlinked": "hardlink",
    "swap-through-tmp": lambda m: (R(m / "a", m / "tmp"),
                                   R(m / "b0", m / "a"),
                                   R(m / "tmp", m / "b0")),
    "exchange-twice": lambda m: (ex(m / "a", m / "d/e"),
                                 ex(m / "d/e", m / "d/f")),
    "over-then-recreate": lambda m: (R(m / "a", m / "b0"),
                                     new(m / "a", b"new A")),
    "rename-cycle-of-three": lambda m: (R(m / "a", m / "t"),
                                        R(m / "d/e", m / "a"),
                                        R(m / "d/f", m / "d/e"),
                                        R(m / "t", m / "d/f")),
    "move-dir-then-files": lambda m: (R(m / "d", m / "x/d"),
                                      R(m / "x/d/e", m / "e"),
                                      R(m / "a", m / "x/d/e")),
    "link-then-unlink-original": lambda m: (os.link(m / "a", m / "d/g"),
                                            os.unlink(m / "a"),
                                            R(m / "d/g", m / "a2")),
    "unlink-then-reuse-name-by-rename": lambda m: (os.unlink(m / "d/e"),
                                                   R(m / "d/f", m / "d/e"),
                                                   new(m / "d/f", b"F2")),
    "write-rename-write": lambda m: (new(m / "a", b"A1"),
                                     R(m / "a", m / "d/a"),
                                     new(m / "d/a", b"A2"),
                                     R(m / "d/a", m / "a")),
}


def _hardlinked(m):
    new(m / "b", b"B")
    R(m / "b", m / "d/f")
    R(m / "a", m / "d/e")
    R(m / "d/f", m / "d/e")


def make_source(src, hardlink):
    (src / "d").mkdir()
    (src / "x").mkdir()
    new(src / "a", b"A")
    new(src / "b0", b"B0")
    new(src / "d" / "e", b"E")
    if hardlink:
        os.link(src / "a", src / "d" / "f")
    else:
        new(src / "d" / "f", b"F")


@pytest.mark.parametrize("case", sorted(CASES))
def test_namespace_chains_reach_source_exactly(mount, source, datapath, case):
    steps = CASES[case]
    hardlink = steps == "hardlink"
    make_source(source, hardlink)
    m = mount(source, [datapath])
    (_hardlinked if hardlink else steps)(m)
    want = helpers.snapshot(m.path, xattrs=False)
    assert m.unmount() == 0
    helpers.assert_same_tree(helpers.snapshot(source, xattrs=False), want,
                             "SOURCE", "mount")


@pytest.mark.parametrize("case", sorted(CASES))
def test_namespace_chains_with_a_sync_between(mount, source, datapath, case):
    """The same, with a full write-back (`h5memfs sync`) in the middle of
    the chain: SOURCE must mirror the mount right after it, after the
    unmount, and the remounted mount must show the same tree."""
    steps = CASES[case]
    hardlink = steps == "hardlink"
    make_source(source, hardlink)
    m = mount(source, [datapath])
    new(m / "early", b"s")
    R(m / "b0", m / "b1")
    rlib.run([str(rlib.DAEMON), "sync", str(m.path)], timeout=60)
    helpers.assert_same_tree(helpers.snapshot(source, xattrs=False),
                             helpers.snapshot(m.path, xattrs=False),
                             "SOURCE after the first sync", "mount")
    R(m / "b1", m / "b0")
    (_hardlinked if hardlink else steps)(m)
    rlib.run([str(rlib.DAEMON), "sync", str(m.path)], timeout=60)
    want = helpers.snapshot(m.path, xattrs=False)
    helpers.assert_same_tree(helpers.snapshot(source, xattrs=False), want,
                             "SOURCE after the second sync", "mount")
    assert m.unmount() == 0
    helpers.assert_same_tree(helpers.snapshot(source, xattrs=False), want,
                             "SOURCE after unmount", "mount")
    m = m.remount()
    helpers.assert_same_tree(helpers.snapshot(m.path, xattrs=False), want,
                             "mount after remount", "mount before")
