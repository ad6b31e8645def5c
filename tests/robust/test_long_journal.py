"""A very long namespace journal (commit off, 50,000 renames and 500
unlinks before the unmount) replays in seconds and costs little memory.

The renames move new files that SOURCE has never seen (they are written at
the end, as data): replaying one changes nothing in SOURCE, so it syncs no
directory; before, each cost two directory fsyncs (over two minutes for
this journal on ext4).
"""
import os
import shutil
import subprocess
import time

import pytest

import rlib

RENAMES = 50_000


def fsync_counter(pid, out):
    """strace(1) attached to every thread of pid, counting fsync(2); a
    function that waits for pid's end and returns the count. None without
    strace."""
    if not shutil.which("strace"):
        return None
    p = rlib.Child(["strace", "-f", "-c", "-e", "trace=fsync", "-o",
                    str(out), "-p", str(pid)])
    deadline = time.monotonic() + 20 * rlib.SLOWDOWN
    seen = b""
    while b"attached" not in seen:  # strace says so once it traces
        assert time.monotonic() < deadline, seen
        seen += os.read(p.proc.stderr.fileno(), 4096)

    def count():
        p.wait(60)
        for line in out.read_text().splitlines():
            if line.split() and line.split()[-1] == "fsync":
                return int(line.split()[3])
        return 0
    return count


@pytest.mark.slow
@pytest.mark.parametrize("datapath", rlib.DATA_PATHS)
def test_a_journal_of_50000_renames_replays_fast_in_little_memory(
        mount, open_tmp, datapath):
    src = open_tmp / "src"
    src.mkdir()
    (src / "kept").write_bytes(b"from SOURCE")
    m = mount(src, options=[datapath])
    os.mkdir(m / "d")
    for i in range(RENAMES):
        p = m / "d" / f"a{i % 500}"
        with open(p, "wb") as f:
            f.write(b"%d" % i)
        os.rename(p, f"{p}.x")
    for i in range(250):
        os.unlink(m / "d" / f"a{i}.x")
    os.rename(m / "kept", m / "d" / "kept")
    with open(f"/proc/{m.pid}/status") as f:
        rss = [int(ln.split()[1]) for ln in f if ln.startswith("VmRSS")][0]
    assert rss < 64 * 1024, f"daemon RSS {rss} KiB after {RENAMES} renames"
    counter = fsync_counter(m.pid, open_tmp / "strace.out")
    t = time.monotonic()
    assert m.unmount() == 0
    took = time.monotonic() - t
    assert took < 60 * rlib.SLOWDOWN, f"replay took {took:.1f} s"
    if counter:
        fsyncs = counter()
        # the files and directories written: a few hundred, not 2 x RENAMES
        assert fsyncs < 2000, f"{fsyncs} fsyncs for the replay"
    names = sorted(os.listdir(src / "d"))
    assert names == sorted([f"a{i}.x" for i in range(250, 500)] + ["kept"])
    assert (src / "d" / "kept").read_bytes() == b"from SOURCE"
    # the last version written under each name
    last = {i % 500: i for i in range(RENAMES)}
    for i in range(250, 500):
        assert (src / "d" / f"a{i}.x").read_bytes() == b"%d" % last[i]
