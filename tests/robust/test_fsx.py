"""The model-based random exerciser (fsx.py) on both data paths, with a
SOURCE that is written back (remounts pick write-back, commit=1,
sync_on_close and volatile mounts) and on volatile mounts without SOURCE.

The exerciser runs in its own process (a bug that makes a mapped page
vanish would otherwise kill pytest with SIGBUS); it writes its daemons'
PIDs to a file so that a run killed on timeout still leaves no mount.

Seeds: random per run, printed; H5MEMFS_FSX_SEED=N fixes it. A failure
prints the last operations and the command that replays the run.
CI: 4 short runs, under a minute together. `--long`: 15 minutes per data
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


@pytest.mark.deadline(150)
@pytest.mark.parametrize("mode,ops", [("source", 700), ("scratch", 500)])
def test_fsx_short(open_tmp, datapath, mode, ops):
    run_fsx(open_tmp, 120, "--path", datapath, "--mode", mode, "--ops", ops)


@pytest.mark.long
@pytest.mark.parametrize("mode", ["source"])
def test_fsx_long(open_tmp, datapath, mode):
    run_fsx(open_tmp, 900 + 300, "--path", datapath, "--mode", mode,
            "--duration", 900)
