"""The model-based random exerciser (fsx.py) on both data paths, with a
SOURCE that is written back (remounts pick write-back, commit=1,
sync_on_close and volatile mounts) and on volatile mounts without SOURCE.

The exerciser runs in its own process (a bug that makes a mapped page
vanish would otherwise kill pytest with SIGBUS); it writes its daemons'
PIDs to a file so that a run killed on timeout still leaves no mount.

Seeds: random per run, printed; H5MEMFS_FSX_SEED=N fixes it. A failure
prints the last operations and the command that replays the run.
CI: 6 short runs (SOURCE, scratch and names flavours), under a minute
together. `--long`: 15 minutes per data
path (30 minutes), results in docs/testing.md.
"""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

import rlib

FSX = Path(__file__).resolve().parent / "fsx.py"


def _seed():
    s = os.environ.get("H5MEMFS_FSX_SEED")
    return int(s) if s else int.from_bytes(os.urandom(4), "little")


def _cleanup(pidfile):
    """Lazy-unmount and kill what a killed exerciser left behind: only the
    daemons it recorded, and only if they still are h5memfs."""
    try:
        lines = Path(pidfile).read_text().splitlines()
    except FileNotFoundError:
        return
    for line in lines:
        pid, _, mnt = line.partition(" ")
        if os.path.ismount(mnt):
            rlib.run(["fusermount3", "-u", "-z", mnt], timeout=10,
                     check=False)
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"h5memfs" not in f.read():
                    continue
            os.kill(int(pid), signal.SIGKILL)
        except (FileNotFoundError, ProcessLookupError):
            pass


def run_fsx(workdir, timeout, *args):
    seed = _seed()
    pidfile = workdir / "daemons.pid"
    argv = [rlib.PYTHON, str(FSX), "--seed", str(seed), "--workdir",
            str(workdir / "fsx"), "--pidfile", str(pidfile), *map(str, args)]
    print("running:", " ".join(argv))
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    start = time.monotonic()
    try:
        out, _ = proc.communicate(timeout=timeout * rlib.SLOWDOWN)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)  # faulthandler: where it hangs
        time.sleep(2)
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        _cleanup(pidfile)
        pytest.fail(f"fsx seed {seed} did not finish in {timeout}s (hang?):"
                    f"\n{out.decode(errors='replace')[-6000:]}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    _cleanup(pidfile)
    text = out.decode(errors="replace")
    print(text[-3000:])
    assert proc.returncode == 0, (
        f"fsx seed {seed} failed (exit {proc.returncode}) after "
        f"{time.monotonic() - start:.0f}s:\n{text[-8000:]}")
    return text


# The "names" flavour weighs the namespace operations (renames over names
# that were themselves replaced, links, unlinks of open files, directory
# renames) and write-backs far above the data operations.
NAMES_WEIGHTS = ["rename=25", "rename2=12", "link=12", "unlink=10",
                 "dirop=10", "sync=4", "remount=3", "fsync=5", "mmap=1",
                 "mwrite=2", "mread=1", "read=2", "pread=2"]


@pytest.mark.deadline(150)
@pytest.mark.parametrize("flavour,ops", [("source", 700), ("scratch", 500),
                                         ("names", 500)])
def test_fsx_short(open_tmp, datapath, flavour, ops):
    args = ["--path", datapath, "--ops", ops]
    if flavour == "names":
        args += ["--mode", "source"]
        for w in NAMES_WEIGHTS:
            args += ["--weight", w]
    else:
        args += ["--mode", flavour]
    run_fsx(open_tmp, 120, *args)


@pytest.mark.long
def test_fsx_long(open_tmp, datapath):
    """15 minutes per data path: seed after seed, 3000 operations each,
    SOURCE mode; every failing seed is collected and reported at the end
    (one failure does not end the run)."""
    budget = float(os.environ.get("H5MEMFS_FSX_LONG_SECONDS", "900"))
    end = time.monotonic() + budget
    runs, failures = 0, []
    while time.monotonic() < end:
        work = open_tmp / f"run{runs}"
        work.mkdir()
        try:
            out = run_fsx(work, 600, "--path", datapath, "--mode", "source",
                          "--ops", 3000)
            steps = [line for line in out.splitlines()
                     if line.startswith("fsx: OK")]
            print(steps[-1] if steps else out[-200:])
        except (AssertionError, pytest.fail.Exception) as e:
            text = str(e)
            first = next((line for line in text.splitlines()
                          if "DIVERGENCE" in line or "ERROR" in line),
                         text.splitlines()[0])
            replay = next((line for line in text.splitlines()
                           if "replay:" in line), "")
            failures.append(f"{first.strip()}\n    {replay.strip()}")
        runs += 1
    summary = (f"fsx long, {datapath}: {runs} runs of 3000 operations in "
               f"{budget:.0f}s, {len(failures)} failed")
    print(summary)
    assert not failures, summary + ":\n" + "\n".join(failures)
