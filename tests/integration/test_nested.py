"""An h5memfs mount used as the SOURCE of another h5memfs mount.

The outer daemon writes back through the inner mount: its temporaries
(.h5memfs-tmp.*, O_EXCL, mode 0600), renames and hard links must pass
there, and after both unmounts SOURCE holds the outer mount's bytes.
"""
import errno
import os
import signal
import subprocess
import sys

import pytest

import helpers
from acceptance import SLOWDOWN


@pytest.fixture
def nested(mount, empty_source):
    """(inner, outer): empty_source mounted at inner, inner at outer."""
    helpers.write_file(empty_source / "f", b"original")
    os.mkdir(empty_source / "d")
    helpers.write_file(empty_source / "d/g", b"in a directory")
    inner = mount(empty_source)
    outer = mount(inner.path)
    return inner, outer


def test_a_write_through_an_outer_mount_reaches_source_after_both_unmounts(
        nested, empty_source):
    inner, outer = nested
    helpers.write_file(outer / "f", b"changed through the outer mount")
    helpers.write_file(outer / "d/new", b"new file")
    os.link(outer / "d/new", outer / "d/new-link")
    with open(outer / "d/g", "r+b") as f:
        f.write(b"IN")
        f.flush()
        os.fsync(f.fileno())
    # fsync reached the inner mount, which shows the new version at once.
    assert helpers.read_file(inner / "d/g") == b"IN a directory"
    assert outer.unmount() == 0
    assert inner.unmount() == 0
    assert helpers.read_file(empty_source / "f") == \
        b"changed through the outer mount"
    assert helpers.read_file(empty_source / "d/g") == b"IN a directory"
    assert helpers.read_file(empty_source / "d/new") == b"new file"
    assert os.stat(empty_source / "d/new").st_ino == \
        os.stat(empty_source / "d/new-link").st_ino
    for dirpath, dirs, files in os.walk(empty_source):
        assert not [n for n in dirs + files
                    if n.startswith(helpers.TMP_PREFIX)], dirpath


def test_only_new_files_and_links_may_take_a_temporary_name(rw):
    name = helpers.TMP_PREFIX + "0123456789ab"
    fd = os.open(rw / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    with pytest.raises(FileExistsError):
        os.open(rw / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.unlink(rw / name)
    for make in (os.mkdir, lambda p: os.symlink("x", p), os.mkfifo,
                 lambda p: os.rename(rw / "plain", p)):
        helpers.write_file(rw / "plain", b"p")
        with pytest.raises(OSError) as e:
            make(rw / (helpers.TMP_PREFIX + "x"))
        assert e.value.errno == errno.EPERM
    assert rw.unmount() == 0


def test_a_source_that_stops_answering_fails_an_open_in_time(
        mount, empty_source):
    """source_timeout=1: with the inner daemon stopped, an open that needs
    SOURCE fails with EIO after about a second (from a child process: a
    hang must not hang the test), the root and loaded files still answer,
    and all works again once SOURCE answers."""
    helpers.write_file(empty_source / "loaded", b"in memory")
    helpers.write_file(empty_source / "later", b"needs SOURCE")
    inner = mount(empty_source)
    outer = mount(inner.path, options=["source_timeout=1"],
                  allow_stderr=True)
    assert helpers.read_file(outer / "loaded") == b"in memory"
    keep = os.open(outer / "loaded", os.O_RDONLY)
    code = ("import os, sys, time\n"
            "t = time.monotonic()\n"
            "try:\n"
            "    open(sys.argv[1], 'rb').read(); print('ok')\n"
            "except OSError as e:\n"
            "    print(e.errno)\n"
            "print(time.monotonic() - t)\n"
            "os.stat(sys.argv[2]); print(sorted(os.listdir(sys.argv[2])))\n")
    os.kill(inner.pid, signal.SIGSTOP)
    try:
        res = subprocess.run(
            [sys.executable, "-c", code, str(outer / "later"),
             str(outer.path)], capture_output=True, text=True,
            timeout=30 * SLOWDOWN)
        assert os.pread(keep, 100, 0) == b"in memory"
    finally:
        os.kill(inner.pid, signal.SIGCONT)
        os.close(keep)
    errno_s, took, listing = res.stdout.split("\n")[:3]
    assert errno_s == str(errno.EIO), res
    assert float(took) < 10 * SLOWDOWN, res
    assert listing == "['later', 'loaded']", res
    assert "SOURCE did not answer" in outer.stderr()
    assert helpers.read_file(outer / "later") == b"needs SOURCE"
    assert outer.unmount() == 0
    assert inner.unmount() == 0
