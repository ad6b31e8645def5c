"""Write-back costs follow the change: a file that is only opened, read,
mapped read-only, stat'ed, or asked about with `h5memfs status`/`sync`,
is never rewritten in SOURCE (same inode, same ctime after the unmount),
on both data paths. A rewrite would cost a full copy and would replace a
file that another node may have changed meanwhile.
"""

import mmap
import os

import pytest

import rlib
from rlib import helpers


def _reads(kind, path):
    if kind == "open":
        os.close(os.open(path, os.O_RDONLY))
    elif kind == "read":
        helpers.read_file(path)
    elif kind == "rdwr-open":
        os.close(os.open(path, os.O_RDWR))
    elif kind == "mmap":
        fd = os.open(path, os.O_RDONLY)
        try:
            with mmap.mmap(fd, 0, prot=mmap.PROT_READ) as m:
                assert len(m[:]) > 0
        finally:
            os.close(fd)
    elif kind == "status-sync":
        helpers.read_file(path)
        rlib.run([str(rlib.DAEMON), "status", str(path)], timeout=30)
        rlib.run([str(rlib.DAEMON), "sync", str(path)], timeout=30)
        fd = os.open(path, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)


@pytest.mark.parametrize("kind", ["open", "read", "rdwr-open", "mmap",
                                  "status-sync"])
def test_a_file_only_read_is_not_rewritten_in_source(mount, source, datapath,
                                                     kind):
    helpers.write_file(source / "f", os.urandom(300_000))
    before = os.stat(source / "f")
    m = mount(source, [datapath])
    _reads(kind, m / "f")
    assert m.unmount() == 0
    after = os.stat(source / "f")
    assert (after.st_ino, after.st_ctime_ns, after.st_mtime_ns) == \
        (before.st_ino, before.st_ctime_ns, before.st_mtime_ns), \
        "SOURCE/f was rewritten although it was only read"
