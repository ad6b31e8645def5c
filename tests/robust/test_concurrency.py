"""Concurrency: many processes and threads reading and writing the same and
different files, creating and renaming in one directory, contending for
flock and fcntl locks, while write-back runs at the same time
(`h5memfs sync MNT` in a loop, or a mount with -o commit=1).

Each test requires: no data lost (every file's final bytes are computed
and compared, in the mount and in SOURCE after unmount), no deadlock
(every worker has a timeout; the watchdog kills a hung daemon), no crash
(the daemon exits 0 at unmount with nothing on stderr), no conflict file
and no temporary file left in SOURCE.
"""

import os
import threading
import time
from pathlib import Path

import pytest

import rlib
import workers
from rlib import helpers

WORKERS = str(Path(__file__).resolve().parent / "workers.py")


class SyncLoop:
    """`h5memfs sync MNT` again and again in a thread until stopped; every
    run must exit 0 within its timeout."""

    def __init__(self, mnt, pause=0.02):
        self.mnt = str(mnt)
        self.pause = pause
        self.stop = threading.Event()
        self.errors = []
        self.runs = 0
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self.stop.is_set():
            try:
                res = rlib.run([str(rlib.DAEMON), "sync", self.mnt],
                               timeout=60, check=False)
            except Exception as e:  # timeout: a hang
                self.errors.append(repr(e))
                return
            self.runs += 1
            if res.returncode != 0:
                self.errors.append(f"sync exited {res.returncode}: "
                                   f"{res.stderr.strip()}")
            time.sleep(self.pause)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(90)
        assert not self.thread.is_alive(), "sync loop hung"


def spawn(*args):
    return rlib.Child([rlib.PYTHON, WORKERS, *map(str, args)])


def wait_all(children, timeout):
    problems = []
    outs = []
    deadline = time.monotonic() + timeout * rlib.SLOWDOWN
    for c in children:
        left = max(1, deadline - time.monotonic())
        try:
            rc, out, err = c.wait(left / rlib.SLOWDOWN)
        except AssertionError as e:
            problems.append(str(e))
            continue
        outs.append(out)
        if rc != 0:
            problems.append(f"{c.argv[2:]} exited {rc}: {err.strip()[-800:]}")
    for c in children:
        c.kill()
    assert not problems, "workers failed:\n" + "\n".join(problems)
    return outs


def no_leftovers(source):
    bad = helpers.tmp_files(source)
    for dirpath, dirnames, filenames in os.walk(source):
        bad += [os.path.join(dirpath, n) for n in filenames
                if "conflict" in n]
    assert not bad, f"left in SOURCE: {bad}"


def check_files(root, want):
    for rel, data in want.items():
        got = helpers.read_file(os.path.join(root, rel))
        assert got == data, f"{root}/{rel}: {len(got)} bytes, want " \
            f"{len(data)}; first difference at " \
            f"{next((i for i, (a, b) in enumerate(zip(got, data)) if a != b), min(len(got), len(data)))}"


# --- data: files of their own and one shared file -------------------------------------

FILE_SIZE = 400_000
REGION = 256 * 1024


def data_load(m, nfiles=4, nregions=4, rounds=6, readers=2):
    """Start writers of their own files and of regions of one shared file,
    and readers; return (children, expected contents)."""
    want = {}
    kids = []
    shared = m / "shared.bin"
    helpers.write_file(shared, b"\0" * (REGION * nregions))
    for i in range(nfiles):
        kids.append(spawn("file", m / f"own{i}", 100 + i, FILE_SIZE, rounds))
        want[f"own{i}"] = workers.pattern(100 + i, rounds - 1, FILE_SIZE)
    region_data = bytearray(REGION * nregions)
    for i in range(nregions):
        kids.append(spawn("region", shared, i, REGION, rounds))
        region_data[i * REGION:(i + 1) * REGION] = workers.pattern(
            i, rounds - 1, REGION)
    want["shared.bin"] = bytes(region_data)
    for i in range(readers):
        kids.append(spawn("reader", shared if i % 2 == 0 else m / "own0", 3))
    return kids, want


@pytest.mark.slow
def test_processes_write_own_and_shared_files_during_a_sync_loop(
        mount, source, datapath):
    m = mount(source, [datapath])
    with SyncLoop(m.path) as loop:
        kids, want = data_load(m)
        wait_all(kids, 120)
    assert not loop.errors, loop.errors
    assert loop.runs > 0
    check_files(m.path, want)
    assert m.unmount() == 0
    check_files(source, want)
    no_leftovers(source)


@pytest.mark.slow
def test_writers_during_periodic_commit_lose_nothing_and_make_no_conflicts(
        mount, source, datapath):
    m = mount(source, [datapath, "commit=1"])
    kids, want = data_load(m, rounds=10)
    wait_all(kids, 120)
    time.sleep(1.5)  # at least one more commit pass with nothing dirty
    check_files(m.path, want)
    assert m.unmount() == 0
    check_files(source, want)
    no_leftovers(source)


def test_threads_share_descriptors_and_write_disjoint_regions(
        mount, source, datapath):
    m = mount(source, [datapath])
    n, size = 8, 128 * 1024
    path = m / "threads.bin"
    helpers.write_file(path, b"")
    shared_fd = os.open(path, os.O_RDWR)
    errors = []

    def work(i):
        try:
            own = os.open(path, os.O_RDWR)
            try:
                for r in range(5):
                    data = workers.pattern(1000 + i, r, size)
                    fd = shared_fd if (i + r) % 2 else own
                    for off in range(0, size, 8192):
                        os.pwrite(fd, data[off:off + 8192], i * size + off)
                    if os.pread(own, size, i * size) != data:
                        errors.append(f"thread {i} round {r}: read differs")
                    if r == 2:
                        os.fsync(fd)
            finally:
                os.close(own)
        except Exception as e:
            errors.append(f"thread {i}: {e!r}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    with SyncLoop(m.path) as loop:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads), "threads hung"
    os.close(shared_fd)
    assert not errors, errors
    assert not loop.errors, loop.errors
    want = {"threads.bin": b"".join(workers.pattern(1000 + i, 4, size)
                                    for i in range(n))}
    check_files(m.path, want)
    assert m.unmount() == 0
    check_files(source, want)


def test_mmap_writers_with_fsync_lose_nothing(mount, source, datapath):
    """Each round rewrites the same pages through a shared mapping and
    fsyncs: SOURCE must have the last round of every region."""
    m = mount(source, [datapath])
    n, size, rounds = 4, 64 * 1024, 5
    path = m / "mapped.bin"
    helpers.write_file(path, b"\0" * (n * size))
    wait_all([spawn("mmap", path, i, size, rounds) for i in range(n)], 60)
    want = b"".join(workers.pattern(i, rounds - 1, size) for i in range(n))
    assert helpers.read_file(path) == want
    # Every worker fsynced after its last round: SOURCE has it already.
    got = helpers.read_file(source / "mapped.bin")
    assert got == want, "SOURCE lacks mapped writes that were fsynced"
    assert m.unmount() == 0
    assert helpers.read_file(source / "mapped.bin") == want


# --- names ----------------------------------------------------------------------------

@pytest.mark.slow
def test_create_and_rename_in_one_directory_during_a_sync_loop(
        mount, source, datapath):
    m = mount(source, [datapath])
    d = m / "busy"
    d.mkdir()
    nw, count = 4, 60
    with SyncLoop(m.path) as loop:
        kids = [spawn("renamer", d, i, count) for i in range(nw)]
        kids += [spawn("shared_reader", d, 4) for _ in range(2)]
        kids += [spawn("creator", m.path, i, 80) for i in range(2)]
        wait_all(kids, 120)
    assert not loop.errors, loop.errors
    want = {}
    for i in range(nw):
        for n in range(count):
            if n % 3 == 2 and n != count - 1:
                continue  # unlinked by the writer
            want[f"busy/w{i}-{n}"] = workers.pattern(i, n, 1000 + n * 13)
    expected_names = {os.path.basename(k) for k in want} | {"shared"}
    assert set(os.listdir(d)) == expected_names
    check_files(m.path, want)
    final = helpers.read_file(d / "shared")
    assert final in [workers.shared_version(i, count - 1) for i in range(nw)]
    for i in range(2):
        names = set(os.listdir(m / f"c{i}"))
        assert names == ({f"f{n}" for n in range(0, 80, 2)} |
                         {f"d{n}" for n in range(0, 80, 10)})
    before = helpers.snapshot(m.path, xattrs=False)
    assert m.unmount() == 0
    check_files(source, want)
    assert helpers.read_file(source / "busy" / "shared") == final
    helpers.assert_same_tree(helpers.snapshot(source, xattrs=False), before,
                             "SOURCE", "mount")
    no_leftovers(source)


# --- locks ----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["flock", "fcntl"])
def test_lock_contention_serialises_increments(mount, source, datapath, kind):
    m = mount(source, [datapath])
    path = m / "counter"
    helpers.write_file(path, b"0\n")
    nproc, count = 5, 120
    with SyncLoop(m.path) as loop:
        wait_all([spawn("counter", path, count, kind) for _ in range(nproc)],
                 90)
    assert not loop.errors, loop.errors
    assert helpers.read_file(path) == b"%d\n" % (nproc * count)
    assert m.unmount() == 0
    assert helpers.read_file(source / "counter") == b"%d\n" % (nproc * count)


def test_a_writer_racing_a_sync_loop_loses_no_write(mount, source, datapath):
    """One process appends and rewrites a header while `h5memfs sync` runs
    in a loop; after its close and the unmount SOURCE must hold the file
    exactly as the mount last showed it."""
    m = mount(source, [datapath])
    with SyncLoop(m.path, pause=0) as loop:
        fd = os.open(m / "f", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            end = time.monotonic() + 4
            i = 0
            while time.monotonic() < end:
                i += 1
                os.pwrite(fd, workers.pattern(7, i, 800), i * 800)
                os.pwrite(fd, b"%012d" % i, 0)
                time.sleep(0.002)
        finally:
            os.close(fd)
        time.sleep(0.3)  # more sync passes after the close
    assert not loop.errors, loop.errors
    final = helpers.read_file(m / "f")
    assert final[:12] == b"%012d" % i
    assert m.unmount() == 0
    got = helpers.read_file(source / "f")
    assert got == final, (f"SOURCE has {len(got)} bytes, header {got[:12]!r}"
                          f"; the mount had {len(final)}, {final[:12]!r}")
