"""The memory budget (`max_memory=SIZE`, K/M/G/T suffixes or N% of RAM):
the images together never exceed it. Clean images nobody has open are
evicted, least recently used first, and reload transparently; past that,
writes fail with ENOSPC (on the daemon path the kernel's writeback cache
may report it at fsync or close instead: either is accepted, a silent
success is not). statfs reports the budget as the size. A file larger
than the budget is served read-only straight from SOURCE; a write open of
it fails with ENOSPC and a log line. Holes cost no memory. `preload`
loads everything in the background, within the budget, while the mount
already serves."""

import errno
import hashlib
import os
import time

import pytest

import helpers
from acceptance import (DAEMON, cli, daemon_lines, file_status,
                        mount_status,
                        random_bytes, status, wait_until)

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
SLACK = 256 * KiB  # page rounding and growth steps of a few images


def sha(b):
    return hashlib.sha256(b).hexdigest()


def statfs_bytes(path):
    sv = os.statvfs(path)
    return (sv.f_blocks * sv.f_frsize, sv.f_bfree * sv.f_frsize,
            sv.f_bavail * sv.f_frsize)


def mem_total():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no MemTotal")


@pytest.fixture
def four(empty_source):
    """Four 3 MiB files of distinct random bytes in SOURCE."""
    want = {}
    for i, name in enumerate("abcd"):
        data = random_bytes(3 * MiB, 20 + i)
        helpers.write_file(empty_source / name, data)
        want[name] = sha(data)
    return empty_source, want


def loaded(m):
    return {f["path"]: f["state"] for f in status(m)["files"]}


def read_and_check(m, name, want):
    assert sha(helpers.read_file(m / name)) == want[name], name


# --- the size of the filesystem -------------------------------------------

@pytest.mark.parametrize("value,expected", [
    ("2048K", 2 * MiB), ("100M", 100 * MiB), ("2G", 2 * GiB),
])
def test_max_memory_is_the_size_statfs_and_status_report(
        mount, empty_source, value, expected):
    m = mount(empty_source, options=[f"max_memory={value}"])
    total, free, avail = statfs_bytes(m.path)
    assert total == expected
    assert mount_status(m)["max_memory"] == expected
    assert free <= total and avail <= total
    assert m.unmount() == 0


def test_max_memory_as_a_percentage_of_the_ram(mount, empty_source):
    m = mount(empty_source, options=["max_memory=10%"])
    if "cgroup" in mount_status(mount(empty_source))["max_memory_from"]:
        pytest.skip("this test runs under a memory limit")
    want = mem_total() // 10
    got = mount_status(m)["max_memory"]
    assert abs(got - want) <= max(want // 100, 64 * KiB), (got, want)
    total, _, _ = statfs_bytes(m.path)
    assert abs(total - got) <= 64 * KiB, (total, got)
    assert m.unmount() == 0


def test_without_max_memory_the_budget_is_half_of_the_ram(
        mount, empty_source):
    m = mount(empty_source)
    ms = mount_status(m)
    if ms["max_memory_from"] != "half of RAM":
        pytest.skip(f"this test runs under a memory limit: "
                    f"{ms['max_memory_from']}")
    want = mem_total() // 2
    assert abs(ms["max_memory"] - want) <= max(want // 100, 64 * KiB)
    assert m.unmount() == 0


@pytest.fixture
def memory_cgroup():
    """A new memory cgroup under our own (v1 or v2): (its directory, its
    limit file). Asked for before `mount`, so it is removed after the
    daemons in it have exited."""
    if os.geteuid() != 0:
        pytest.skip("makes a cgroup: needs root")
    with open("/proc/self/cgroup") as f:
        lines = [ln.rstrip("\n").split(":", 2) for ln in f]
    for _, ctrl, path in lines:
        if "memory" in ctrl.split(","):
            base = "/sys/fs/cgroup/memory" + path
            limit = "memory.limit_in_bytes"
            break
    else:
        path = next((p for n, c, p in lines if n == "0" and c == ""), "")
        base = "/sys/fs/cgroup" + path
        limit = "memory.max"
    group = os.path.join(base, f"h5memfs-test-{os.getpid()}")
    try:
        os.mkdir(group)
    except OSError as e:
        pytest.skip(f"no memory cgroup can be made here: {e}")
    try:
        if not os.path.exists(os.path.join(group, limit)):
            pytest.skip("the memory controller is not enabled here")
        yield group, limit
    finally:
        os.rmdir(group)


def test_under_a_memory_cgroup_the_default_budget_is_half_of_its_room(
        memory_cgroup, mount, empty_source, tmp_path):
    """A batch job limited to 512 MiB: the budget is half of what its
    cgroup leaves, so the job meets ENOSPC, never the OOM killer."""
    group, limit_file = memory_cgroup
    with open(os.path.join(group, limit_file), "w") as f:
        f.write(str(512 * MiB))
    wrapper = tmp_path / "in-cgroup"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"echo $$ > '{group}/cgroup.procs' || exit 1\n"
        f"exec '{DAEMON}' \"$@\"\n")
    wrapper.chmod(0o755)
    m = mount(empty_source, binary=wrapper)
    ms = mount_status(m)
    assert ms["max_memory_from"].startswith("half of what cgroup "), ms
    assert 128 * MiB < ms["max_memory"] <= 256 * MiB, ms
    # the budget holds: writing past it is ENOSPC, not a killed daemon
    big = m / "big"
    with pytest.raises(OSError) as e:
        with open(big, "wb") as f:
            for _ in range(300):
                f.write(b"\0" * MiB)
            os.fsync(f.fileno())
    assert e.value.errno == errno.ENOSPC
    os.unlink(big)
    assert m.unmount() == 0


def test_free_space_shrinks_as_images_load(mount, four):
    src, want = four
    m = mount(src, options=["max_memory=64M"])
    total, free0, _ = statfs_bytes(m.path)
    used0 = mount_status(m)["memory_used"]
    fds = [os.open(m / n, os.O_RDONLY) for n in "ab"]
    try:
        for fd in fds:
            os.read(fd, 10)
        _, free1, _ = statfs_bytes(m.path)
        used1 = mount_status(m)["memory_used"]
        assert 6 * MiB <= used1 - used0 <= 6 * MiB + SLACK, used1 - used0
        assert 6 * MiB <= free0 - free1 <= 6 * MiB + SLACK, free0 - free1
        assert total - free1 >= used1 - SLACK
    finally:
        for fd in fds:
            os.close(fd)
    assert m.unmount() == 0


# --- eviction ---------------------------------------------------------------

def test_clean_closed_images_are_evicted_lru_and_reload_intact(mount, four):
    src, want = four
    m = mount(src, options=["max_memory=10M"])
    for n in "abc":
        read_and_check(m, n, want)
    read_and_check(m, "a", want)      # a is now more recent than b
    read_and_check(m, "d", want)      # room for d: b goes
    st = loaded(m)
    assert st["b"] == "not loaded", st
    assert st["a"] == st["c"] == st["d"] == "clean", st
    ms = mount_status(m)
    assert ms["evictions"] >= 1 and ms["memory_used"] <= 10 * MiB, ms
    read_and_check(m, "b", want)      # reloads; c is the oldest now
    st = loaded(m)
    assert st["c"] == "not loaded" and st["b"] == "clean", st
    for n in "abcd":
        read_and_check(m, n, want)
        assert mount_status(m)["memory_used"] <= 10 * MiB
    assert m.unmount() == 0


def test_open_and_dirty_images_are_never_evicted(mount, four):
    src, want = four
    m = mount(src, options=["max_memory=10M"])
    fd = os.open(m / "a", os.O_RDONLY)          # open: pinned
    try:
        os.read(fd, 1)
        helpers.write_file(m / "b", b"B" * 100, "r+b")   # dirty: kept
        new_b = b"B" * 100 + helpers.read_file(src / "b")[100:]
        read_and_check(m, "c", want)
        read_and_check(m, "d", want)   # must evict c, not a or b
        st = loaded(m)
        assert st["a"] == "clean" and st["b"] == "dirty", st
        assert st["c"] == "not loaded", st
        assert sha(os.pread(fd, 3 * MiB, 0)) == want["a"]
    finally:
        os.close(fd)
    assert helpers.read_file(m / "b") == new_b
    assert m.unmount() == 0
    assert helpers.read_file(src / "b") == new_b


def write_until_error(path, total, chunk=MiB):
    """Write `total` bytes, fsync, close. Returns the errno that stopped it
    and where (0 when all succeeded)."""
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    where, err = "", 0
    try:
        try:
            for off in range(0, total, chunk):
                os.pwrite(fd, b"\x77" * chunk, off)
            where = "fsync"
            os.fsync(fd)
        except OSError as e:
            err, where = e.errno, where or "write"
    finally:
        try:
            os.close(fd)
        except OSError as e:
            if not err:
                err, where = e.errno, "close"
    return err, where


def test_writes_past_the_budget_fail_with_enospc(mount, empty_source):
    m = mount(empty_source, options=["max_memory=8M"])
    err, where = write_until_error(m / "big", 12 * MiB)
    assert err == errno.ENOSPC, \
        f"writing 12 MiB under max_memory=8M gave {errno.errorcode.get(err, err)}" \
        f" at {where or 'no step'}"
    assert mount_status(m)["memory_used"] <= 8 * MiB
    # The room comes back when the file goes.
    os.unlink(m / "big")
    wait_until(lambda: mount_status(m)["memory_used"] <= SLACK, 5,
               what="the memory of the removed file")
    err, where = write_until_error(m / "small", 2 * MiB)
    assert err == 0, (errno.errorcode.get(err), where)
    assert m.unmount() == 0
    assert os.path.getsize(empty_source / "small") == 2 * MiB


def test_a_refused_write_into_a_hole_never_cuts_the_file(mount, empty_source):
    """A write refused for want of room changes nothing: the file keeps its
    size and every byte (the daemon path once cut the image back to the
    refused write's end, and wrote the shorter file to SOURCE)."""
    m = mount(empty_source, options=["max_memory=12M"])
    head, tail = b"\x11" * MiB, b"\x22" * MiB
    with open(m / "a", "wb") as f:
        f.write(head)
        f.truncate(8 * MiB)
        f.seek(7 * MiB)
        f.write(tail)
    err, where = write_until_error(m / "fill", 16 * MiB)
    assert err == errno.ENOSPC, (errno.errorcode.get(err), where)
    # into the hole of `a`: needs a page the budget no longer has
    fd = os.open(m / "a", os.O_WRONLY)
    try:
        with pytest.raises(OSError) as e:
            for off in range(MiB, 7 * MiB, MiB):
                os.pwrite(fd, b"\x33" * MiB, off)
            os.fsync(fd)
        assert e.value.errno == errno.ENOSPC
    finally:
        try:
            os.close(fd)
        except OSError as e:  # the writeback cache may report it here
            assert e.errno == errno.ENOSPC
    os.unlink(m / "fill")
    assert os.path.getsize(m / "a") == 8 * MiB
    with open(m / "a", "rb") as f:
        assert f.read(MiB) == head
        f.seek(7 * MiB)
        assert f.read() == tail
    assert m.unmount() == 0
    assert os.path.getsize(empty_source / "a") == 8 * MiB
    with open(empty_source / "a", "rb") as f:
        f.seek(7 * MiB)
        assert f.read() == tail


def test_a_sparse_file_is_charged_its_data_not_its_length(mount,
                                                         empty_source):
    """A 64 MiB file of 1 MiB of data under max_memory=16M loads (for
    writing too) and costs its data: its holes cost nothing."""
    data = random_bytes(MiB)
    with open(empty_source / "sparse", "wb") as f:
        f.truncate(64 * MiB)
        f.seek(32 * MiB)
        f.write(data)
    if os.stat(empty_source / "sparse").st_blocks * 512 > 2 * MiB:
        pytest.skip("SOURCE's filesystem keeps no holes")
    m = mount(empty_source, options=["max_memory=16M"])
    with open(m / "sparse", "r+b") as f:
        f.seek(32 * MiB)
        assert f.read(MiB) == data
        f.seek(0)
        f.write(b"head")
    fs = file_status(m, "sparse")
    assert fs["state"] == "dirty", fs
    assert fs["memory_bytes"] <= 2 * MiB, fs
    assert m.unmount() == 0
    with open(empty_source / "sparse", "rb") as f:
        assert f.read(4) == b"head"
        f.seek(32 * MiB)
        assert f.read(MiB) == data
    assert os.path.getsize(empty_source / "sparse") == 64 * MiB


def test_a_full_budget_still_reads_clean_files_from_source(mount,
                                                           empty_source):
    """With the budget full of unsaved data, a clean file opened for
    reading is served from SOURCE (status says so), SEEK_DATA and
    SEEK_HOLE included; opening it for writing is ENOSPC."""
    data = random_bytes(2 * MiB)
    helpers.write_file(empty_source / "clean.bin", data)
    m = mount(empty_source, options=["max_memory=16M"])
    err, where = write_until_error(m / "unsaved", 24 * MiB)
    assert err == errno.ENOSPC, (errno.errorcode.get(err), where)
    assert helpers.run(["cat", str(m / "clean.bin")],
                       text=False).stdout == data
    fd = os.open(m / "clean.bin", os.O_RDONLY)
    try:
        assert file_status(m, "clean.bin")["state"] == "from SOURCE"
        assert os.lseek(fd, 0, os.SEEK_DATA) == 0
        assert os.lseek(fd, 0, os.SEEK_HOLE) == 2 * MiB
        with pytest.raises(OSError) as e:
            os.open(m / "clean.bin", os.O_RDWR)
        assert e.value.errno == errno.ENOSPC
    finally:
        os.close(fd)
    os.unlink(m / "unsaved")
    assert m.unmount() == 0
    assert helpers.read_file(empty_source / "clean.bin") == data


@pytest.mark.parametrize("command", ["status", "sync"])
def test_a_full_budget_never_kills_the_daemon(mount, empty_source, command):
    """The budget filled to the brim, then a sparse file: looking at it
    (status) or writing it back (sync validates it first) must not touch
    its holes in a way that needs memory the budget no longer has."""
    m = mount(empty_source, options=["max_memory=8M"])
    err, where = write_until_error(m / "full", 12 * MiB, chunk=4 * KiB)
    assert err == errno.ENOSPC, (errno.errorcode.get(err), where)
    fd = os.open(m / "holes", os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.ftruncate(fd, 4 * MiB)
    finally:
        os.close(fd)
    res = cli(command, m.path, *(["--json"] if command == "status" else []))
    assert m.running(), \
        f"the daemon died ({m.proc.poll()}) during `h5memfs {command}`: " \
        f"{res.stderr}"
    assert res.returncode == 0, res.stderr
    assert m.unmount() == 0
    assert os.path.getsize(empty_source / "holes") == 4 * MiB
    # (What of "full" reaches SOURCE after its ENOSPC is not checked here:
    # on the daemon path the kernel keeps the pages it could not hand
    # over, as Linux does after any writeback error.)


def test_a_write_that_needs_room_evicts_clean_images_first(mount, four):
    src, want = four
    m = mount(src, options=["max_memory=10M"])
    for n in "abc":
        read_and_check(m, n, want)
    err, where = write_until_error(m / "new", 4 * MiB)
    assert err == 0, (errno.errorcode.get(err), where)
    assert mount_status(m)["evictions"] >= 1
    assert mount_status(m)["memory_used"] <= 10 * MiB
    for n in "abcd":
        read_and_check(m, n, want)
    assert m.unmount() == 0


# --- files larger than the budget ------------------------------------------

def test_a_file_larger_than_max_memory_is_served_read_only_from_source(
        mount, empty_source):
    data = random_bytes(6 * MiB, 77)
    helpers.write_file(empty_source / "huge.bin", data)
    m = mount(empty_source, options=["max_memory=4M"], allow_stderr=True)
    with open(m / "huge.bin", "rb") as f:
        got = f.read()
        st = file_status(m, "huge.bin")
        assert st["state"] == "from SOURCE", st
        assert mount_status(m)["memory_used"] <= SLACK
        f.seek(5 * MiB + 3)
        assert f.read(100) == data[5 * MiB + 3:5 * MiB + 103]
    assert sha(got) == sha(data)
    for flags in (os.O_RDWR, os.O_WRONLY, os.O_WRONLY | os.O_APPEND):
        with pytest.raises(OSError) as e:
            os.close(os.open(m / "huge.bin", flags))
        assert e.value.errno == errno.ENOSPC, flags
    assert any("huge.bin" in ln for ln in daemon_lines(m)), m.stderr()
    assert m.unmount() == 0
    assert sha(helpers.read_file(empty_source / "huge.bin")) == sha(data)


# --- holes ------------------------------------------------------------------

def measure(m):
    _, free, _ = statfs_bytes(m.path)
    return (mount_status(m)["memory_used"], free,
            helpers.vm_rss_kib(m.pid) * KiB)


def assert_costs_at_most(m, before, written):
    used0, free0, rss0 = before
    used1, free1, rss1 = measure(m)
    # "a page or so": two pages of the default 64K page_size
    assert used1 - used0 <= written + 128 * KiB, \
        f"memory_used grew by {used1 - used0} bytes for {written} written"
    assert free0 - free1 <= written + 128 * KiB, \
        f"statfs free shrank by {free0 - free1} bytes for {written} written"
    assert rss1 - rss0 <= 64 * MiB, rss1 - rss0


def test_a_1_tib_ftruncate_costs_no_memory(mount, empty_source):
    m = mount(empty_source)
    before = measure(m)
    fd = os.open(m / "tera", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.ftruncate(fd, 1 << 40)
        assert os.fstat(fd).st_size == 1 << 40
        assert os.pread(fd, 16, (1 << 40) - 16) == b"\0" * 16
        os.pwrite(fd, b"end", (1 << 40) - 3)
        os.fsync(fd)
    finally:
        os.close(fd)
    assert_costs_at_most(m, before, 3)
    os.unlink(m / "tera")
    assert m.unmount() == 0


def test_a_5_gib_sparse_file_costs_only_its_written_bytes(
        mount, empty_source):
    m = mount(empty_source)
    before = measure(m)
    fd = os.open(m / "sparse5g", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.pwrite(fd, b"at five GiB", 5 * GiB)
        assert os.pread(fd, 11, 5 * GiB) == b"at five GiB"
        assert os.fstat(fd).st_size == 5 * GiB + 11
        os.fsync(fd)  # written back too: SOURCE keeps the hole
    finally:
        os.close(fd)
    assert_costs_at_most(m, before, 11)
    assert os.stat(empty_source / "sparse5g").st_blocks * 512 <= 1 * MiB
    os.unlink(m / "sparse5g")
    assert m.unmount() == 0


def test_a_sparse_write_far_past_the_budget_costs_only_its_pages(
        mount, empty_source):
    # The budget counts memory taken, not the write's end offset: a
    # write at 100 GiB under a 64 MiB budget takes one page.
    m = mount(empty_source, options=["max_memory=64M"])
    fd = os.open(m / "far", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.pwrite(fd, b"end", 100 * GiB)
        os.fsync(fd)
        assert os.fstat(fd).st_size == 100 * GiB + 3
    finally:
        os.close(fd)
    assert os.stat(empty_source / "far").st_size == 100 * GiB + 3
    with open(empty_source / "far", "rb") as f:
        f.seek(100 * GiB)
        assert f.read() == b"end"
    os.unlink(m / "far")
    assert m.unmount() == 0


# --- preload ------------------------------------------------------------

def big_tree(src, nfiles, size):
    """nfiles files of `size` bytes (a random MiB repeated, distinct per
    file) in a few directories; returns {rel: sha256}."""
    want = {}
    for i in range(nfiles):
        rel = f"dir{i % 3}/sub/f{i}.bin"
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        block = random_bytes(MiB, 300 + i)
        h = hashlib.sha256()
        with open(src / rel, "wb") as f:
            for _ in range(size // MiB):
                f.write(block)
                h.update(block)
        want[rel] = h.hexdigest()
    return want


def test_preload_loads_everything_in_the_background(mount, empty_source):
    want = big_tree(empty_source, 4, 256 * MiB)   # 1 GiB in SOURCE
    t0 = time.monotonic()
    m = mount(empty_source, options=["preload"])
    ready = time.monotonic() - t0
    first = mount_status(m)["preload"]
    # The mount serves while the preload runs: a file opened now reads
    # right (it waits for that file only).
    last = sorted(want)[-1]
    assert sha(helpers.read_file(m / last)) == want[last]
    done = wait_until(
        lambda: (lambda p: p if p["state"] == "done" else None)(
            mount_status(m)["preload"]), 60, interval=0.1,
        what="the end of the preload")
    took = time.monotonic() - t0
    # ready before the preload ended (1 GiB from the page cache may also
    # be in memory by the first question: then it is done already)
    assert first["state"] in ("running", "done"), first
    assert first["state"] == "done" or ready < took, (ready, took)
    # The file opened meanwhile may have been loaded by that open.
    assert done["files"] in (3, 4) and done["skipped"] == 0, done
    assert done["bytes"] == done["files"] * 256 * MiB, done
    st = loaded(m)
    assert all(s == "clean" for s in st.values()), st
    for rel, h in want.items():
        assert sha(helpers.read_file(m / rel)) == h
    assert m.unmount() == 0


def test_preload_stays_within_max_memory_without_evicting(mount, four):
    src, want = four
    m = mount(src, options=["preload", "max_memory=10M"])
    done = wait_until(
        lambda: (lambda p: p if p["state"] == "done" else None)(
            mount_status(m)["preload"]), 20, what="the end of the preload")
    ms = mount_status(m)
    assert done["files"] == 3 and done["skipped"] == 1, done
    assert done["bytes"] == 9 * MiB, done
    assert ms["evictions"] == 0 and ms["memory_used"] <= 10 * MiB, ms
    for n in "abcd":
        read_and_check(m, n, want)
    assert m.unmount() == 0


def test_preload_is_off_by_default(mount, four):
    src, _ = four
    m = mount(src)
    ms = mount_status(m)
    assert ms["preload"]["state"] == "off", ms
    assert ms["files_loaded"] == 0, ms
    assert m.unmount() == 0
