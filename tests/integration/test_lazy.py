"""Opening a file before it is in memory (`load=lazy`, the default): the
open returns at once, reads fetch the blocks they need from SOURCE, a
background loader fills the rest; writes made meanwhile are never
overwritten by it and reach SOURCE; a file changed in SOURCE while it
loads is loaded again at its next open; `load=whole` loads at open as
before; on the passthrough path a file is handed to the kernel once
whole.

A SOURCE that is slow to deliver data (bench/slowfs with a delay per
read) keeps the background load running long enough for the tests to act
while the file is partial; each such test checks that it still was. What
the daemon read from SOURCE is its `fetch_bytes` counter and its
/proc/PID/io rchar."""

import json
import os
import mmap
import random
import subprocess
import time
from pathlib import Path

import pytest

import helpers
from acceptance import expected_data_path, random_bytes, wait_until
from h5mount import DAEMON, REPO, SLOWDOWN, mounted, track, untrack

MiB = 1 << 20
BUILD = Path(os.environ.get("H5MEMFS_BUILD", REPO / "build")).absolute()
SLOWFS = BUILD / "bench" / "slowfs"
READ_DELAY_US = 20000  # per 128 KiB read: ~6-15 MiB/s from SOURCE


@pytest.fixture
def slow_source(tmp_path):
    """(dir, slow): files put in dir are read through slow, a slowfs
    mount of dir whose reads each wait READ_DELAY_US (no attribute cache:
    changes made in dir show at once). Unmounted in every outcome."""
    if not SLOWFS.exists():
        pytest.skip(f"{SLOWFS} not built")
    back, slow = tmp_path / "back", tmp_path / "slow"
    back.mkdir()
    slow.mkdir()
    log = open(tmp_path / "slowfs.stderr", "wb")
    proc = track(subprocess.Popen(
        [str(SLOWFS), "-f", "-o",
         f"delay_us=0,read_delay_us={READ_DELAY_US},timeout=0",
         str(back), str(slow)], stdout=subprocess.DEVNULL, stderr=log,
        stdin=subprocess.DEVNULL))
    try:
        wait_until(lambda: mounted(slow), what="slowfs mounted")
        yield back, slow
    finally:
        for args in (["-u"], ["-u", "-z"]):
            if mounted(slow):
                subprocess.run(["fusermount3", *args, str(slow)],
                               capture_output=True, timeout=30 * SLOWDOWN)
        try:
            proc.wait(timeout=10 * SLOWDOWN)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        untrack(proc)
        log.close()


def mount_doc(m):
    return json.loads(os.getxattr(m.path, "user.h5memfs.status"))


def file_doc(m, rel):
    """The file's status, read from the daemon without reading the file."""
    return json.loads(os.getxattr(m.path / rel, "user.h5memfs.status"))


def rchar(pid):
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    raise AssertionError("no rchar in /proc/PID/io")


def whole(m, rel, timeout=120):
    wait_until(lambda: not file_doc(m, rel)["partial"], timeout=timeout,
               interval=0.1, what=f"{rel} loaded whole")


def make_big_hdf5(path, datasets=8, per=32 * MiB):
    helpers.run_python(
        "import sys, h5py, numpy as np\n"
        "with h5py.File(sys.argv[1], 'w') as f:\n"
        "    for i in range(int(sys.argv[2])):\n"
        "        g = f.create_group(f'g{i}')\n"
        "        g.attrs['i'] = i\n"
        "        g.create_dataset('d', data=np.random.default_rng(i)"
        ".integers(0, 2**60, size=(int(sys.argv[3]) // 8,),"
        " dtype=np.int64))\n", str(path), str(datasets), str(per),
        timeout=120)


@pytest.mark.slow
def test_h5ls_of_a_large_file_reads_a_small_part_of_it(slow_source, mount):
    back, slow = slow_source
    make_big_hdf5(back / "big.h5")
    size = (back / "big.h5").stat().st_size
    assert size > 256 * MiB
    m = mount(slow)
    before, fetched0 = rchar(m.pid), mount_doc(m)["fetch_bytes"]
    ls = helpers.run(["h5ls", "-r", m.path / "big.h5"], timeout=120)
    dump = helpers.run(["h5dump", "-H", m.path / "big.h5"], timeout=120)
    doc = mount_doc(m)
    read = rchar(m.pid) - before
    # the open did not load it: what h5ls and h5dump -H needed, and what
    # the background loader got meanwhile, is far less than the file
    assert file_doc(m, "big.h5")["partial"]
    assert doc["lazy_loads"] == 1
    # status says how much of it is in
    table = helpers.run([DAEMON, "status", m.path]).stdout
    assert "loading 1 file(s):" in table, table
    assert any(ln.split()[:1] == ["clean"] and ln.split()[1].endswith("%")
               and ln.endswith("big.h5") for ln in table.splitlines()), \
        table
    assert doc["fetch_bytes"] - fetched0 < size // 2, doc
    assert read < size // 2, read
    # and they saw what they see in SOURCE
    direct = helpers.run(["h5ls", "-r", back / "big.h5"])
    assert ls.stdout == direct.stdout
    dump_direct = helpers.run(["h5dump", "-H", back / "big.h5"])
    assert dump.stdout.replace(str(m.path), "") == \
        dump_direct.stdout.replace(str(back), "")


def test_a_cold_sequential_read_gives_sources_bytes(tmp_path, mount):
    src = tmp_path / "src"
    src.mkdir()
    data = random_bytes(48 * MiB + 12345, seed=3)
    # a hole in the middle: read as zeros, never fetched
    with open(src / "f.bin", "wb") as f:
        f.write(data[:20 * MiB])
        f.seek(30 * MiB)
        f.write(data[30 * MiB:])
    want = data[:20 * MiB] + bytes(10 * MiB) + data[30 * MiB:]
    m = mount(src)
    got = (m.path / "f.bin").read_bytes()
    assert got == want
    helpers.run(["cmp", m.path / "f.bin", src / "f.bin"])
    assert mount_doc(m)["lazy_loads"] == 1
    whole(m, "f.bin")
    assert mount_doc(m)["fetch_bytes"] <= 40 * MiB + 12345


def test_the_loader_goes_on_once_jumping_reads_cover_the_file(tmp_path,
                                                              mount):
    """The loader makes way for reads that jump (h5ls walking headers)
    only while they are few: once they have fetched a sixteenth of the
    file, the program is reading it all over, and loading the rest in
    order alongside serves it soonest. Reads jump to a new block of the
    first half every few milliseconds (the loader's pause for each is
    100 ms), so without that limit the loader would only wait; with it,
    the loaded bytes soon exceed what the reads fetched."""
    block = 256 << 10  # the daemon's fetch block (FS_LAZY_BLOCK)
    size = 256 * MiB
    src = tmp_path / "src"
    src.mkdir()
    data = random_bytes(size, seed=9)
    (src / "f.bin").write_bytes(data)
    m = mount(src)
    order = list(range(size // block // 2))
    random.Random(4).shuffle(order)
    fd = os.open(m.path / "f.bin", os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        ahead = 0
        for i, b in enumerate(order, 1):
            assert os.pread(fd, 4096, b * block) == \
                data[b * block:b * block + 4096]
            if i % 16 == 0:
                ahead = file_doc(m, "f.bin")["loaded_bytes"] - i * block
                if ahead >= 32 * MiB:
                    break
            time.sleep(0.005)
    finally:
        os.close(fd)
    assert ahead >= 32 * MiB, (
        f"after {i} jumping reads the loader had loaded "
        f"{ahead // MiB} MiB more than they fetched")
    whole(m, "f.bin")
    helpers.run(["cmp", m.path / "f.bin", src / "f.bin"])


@pytest.mark.slow
def test_writes_made_while_a_file_loads_survive_it_and_reach_source(
        slow_source, mount):
    back, slow = slow_source
    size = 64 * MiB
    model = bytearray(random_bytes(size, seed=5))
    (back / "f.bin").write_bytes(model)
    m = mount(slow, options=["validate=off"])
    patches = [
        (10, b"A" * 100),                       # inside the first block
        (5 * MiB - 1000, b"B" * (3 * MiB)),     # blocks in part and whole
        (20 * MiB, b"C" * MiB),                 # aligned: whole blocks
        (40 * MiB + 7, b"D" * 10),              # deep, not loaded yet
        (size - 5, b"E" * 1000),                # past the end
    ]
    fd = os.open(m.path / "f.bin", os.O_RDWR)
    try:
        for off, b in patches:
            assert os.pwrite(fd, b, off) == len(b)
            end = off + len(b)
            if end > len(model):
                model.extend(bytes(end - len(model)))
            model[off:end] = b
    finally:
        os.close(fd)  # the kernel's cached writes reach the daemon here
    # they were made while it loaded
    assert file_doc(m, "f.bin")["partial"], file_doc(m, "f.bin")
    whole(m, "f.bin")
    assert (m.path / "f.bin").read_bytes() == bytes(model)
    m.sync(check=True)
    assert (back / "f.bin").read_bytes() == bytes(model)


@pytest.mark.slow
def test_a_truncate_of_a_partial_file_never_brings_back_sources_bytes(
        slow_source, mount):
    back, slow = slow_source
    data = random_bytes(32 * MiB, seed=6)
    (back / "f.bin").write_bytes(data)
    m = mount(slow, options=["validate=off"])
    cut = 10 * MiB + 5
    with open(m.path / "f.bin", "r+b") as f:
        f.truncate(cut)
        f.truncate(32 * MiB)
    assert file_doc(m, "f.bin")["partial"]
    whole(m, "f.bin")
    want = data[:cut] + bytes(32 * MiB - cut)
    assert (m.path / "f.bin").read_bytes() == want
    m.sync(check=True)
    assert (back / "f.bin").read_bytes() == want


@pytest.mark.slow
def test_a_file_only_read_is_left_alone_when_unmounted_partial(
        slow_source, mount):
    """A partial image is changed only through the daemon (the kernel's
    passthrough gets an image once it is whole): one that was only read
    is clean at the end of the mount, however little of it is loaded,
    and SOURCE's file is not rewritten."""
    back, slow = slow_source
    data = random_bytes(32 * MiB, seed=8)
    (back / "f.bin").write_bytes(data)
    before = os.stat(back / "f.bin")
    m = mount(slow, options=["validate=off"])
    with open(m.path / "f.bin", "rb") as f:
        assert f.read(4096) == data[:4096]
    assert file_doc(m, "f.bin")["partial"]
    assert m.unmount() == 0
    after = os.stat(back / "f.bin")
    assert (after.st_ino, after.st_ctime_ns, after.st_mtime_ns) == \
        (before.st_ino, before.st_ctime_ns, before.st_mtime_ns)
    assert (back / "f.bin").read_bytes() == data


@pytest.mark.slow
def test_mmap_of_a_partial_file_reads_sources_bytes(slow_source, mount):
    back, slow = slow_source
    data = random_bytes(64 * MiB, seed=7)
    (back / "f.bin").write_bytes(data)
    m = mount(slow)
    with open(m.path / "f.bin", "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
        try:
            assert file_doc(m, "f.bin")["partial"]
            for off in (60 * MiB + 123, 3, 33 * MiB - 10, 64 * MiB - 4096):
                assert mm[off:off + 4096] == data[off:off + 4096], off
        finally:
            mm.close()


@pytest.mark.slow
def test_a_file_changed_in_source_while_it_loads_is_loaded_again(
        slow_source, mount):
    back, slow = slow_source
    old = random_bytes(48 * MiB, seed=8)
    (back / "f.bin").write_bytes(old)
    m = mount(slow, allow_stderr=True)
    with open(m.path / "f.bin", "rb") as f:
        assert f.read(4096) == old[:4096]
        assert file_doc(m, "f.bin")["partial"]
        # another program rewrites it in place, meanwhile
        new = random_bytes(48 * MiB, seed=9)
        with open(back / "f.bin", "r+b") as w:
            w.write(new)
    whole(m, "f.bin")
    assert "changed in SOURCE while it was being loaded" in m.stderr()
    # the mix it holds is never served again: the next open loads it anew
    got = (m.path / "f.bin").read_bytes()
    assert got == new


def test_load_whole_reads_the_file_at_open(tmp_path, mount):
    src = tmp_path / "src"
    src.mkdir()
    data = random_bytes(16 * MiB, seed=10)
    (src / "f.bin").write_bytes(data)
    m = mount(src, options=["load=whole"])
    with open(m.path / "f.bin", "rb") as f:
        doc = file_doc(m, "f.bin")
        assert not doc["partial"] and doc["loaded_bytes"] == len(data)
        assert doc["memory_bytes"] >= len(data)
        assert mount_doc(m)["lazy_loads"] == 0
        assert f.read() == data
    assert mount_doc(m)["fetch_bytes"] == 0


def test_load_lazy_is_the_default(tmp_path, mount):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.bin").write_bytes(random_bytes(16 * MiB, seed=11))
    (src / "small.bin").write_bytes(b"x" * MiB)
    m = mount(src)
    (m.path / "f.bin").open("rb").close()
    (m.path / "small.bin").open("rb").close()
    # the small one (4 MiB or less) is loaded whole at once
    assert mount_doc(m)["lazy_loads"] == 1
    assert not file_doc(m, "small.bin")["partial"]


def test_load_refuses_other_values(tmp_path):
    src, mnt = tmp_path / "src", tmp_path / "mnt"
    src.mkdir()
    mnt.mkdir()
    res = helpers.run([DAEMON, "-f", "-o", "load=some",
                       src, mnt], check=False)
    assert res.returncode == 1
    assert "load" in res.stderr and "lazy or whole" in res.stderr
    assert not mounted(mnt)


@pytest.mark.skipif(expected_data_path() != "passthrough",
                    reason="passthrough data path only")
def test_a_whole_file_is_opened_passthrough(slow_source, mount):
    back, slow = slow_source
    data = random_bytes(16 * MiB, seed=12)
    (back / "f.bin").write_bytes(data)
    m = mount(slow)
    with open(m.path / "f.bin", "rb") as f:
        assert f.read(4096) == data[:4096]
        assert file_doc(m, "f.bin")["partial"]
    reads = mount_doc(m)["read_requests"]
    assert reads > 0  # served by the daemon while partial
    whole(m, "f.bin")
    # no handle is open and the image is whole: the kernel reads it itself
    with open(m.path / "f.bin", "rb") as f:
        assert f.read() == data
    assert mount_doc(m)["read_requests"] == reads
