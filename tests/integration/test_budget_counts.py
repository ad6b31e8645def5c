"""The budget counts what memory really holds: fallocate reserves room
and fails with ENOSPC past max_memory whether images live in the private
tmpfs or in memfds (`images=memfd`, as a daemon without CAP_SYS_ADMIN
keeps them: there only the daemon's own count stops it); and the
namespace's own memory (nodes, names, xattrs) counts too, shown as the
status' metadata_bytes, so that a flood of names or xattrs meets ENOSPC
rather than growing without bound."""

import errno
import json
import os

import pytest

from acceptance import cli

KiB = 1 << 10
MiB = 1 << 20


def mount_status(m):
    res = cli("status", m.path, "--json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)["mount"]


@pytest.mark.parametrize("images", ["memfd", "tmpfs"])
def test_fallocate_past_the_budget_fails_with_enospc(mount, empty_source,
                                                    images):
    m = mount(empty_source, options=["max_memory=4M", f"images={images}"])
    assert mount_status(m)["images"] == images
    fd = os.open(m / "f.bin", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        with pytest.raises(OSError) as e:
            os.posix_fallocate(fd, 0, 8 * MiB)
        assert e.value.errno == errno.ENOSPC
        assert mount_status(m)["memory_used"] <= 4 * MiB
        before = mount_status(m)["memory_used"]
        os.posix_fallocate(fd, 0, 2 * MiB)          # fits: reserved
        used = mount_status(m)["memory_used"]
        assert used >= before + 2 * MiB, (before, used)
        assert os.fstat(fd).st_size == 2 * MiB
        # the 2 MiB already there plus 3 more: past the budget
        with pytest.raises(OSError) as e:
            os.posix_fallocate(fd, 2 * MiB, 3 * MiB)
        assert e.value.errno == errno.ENOSPC
        assert mount_status(m)["memory_used"] <= 4 * MiB
        assert os.fstat(fd).st_size == 2 * MiB
    finally:
        os.close(fd)
    assert m.unmount() == 0
    assert os.stat(empty_source / "f.bin").st_size == 2 * MiB


def test_names_and_xattrs_count_in_the_budget(mount, empty_source):
    """Files with 60 KiB of xattrs each under max_memory=1M: the xattrs
    show in metadata_bytes and memory_used, and setxattr fails with
    ENOSPC before they pass the budget; removing them gives the room
    back, and a new name fits again."""
    m = mount(empty_source, options=["max_memory=1M"])
    meta0 = mount_status(m)["metadata_bytes"]
    assert meta0 > 0
    value = b"v" * (60 * KiB)
    made, err = [], 0
    for i in range(64):                     # 3.75 MiB if nothing stopped
        p = m / f"file-{i:03d}-with-a-rather-long-name"
        try:
            p.touch()
            made.append(p)
            os.setxattr(p, "user.big", value)
        except OSError as e:
            err = e.errno
            break
    assert err == errno.ENOSPC, err
    ms = mount_status(m)
    assert ms["metadata_bytes"] >= meta0 + (len(made) - 1) * 60 * KiB, ms
    assert ms["memory_used"] >= ms["metadata_bytes"], ms
    assert ms["memory_used"] <= 1 * MiB, ms
    for p in made:
        try:
            os.removexattr(p, "user.big")
        except OSError as e:
            assert e.errno == errno.ENODATA, e  # the one refused
    assert mount_status(m)["metadata_bytes"] < meta0 + 64 * KiB
    (m / "one-more").touch()
    assert m.unmount() == 0
    assert os.path.exists(empty_source / "one-more")
