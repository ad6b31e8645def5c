"""Only changed pages: where SOURCE can clone (XFS with reflink), a
write-back clones the old file and writes only the dirty pages (page_size,
default 64K), so the cost follows the change, and the result is
byte-identical to the image. Elsewhere (ext4) the whole file is written.

The cost is measured as the sectors written to the loop device under
SOURCE (/sys/block/loopN/stat, field 7) across the write-back plus a
`sync`, and as the mount's status writeback_bytes. Run the module on both
data paths: on passthrough the kernel writes the image itself and the
daemon finds the changed pages by checksums.
"""

import hashlib
import mmap
import os

import pytest

import helpers
from acceptance import (device_bytes_written, ext4, fsync_path,  # noqa
                        mount_status, random_bytes, xfs)

MiB = 1 << 20
KiB = 1 << 10
PAGE = 64 * KiB
# What XFS itself writes around a small change: log records, inode and
# directory blocks, the rename. Generous, and still far below a whole file.
FS_OVERHEAD = 2 * MiB


def make_big(path, size, seed=3):
    """A file of `size` random bytes, built in 16 MiB pieces; returns a
    bytearray of its content."""
    data = bytearray(random_bytes(size, seed))
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return data


def sha(b):
    return hashlib.sha256(b).hexdigest()


def source_of(fs):
    mp, _ = fs
    src = mp / "src"
    src.mkdir()
    return src


def wb_bytes(m):
    return mount_status(m)["writeback_bytes"]


def big_file_on(fs, mount, size):
    src = source_of(fs)
    data = make_big(src / "big.bin", size)
    m = mount(src)
    return m, src, fs[1], data


@pytest.fixture
def big_on_xfs(xfs, mount):
    """A 256 MiB random file on XFS, in a mount."""
    return big_file_on(xfs, mount, 256 * MiB)


@pytest.fixture
def file_on_xfs(xfs, mount):
    """A 64 MiB random file on XFS, in a mount."""
    return big_file_on(xfs, mount, 64 * MiB)


def test_a_1_mib_change_in_a_256_mib_file_costs_about_1_mib_on_xfs(
        big_on_xfs):
    m, src, loop, data = big_on_xfs
    old_ino = os.stat(src / "big.bin").st_ino
    fd = os.open(m / "big.bin", os.O_RDWR)
    try:
        change = random_bytes(MiB, 99)
        off = 100 * MiB + 12345
        os.pwrite(fd, change, off)
        data[off:off + MiB] = change
        before = wb_bytes(m)
        cost = device_bytes_written(loop, lambda: os.fsync(fd))
    finally:
        os.close(fd)
    assert cost >= MiB, f"only {cost} bytes reached the device"
    assert cost <= MiB + 2 * PAGE + FS_OVERHEAD, \
        f"a 1 MiB change cost {cost / MiB:.1f} MiB of device writes"
    wrote = wb_bytes(m) - before
    assert MiB <= wrote <= MiB + 2 * PAGE, wrote
    # byte-identical, and a new file (atomic replace), no temporaries
    assert sha(helpers.read_file(src / "big.bin")) == sha(data)
    assert os.stat(src / "big.bin").st_ino != old_ino
    assert helpers.tmp_files(src) == []
    assert m.unmount() == 0
    assert sha(helpers.read_file(src / "big.bin")) == sha(data)


def test_scattered_small_changes_cost_only_their_pages_on_xfs(file_on_xfs):
    m, src, loop, data = file_on_xfs
    offsets = [i * 4 * MiB + 777 * i for i in range(16)]
    fd = os.open(m / "big.bin", os.O_RDWR)
    try:
        for i, off in enumerate(offsets):
            patch = bytes([i + 1]) * 100
            os.pwrite(fd, patch, off)
            data[off:off + 100] = patch
        before = wb_bytes(m)
        cost = device_bytes_written(loop, lambda: os.fsync(fd))
    finally:
        os.close(fd)
    wrote = wb_bytes(m) - before
    assert wrote <= 16 * 2 * PAGE, wrote
    assert cost <= 16 * 2 * PAGE + FS_OVERHEAD, cost
    assert sha(helpers.read_file(src / "big.bin")) == sha(data)
    assert m.unmount() == 0


def test_a_hole_punched_through_the_mount_is_a_hole_in_source_on_xfs(
        file_on_xfs):
    """On the reflink path the old file's blocks are shared: a range
    punched through the mount must be punched in the clone too, not left
    with the old bytes (and not written as zeros)."""
    m, src, loop, data = file_on_xfs
    helpers.run(["fallocate", "--punch-hole", "--offset", str(3 * MiB),
                 "--length", str(2 * MiB), str(m / "big.bin")])
    data[3 * MiB:5 * MiB] = bytes(2 * MiB)
    assert sha(helpers.read_file(m / "big.bin")) == sha(data)
    fd = os.open(m / "big.bin", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    assert sha(helpers.read_file(src / "big.bin")) == sha(data)
    fd = os.open(src / "big.bin", os.O_RDONLY)
    try:
        assert os.lseek(fd, 3 * MiB, os.SEEK_HOLE) == 3 * MiB
        assert os.lseek(fd, 3 * MiB, os.SEEK_DATA) == 5 * MiB
    finally:
        os.close(fd)
    assert m.unmount() == 0


def test_successive_write_backs_each_cost_only_their_own_change(file_on_xfs):
    m, src, loop, data = file_on_xfs
    for round_, off in enumerate([5 * MiB, 50 * MiB, 5 * MiB + 3]):
        patch = random_bytes(256 * KiB, round_)
        fd = os.open(m / "big.bin", os.O_RDWR)
        try:
            os.pwrite(fd, patch, off)
            data[off:off + len(patch)] = patch
            before = wb_bytes(m)
            cost = device_bytes_written(loop, lambda: os.fsync(fd))
        finally:
            os.close(fd)
        wrote = wb_bytes(m) - before
        assert wrote <= 256 * KiB + 2 * PAGE, (round_, wrote)
        assert cost <= 256 * KiB + 2 * PAGE + FS_OVERHEAD, (round_, cost)
        assert sha(helpers.read_file(src / "big.bin")) == sha(data), round_
    assert m.unmount() == 0


def test_growth_and_shrinking_write_only_what_changed_on_xfs(file_on_xfs):
    m, src, loop, data = file_on_xfs
    tail = random_bytes(3 * MiB, 5)
    with open(m / "big.bin", "ab") as f:
        f.write(tail)
        f.flush()
        before = wb_bytes(m)
        cost = device_bytes_written(loop, lambda: os.fsync(f.fileno()))
    data += tail
    assert wb_bytes(m) - before <= 3 * MiB + 2 * PAGE
    assert cost <= 3 * MiB + 2 * PAGE + FS_OVERHEAD, cost
    assert sha(helpers.read_file(src / "big.bin")) == sha(data)
    # Shrink: cut 20 MiB off and change a byte near the new end.
    fd = os.open(m / "big.bin", os.O_RDWR)
    try:
        os.ftruncate(fd, 47 * MiB)
        os.pwrite(fd, b"!", 47 * MiB - 1)
        before = wb_bytes(m)
        cost = device_bytes_written(loop, lambda: os.fsync(fd))
    finally:
        os.close(fd)
    del data[47 * MiB:]
    data[-1:] = b"!"
    assert os.path.getsize(src / "big.bin") == 47 * MiB
    assert sha(helpers.read_file(src / "big.bin")) == sha(data)
    assert wb_bytes(m) - before <= 2 * PAGE
    assert cost <= 2 * PAGE + FS_OVERHEAD, cost
    assert m.unmount() == 0


def test_changes_made_through_a_shared_mapping_are_found_and_written(
        file_on_xfs):
    m, src, loop, data = file_on_xfs
    fd = os.open(m / "big.bin", os.O_RDWR)
    try:
        with mmap.mmap(fd, 0) as mm:
            for off in (1 * MiB + 5, 33 * MiB, 63 * MiB + 100):
                mm[off:off + 8] = b"MAPPED!!"
                data[off:off + 8] = b"MAPPED!!"
            mm.flush()
        before = wb_bytes(m)
        cost = device_bytes_written(loop, lambda: os.fsync(fd))
    finally:
        os.close(fd)
    assert sha(helpers.read_file(src / "big.bin")) == sha(data)
    assert wb_bytes(m) - before <= 3 * 2 * PAGE
    assert cost <= 3 * 2 * PAGE + FS_OVERHEAD, cost
    assert m.unmount() == 0


def test_the_unmount_write_back_also_writes_only_changed_pages(
        file_on_xfs):
    m, src, loop, data = file_on_xfs
    change = random_bytes(MiB, 7)
    helpers.write_file(m / "big.bin", change, "r+b")
    data[:MiB] = change
    cost = device_bytes_written(loop, lambda: m.unmount())
    assert m.returncode == 0
    assert cost <= MiB + 2 * PAGE + FS_OVERHEAD, cost
    assert sha(helpers.read_file(src / "big.bin")) == sha(data)


@pytest.mark.parametrize("page_size,limit", [("4K", 4 * KiB),
                                             ("1M", MiB)])
def test_page_size_sets_the_granularity_of_what_is_written(
        xfs, mount, page_size, limit):
    src = source_of(xfs)
    data = make_big(src / "f.bin", 64 * MiB)
    m = mount(src, options=[f"page_size={page_size}"])
    fd = os.open(m / "f.bin", os.O_RDWR)
    try:
        for i in range(8):
            off = i * 8 * MiB + 3 * limit + 10
            os.pwrite(fd, b"p" * 16, off)
            data[off:off + 16] = b"p" * 16
        before = wb_bytes(m)
        os.fsync(fd)
    finally:
        os.close(fd)
    wrote = wb_bytes(m) - before
    # each 16-byte change lies inside one page of page_size
    assert 8 * 16 <= wrote <= 8 * limit, (page_size, wrote)
    assert sha(helpers.read_file(src / "f.bin")) == sha(data)
    assert m.unmount() == 0


def test_a_valid_hdf5_edit_in_a_large_file_is_cheap_and_exact_on_xfs(
        xfs, mount):
    import h5py
    import numpy as np
    src = source_of(xfs)
    with h5py.File(src / "big.h5", "w") as f:
        f.create_dataset("x", data=np.random.default_rng(1).random(
            (4096, 2048)), chunks=(256, 2048))  # 64 MiB, 4 MiB chunks
    os.sync()
    m = mount(src)
    with h5py.File(m / "big.h5", "r+") as f:
        f["x"][1000:1010, :] = -1.0
        f.attrs["edited"] = 1
    cost = device_bytes_written(xfs[1],
                                lambda: fsync_path(m / "big.h5") or None)
    assert helpers.read_file(src / "big.h5") == \
        helpers.read_file(m / "big.h5")
    assert cost <= 4 * MiB + 2 * PAGE + FS_OVERHEAD, cost
    with h5py.File(src / "big.h5", "r") as f:
        assert (f["x"][1000:1010, :] == -1.0).all()
        assert f.attrs["edited"] == 1
    assert m.unmount() == 0


def test_without_reflink_the_whole_file_is_written_and_exact(ext4, mount):
    src = source_of(ext4)
    data = make_big(src / "f.bin", 64 * MiB)
    m = mount(src)
    fd = os.open(m / "f.bin", os.O_RDWR)
    try:
        change = random_bytes(MiB, 11)
        os.pwrite(fd, change, 10 * MiB + 1)
        data[10 * MiB + 1:11 * MiB + 1] = change
        before = wb_bytes(m)
        cost = device_bytes_written(ext4[1], lambda: os.fsync(fd))
    finally:
        os.close(fd)
    assert cost >= 64 * MiB, cost
    assert wb_bytes(m) - before == 64 * MiB
    assert sha(helpers.read_file(src / "f.bin")) == sha(data)
    assert helpers.tmp_files(src) == []
    assert m.unmount() == 0
    assert sha(helpers.read_file(src / "f.bin")) == sha(data)
