"""The kernel's dirty-page limits for the mount. The kernel gives a FUSE
mount strict_limit and 1% of the dirty-page room; on the daemon path that
throttles large or random writes into tiny write-backs. A root daemon
lifts both (an ordinary user's daemon cannot: the sysfs files are
root's)."""

import os

import pytest

import helpers

MiB = 1 << 20


def bdi_of(path):
    st = os.stat(path)
    return f"/sys/class/bdi/{os.major(st.st_dev)}:{os.minor(st.st_dev)}"


def read_attr(bdi, name):
    with open(os.path.join(bdi, name)) as f:
        return int(f.read())


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_a_root_daemon_gives_its_mount_the_dirty_limits_of_a_disk(
        mount, empty_source):
    m = mount(empty_source)
    bdi = bdi_of(m.path)
    if not os.path.exists(os.path.join(bdi, "strict_limit")):
        pytest.skip("kernel without bdi strict_limit in sysfs (< 6.2)")
    assert read_attr(bdi, "strict_limit") == 0
    assert read_attr(bdi, "max_ratio") == 50
    # and writes past the kernel's old 1% still land whole
    data = os.urandom(64 * MiB)
    helpers.write_file(m / "big", data)
    assert helpers.read_file(m / "big") == data
    assert m.unmount() == 0
    assert helpers.read_file(empty_source / "big") == data

