"""A very long namespace journal (commit off, 50,000 renames and 500
unlinks before the unmount) replays in seconds and costs little memory.

The renames move new files that SOURCE has never seen (they are written at
the end, as data): replaying one changes nothing in SOURCE, so it syncs no
directory; before, each cost two directory fsyncs (over two minutes for
this journal on ext4).
"""
import os
import time

import pytest

import rlib

RENAMES = 50_000


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
    t = time.monotonic()
    assert m.unmount() == 0
    took = time.monotonic() - t
    assert took < 30 * rlib.SLOWDOWN, f"replay took {took:.1f} s"
    names = sorted(os.listdir(src / "d"))
    assert names == sorted([f"a{i}.x" for i in range(250, 500)] + ["kept"])
    assert (src / "d" / "kept").read_bytes() == b"from SOURCE"
    # the last version written under each name
    last = {i % 500: i for i in range(RENAMES)}
    for i in range(250, 500):
        assert (src / "d" / f"a{i}.x").read_bytes() == b"%d" % last[i]
