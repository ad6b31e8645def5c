"""Crash safety: a daemon killed with SIGKILL at any moment of a write-back
(fsync/sync, or the final write-back after the unmount) leaves every file
in SOURCE whole, at its old or its new version, never a mix. Temporaries
are named .h5memfs-tmp.<12 hex> (never a data-looking name) and are not
shown in the mount's listing. After SIGKILL the mount is dead and is
lazily unmounted.

The kill times are spread over the measured duration of a full write-back
so that some land in its middle."""

import hashlib
import os
import re
import signal
import subprocess
import time

import pytest

import helpers
from acceptance import DAEMON, SLOWDOWN, random_bytes, xfs  # noqa: F401 (fixture)

MiB = 1 << 20
NFILES = 4
SIZE = 16 * MiB
TMP_RX = re.compile(r"^\.h5memfs-tmp\.[0-9a-f]{12}$")
FRACTIONS = [0.0, 0.15, 0.3, 0.5, 0.7, 0.9]


def names():
    return [f"d{i}/file{i}.bin" for i in range(NFILES)]


def populate(src):
    for i, rel in enumerate(names()):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        helpers.write_file(src / rel, random_bytes(SIZE, 100 + i))
    os.sync()


def digest(path):
    return hashlib.sha256(helpers.read_file(path)).hexdigest()


def change_all(m, round_):
    """A new version of each file: its first MiB replaced and a tail
    appended. Returns {rel: sha256 of the new version}."""
    want = {}
    for i, rel in enumerate(names()):
        fd = os.open(m / rel, os.O_RDWR)
        try:
            os.pwrite(fd, random_bytes(MiB, 1000 * round_ + i), 0)
            size = os.fstat(fd).st_size
            os.pwrite(fd, b"round %d\n" % round_, size)
        finally:
            os.close(fd)
        want[rel] = digest(m / rel)
    return want


def kill_and_detach(m):
    rc = m.signal(signal.SIGKILL)
    helpers.run(["fusermount3", "-u", "-z", str(m.path)], timeout=10,
                check=False)
    assert not m.is_mounted()
    return rc


def check_source(src, old, new, when):
    """Every file old or new, whole; nothing else but temporaries.
    Returns (how many are new, the temporaries left)."""
    got_new = 0
    for rel in names():
        d = digest(src / rel)
        assert d in (old[rel], new[rel]), \
            f"{rel} is neither its old nor its new version ({when})"
        got_new += d == new[rel]
    temps = []
    for dirpath, dirnames, filenames in os.walk(src):
        for n in filenames + dirnames:
            rel = os.path.relpath(os.path.join(dirpath, n), src)
            if rel in names() or (n.startswith("d") and n in
                                  {os.path.dirname(x) for x in names()}):
                continue
            assert TMP_RX.match(n), \
                f"{rel} left in SOURCE is not a .h5memfs-tmp.* name ({when})"
            temps.append(rel)
    return got_new, temps


def full_writeback_seconds(mount, src, how):
    """Time one complete write-back of the changed files (no kill)."""
    m = mount(src, allow_stderr=True)
    change_all(m, 0)
    t0 = time.monotonic()
    if how == "sync":
        res = helpers.run([str(DAEMON), "sync", str(m.path)], timeout=120,
                          check=False)
        took = time.monotonic() - t0
        assert res.returncode == 0, res.stderr
        assert m.unmount() == 0
    else:
        assert m.unmount() == 0
        took = time.monotonic() - t0
    return took


def until_a_temporary_or(src, seconds):
    """Wait until a write-back temporary shows in SOURCE (a write-back is
    under way), or `seconds` pass."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not helpers.tmp_files(src):
        time.sleep(0.0005)


def crash_rounds(mount, src, how):
    took = full_writeback_seconds(mount, src, how)
    partial = 0
    # The last round kills as soon as a write-back is seen under way, so
    # that however fast or slow the machine, one kill lands in one.
    for round_, frac in enumerate(FRACTIONS + [None], start=1):
        old = {rel: digest(src / rel) for rel in names()}
        m = mount(src, allow_stderr=True, expect_exit=-signal.SIGKILL)
        new = change_all(m, round_)
        if how == "sync":
            sync = subprocess.Popen([str(DAEMON), "sync", str(m.path)],
                                    stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            if frac is None:
                until_a_temporary_or(src, 10 * SLOWDOWN + 3 * took)
            else:
                time.sleep(took * frac)
            kill_and_detach(m)
            sync.wait(30 * SLOWDOWN)
        else:
            # fusermount3 -u returns once detached; the daemon then
            # writes back, and is killed meanwhile.
            helpers.run(["fusermount3", "-u", str(m.path)], timeout=30)
            if frac is None:
                until_a_temporary_or(src, 10 * SLOWDOWN + 3 * took)
            else:
                time.sleep(took * frac)
            try:
                os.kill(m.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            # It may have finished first: then it must have exited 0.
            if m.wait() == 0:
                m.expect_exit = 0
            helpers.run(["fusermount3", "-u", "-z", str(m.path)],
                        timeout=10, check=False)
        when = "a temporary" if frac is None else f"{frac:.2f}"
        n_new, temps = check_source(src, old, new,
                                    f"{how}, killed at {when} of "
                                    f"{took:.3f}s")
        if temps or 0 < n_new < NFILES:
            partial += 1
        # A new mount over the same SOURCE: temporaries are hidden, the
        # files read back as SOURCE has them, and it ends cleanly.
        again = mount(src)
        listed = helpers.walk(again.path)
        assert not [p for p in listed
                    if os.path.basename(p).startswith(".h5memfs-tmp.")], \
            listed
        for rel in names():
            assert digest(again / rel) == digest(src / rel)
        assert again.unmount() == 0
    return partial


@pytest.mark.slow
@pytest.mark.parametrize("how", ["sync", "unmount"])
def test_sigkill_during_write_back_leaves_each_file_old_or_new(
        mount, empty_source, how):
    populate(empty_source)
    partial = crash_rounds(mount, empty_source, how)
    # The kills did hit write-backs in progress (else nothing was tested).
    assert partial >= 1, "no kill landed in the middle of a write-back"


@pytest.mark.slow
def test_sigkill_during_a_clone_and_dirty_pages_write_back_on_xfs(
        xfs, mount):
    src = xfs[0] / "src"
    src.mkdir()
    populate(src)
    partial = crash_rounds(mount, src, "sync")
    assert partial >= 1, "no kill landed in the middle of a write-back"


def test_after_sigkill_the_mount_is_dead_and_a_lazy_unmount_clears_it(
        mount, empty_source):
    helpers.write_file(empty_source / "f", b"old")
    m = mount(empty_source, allow_stderr=True,
              expect_exit=-signal.SIGKILL)
    helpers.write_file(m / "f", b"new, never written back")
    assert m.signal(signal.SIGKILL) == -signal.SIGKILL
    try:
        os.stat(m / "f")
        alive = True
    except OSError:
        alive = False
    assert not alive
    helpers.run(["fusermount3", "-u", "-z", str(m.path)], timeout=10)
    assert not m.is_mounted()
    assert helpers.read_file(empty_source / "f") == b"old"
    assert helpers.tmp_files(empty_source) == []
