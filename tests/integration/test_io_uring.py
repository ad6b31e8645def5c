"""-o io_uring: requests travel over io_uring rings (Linux 6.14+, the fuse
module's enable_uring), and everything works as over /dev/fuse: the same
bytes, the same tree written back, real HDF5 tools, concurrent callers,
and a fall back to /dev/fuse when the kernel does not allow it."""

import os
import subprocess
import threading

import pytest

import h5mount
import helpers
from acceptance import mount_status

PARAM = "/sys/module/fuse/parameters/enable_uring"

pytestmark = pytest.mark.skipif(
    not os.path.exists(PARAM) or os.geteuid() != 0,
    reason="needs root and a kernel with FUSE over io_uring (6.14+)")


@pytest.fixture
def enable_uring():
    """Set the fuse module's enable_uring; put the old value back."""
    with open(PARAM) as f:
        old = f.read().strip()

    def set_(value):
        with open(PARAM, "w") as f:
            f.write(value)
    set_("Y")
    yield set_
    set_(old)


def over_ring(m):
    """(requests answered over io_uring, requests that could have been:
    all but INIT and those the kernel always sends over /dev/fuse)."""
    st = mount_status(m)
    dev_only = {"init", "forget", "batch_forget", "interrupt"}
    total = sum(n for k, n in st["requests"].items() if k not in dev_only)
    return st["io_uring_requests"], total


def test_every_change_reaches_source_over_io_uring(mount, source,
                                                   enable_uring):
    m = mount(source, options=["io_uring"])
    helpers.change_everything(m.path)
    data = os.urandom(3 << 20)
    helpers.write_file(m / "big.bin", data)
    fd = os.open(m / "big.bin", os.O_RDONLY)
    try:  # cold: the reads reach the daemon (spliced replies, too)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        got = b"".join(iter(lambda: os.read(fd, 1 << 20), b""))
    finally:
        os.close(fd)
    assert got == data
    want = helpers.snapshot(m.path, dir_mtime=False)
    ring, total = over_ring(m)
    assert total > 100
    assert ring >= 0.9 * total, (ring, total)
    assert m.unmount() == 0
    helpers.assert_same_tree(want, helpers.snapshot(source, dir_mtime=False),
                             "mount before unmount", "source after")


def test_hdf5_tools_over_io_uring(mount, source, enable_uring):
    m = mount(source, options=["io_uring"])
    h5 = m / "data/sample.h5"
    direct = h5mount.run(["h5dump", str(source / "data/sample.h5")]).stdout
    mounted = h5mount.run(["h5dump", str(h5)]).stdout
    # the first line names the file
    assert mounted.split("\n", 1)[1] == direct.split("\n", 1)[1]
    helpers.run_python(
        "import h5py, numpy, sys\n"
        "with h5py.File(sys.argv[1], 'a') as f:\n"
        "    f.create_dataset('ring', data=numpy.arange(100000))\n",
        str(h5))
    assert h5mount.run(["h5repack", str(h5), str(m / "packed.h5")])
    assert over_ring(m)[0] > 0
    assert m.unmount() == 0
    out = helpers.run_python(
        "import h5py, sys\n"
        "with h5py.File(sys.argv[1]) as f:\n"
        "    print(int(f['ring'][:].sum()))\n", str(source / "data/sample.h5"))
    assert out.stdout.strip() == str(sum(range(100000)))
    assert h5mount.run(["h5ls", "-r", str(source / "packed.h5")]).stdout


def test_concurrent_callers_over_io_uring(mount, empty_source, enable_uring):
    """More callers at once than a queue has threads: all answered."""
    m = mount(empty_source, options=["io_uring"])
    errors = []

    def worker(k):
        try:
            d = m / f"d{k}"
            os.mkdir(d)
            for i in range(150):
                p = d / f"f{i}"
                helpers.write_file(p, f"{k}:{i}".encode())
                assert os.stat(p).st_size == len(f"{k}:{i}")
            for i in range(0, 150, 2):
                os.unlink(d / f"f{i}")
        except Exception as e:  # reported below
            errors.append(e)
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    ring, total = over_ring(m)
    assert ring >= 0.9 * total, (ring, total)
    assert m.unmount() == 0
    for k in range(24):
        names = sorted(os.listdir(empty_source / f"d{k}"))
        assert names == sorted(f"f{i}" for i in range(1, 150, 2))
        assert helpers.read_file(empty_source / f"d{k}/f7") == \
            f"{k}:7".encode()


def test_falls_back_to_dev_fuse_when_the_kernel_refuses(mount, empty_source,
                                                        enable_uring):
    enable_uring("N")
    m = mount(empty_source, options=["io_uring"])
    helpers.write_file(m / "f", b"over /dev/fuse")
    assert helpers.read_file(m / "f") == b"over /dev/fuse"
    ring, total = over_ring(m)
    assert ring == 0 and total > 0
    assert m.unmount() == 0
    assert helpers.read_file(empty_source / "f") == b"over /dev/fuse"


def test_sigterm_with_io_uring_writes_back_and_exits(mount, empty_source,
                                                     enable_uring):
    """The rings stop with the request loop; the final write-back runs and
    the daemon exits 0 (its threads joined)."""
    m = mount(empty_source, options=["io_uring"])
    helpers.write_file(m / "f", b"x" * 100000)
    proc = subprocess.Popen(["cat", str(m / "f")], stdout=subprocess.PIPE)
    assert proc.communicate(timeout=30 * h5mount.SLOWDOWN)[0] == b"x" * 100000
    assert over_ring(m)[0] > 0
    assert m.sigterm() == 0
    assert helpers.read_file(empty_source / "f") == b"x" * 100000

