"""Changes the daemon never sees are never dropped. On the passthrough
path the kernel writes the images itself: the daemon learns of a write
from the image's mtime, which misses stores through a mapping whose pages
are already mapped writable, and (on kernels before 6.13, coarse
timestamps) a write within the clock tick of the daemon's last look.
Before an image is unloaded (eviction under memory pressure, `h5memfs
evict`, a stale image dropped) it is verified clean by its size against
the size it had when clean and by page checksums; the checksums read the
image's data extents only, so checking a sparse image allocates nothing
and a full private tmpfs never turns a check into SIGBUS.

Run on both data paths: on the daemon path every write passes through
the daemon, and the same outcomes must hold.
"""

import errno
import json
import mmap
import os

import pytest

import helpers
from acceptance import cli, random_bytes, wait_until

KiB = 1 << 10
MiB = 1 << 20


def quick_status(m):
    """The status of the mount and of its loaded files, without --hdf5
    (which would open the files through the mount)."""
    res = cli("status", m.path, "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def states(m):
    return {f["path"]: f["state"] for f in quick_status(m)["files"]}


def passthrough(m):
    return quick_status(m)["mount"]["data_path"] == "passthrough"


def test_numpy_memmap_stores_after_a_commit_survive_eviction(
        mount, empty_source):
    """numpy.memmap writer, commit=1: stores after a commit, into pages
    the mapping already wrote (no fault, no mtime), then unmap and close,
    then memory pressure: the image must not be evicted with the stores
    in it; they reach SOURCE."""
    import numpy as np
    v0 = random_bytes(MiB, 41)
    helpers.write_file(empty_source / "m.bin", v0)
    filler = random_bytes(3 * MiB + 512 * KiB, 42)
    helpers.write_file(empty_source / "filler.bin", filler)
    m = mount(empty_source, options=["commit=1", "max_memory=4M"])
    mm = np.memmap(m / "m.bin", dtype=np.uint8, mode="r+")
    try:
        mm[0:4096] = 1
        mm[500000:500010] = 2
        mm.flush()
        v1 = bytearray(v0)
        v1[0:4096] = b"\x01" * 4096
        v1[500000:500010] = b"\x02" * 10
        # the commit thread wrote the first stores back
        wait_until(lambda: helpers.read_file(empty_source / "m.bin") == v1,
                   10, what="the first stores in SOURCE")
        mm[0:4096] = 3
        mm[500000:500010] = 4
        v2 = bytearray(v1)
        v2[0:4096] = b"\x03" * 4096
        v2[500000:500010] = b"\x04" * 10
    finally:
        mm._mmap.close()
        del mm
    ms0 = quick_status(m)["mount"]["evictions"]

    def evicted():
        # room for the filler: m.bin is the only image that can go
        assert helpers.read_file(m / "filler.bin") == filler
        return "m.bin" not in states(m)
    wait_until(evicted, 20, what="m.bin evicted")
    assert quick_status(m)["mount"]["evictions"] > ms0
    assert helpers.read_file(m / "m.bin") == v2
    assert m.unmount() == 0
    assert helpers.read_file(empty_source / "m.bin") == v2


def test_an_mmap_store_right_after_a_sync_is_not_evicted(mount,
                                                         empty_source):
    """A store through a mapping made right after `h5memfs sync` (within
    the clock's tick, into a page already mapped writable) is found when
    `h5memfs evict` asks for the image: refused, written back later."""
    v0 = random_bytes(256 * KiB, 43)
    helpers.write_file(empty_source / "s.bin", v0)
    m = mount(empty_source)
    fd = os.open(m / "s.bin", os.O_RDWR)
    try:
        with mmap.mmap(fd, len(v0)) as mp:
            mp[70000:70004] = b"ONE!"
            assert m.sync("s.bin").returncode == 0
            mp[70004:70008] = b"TWO!"     # same page: no fault, no mtime
    finally:
        os.close(fd)
    want = bytearray(v0)
    want[70000:70008] = b"ONE!TWO!"
    res = cli("evict", m / "s.bin")
    assert res.returncode != 0, "evict dropped unsaved stores"
    assert states(m).get("s.bin") == "dirty", states(m)
    assert helpers.read_file(m / "s.bin") == want
    assert m.unmount() == 0
    assert helpers.read_file(empty_source / "s.bin") == want


def image_fd(pid, size):
    """The path in /proc of the daemon's image of `size` bytes (an
    unlinked regular file: its memfd or private-tmpfs file)."""
    found = []
    for name in os.listdir(f"/proc/{pid}/fd"):
        p = f"/proc/{pid}/fd/{name}"
        try:
            st = os.stat(p)
        except OSError:
            continue
        if (st.st_mode & 0o170000) == 0o100000 and st.st_nlink == 0 and \
                st.st_size == size:
            found.append(p)
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize("then", ["evict", "unmount"])
def test_an_append_with_an_unchanged_mtime_is_written_back(mount,
                                                           empty_source,
                                                           then):
    """An append past the clean size whose mtime did not move (as within
    one tick of the coarse clock before Linux 6.13: here the image's
    mtime is set back to what it was, through the daemon's own fd in
    /proc) is found by the size: evict refuses, and the final pass of
    the unmount writes it."""
    size = 5 * 64 * KiB   # whole pages: the append touches none of them
    v0 = random_bytes(size, 44)
    helpers.write_file(empty_source / "a.bin", v0)
    m = mount(empty_source)
    if not passthrough(m):
        pytest.skip("passthrough only: on the daemon path every write "
                    "reaches the daemon itself")
    assert helpers.read_file(m / "a.bin") == v0      # loaded, clean
    img = image_fd(m.pid, size)
    before = os.stat(img)
    fd = os.open(m / "a.bin", os.O_WRONLY | os.O_APPEND)
    try:
        assert os.write(fd, b"tail") == 4
        os.utime(img, ns=(before.st_atime_ns, before.st_mtime_ns))
        assert os.stat(img).st_mtime_ns == before.st_mtime_ns
    finally:
        os.close(fd)
    if then == "evict":
        res = cli("evict", m / "a.bin")
        assert res.returncode != 0, "evict dropped an append"
        assert helpers.read_file(m / "a.bin") == v0 + b"tail"
    assert m.unmount() == 0
    assert helpers.read_file(empty_source / "a.bin") == v0 + b"tail"


def sparse(path, size, every, data):
    """A file of `size` bytes with `data` bytes of data every `every`."""
    with open(path, "wb") as f:
        f.truncate(size)
        for off in range(0, size, every):
            os.pwrite(f.fileno(), random_bytes(data, off // every), off)


def fill_the_budget(path, budget):
    """Write `budget` bytes to path: the budget refuses some (ENOSPC at
    a write, or with the daemon path's writeback cache at fsync or
    close)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    err = 0
    try:
        for off in range(0, budget, 64 * KiB):
            os.pwrite(fd, b"f" * (64 * KiB), off)
        os.fsync(fd)
    except OSError as e:
        err = e.errno
    finally:
        try:
            os.close(fd)
        except OSError as e:
            err = err or e.errno
    assert err == errno.ENOSPC, err


def file_memory(m, rel):
    for f in quick_status(m)["files"]:
        if f["path"] == rel:
            return f["memory_bytes"]
    raise AssertionError(f"{rel} not loaded")


def test_checking_a_sparse_file_in_a_full_budget_allocates_nothing(
        mount, empty_source):
    """4 KiB of data every 64 KiB: loading, fsync, status, sync and
    unmount of a changed sparse file with the budget full keep its memory
    what its data takes (its holes are never touched), and the daemon
    alive (no SIGBUS from a full private tmpfs)."""
    size = 32 * MiB
    sparse(empty_source / "sp.bin", size, 64 * KiB, 4 * KiB)
    want = bytearray(helpers.read_file(empty_source / "sp.bin"))
    # loaded whole at open: what is measured is the checks, not a lazy
    # load completing (which fills the image to its data's size)
    m = mount(empty_source, options=["max_memory=3M", "load=whole"])
    fd = os.open(m / "sp.bin", os.O_RDWR)
    try:
        os.pwrite(fd, b"EDIT", 64 * KiB * 7 + 10)  # in a page of data
        want[64 * KiB * 7 + 10:64 * KiB * 7 + 14] = b"EDIT"
        used = file_memory(m, "sp.bin")
        assert used <= 2 * MiB + 64 * KiB, used
        fill_the_budget(m / "fill.bin", 3 * MiB)
        os.fsync(fd)
        assert file_memory(m, "sp.bin") == used
        quick_status(m)
        assert m.sync().returncode == 0
        assert file_memory(m, "sp.bin") == used
        assert m.running()
    finally:
        os.close(fd)
    assert m.unmount() == 0
    assert helpers.read_file(empty_source / "sp.bin") == want
