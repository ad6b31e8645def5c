"""README.md's commands, run as written (so the README cannot rot).

Convention: every code block of README.md is fenced and tagged ```sh.
- The first two are the set-up commands: the second must be exactly the
  command .ci/run runs (so CI runs it), the first the same build followed
  by `bash docs/demo.sh`; the demo itself is run here.
- The others are the tour: they run in order, as one bash script with
  `set -euo pipefail`, from the top of the repository. The tour's fixed
  paths (/data/..., /mnt/...) are moved under a fresh temporary directory,
  `build/` becomes the build under test ($H5MEMFS_BUILD), and DESTDIR
  points into the temporary directory (the tour's `meson install`).
  Afterwards the test checks what the tour says happened.
"""

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from test_docs_examples import BUILD, REPO, SLOWDOWN, extract_blocks, \
    h5memfs_mounts, _indented_code

README = REPO / "README.md"
BLOCKS = extract_blocks(README.read_text())
TIMEOUT = 180 * SLOWDOWN

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/fuse"),
                                reason="no /dev/fuse")


def ci_command():
    """The one command line .ci/run runs."""
    lines = [l for l in (REPO / ".ci" / "run").read_text().splitlines()
             if l.startswith("bash .ci/deps")]
    assert len(lines) == 1, ".ci/run should run one `bash .ci/deps && ...`"
    return lines[0]


def test_readme_has_only_sh_blocks_and_the_set_up_commands_first():
    text = README.read_text()
    assert not _indented_code(text), \
        f"indented code blocks are not run: lines {_indented_code(text)}"
    assert [lang for _, lang, _ in BLOCKS] == ["sh"] * len(BLOCKS)
    assert len(BLOCKS) > 3
    demo, tests = BLOCKS[0][2].strip(), BLOCKS[1][2].strip()
    assert tests == ci_command()
    build = "bash .ci/deps && meson setup $([ -d build ] && echo " \
            "--reconfigure) build && ninja -C build"
    assert demo == build + " && bash docs/demo.sh"
    assert tests.startswith(build + " && ")


def _daemons_under(root):
    """PIDs of h5memfs daemons whose command line names a path in root."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"h5memfs") and \
                any(a.startswith(str(root).encode()) for a in argv[1:]):
            pids.append(int(d.name))
    return pids


def _run(cmd, cwd, env, timeout):
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        timed_out = True
    return proc.returncode, out.decode(errors="replace"), \
        err.decode(errors="replace"), timed_out


def _finish(root):
    """Unmount what was left under root, then end (by PID) the daemons the
    run started; both are failures of the README."""
    left = h5memfs_mounts(root)
    for mnt in left:
        subprocess.run(["fusermount3", "-uz", mnt], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=30 * SLOWDOWN)
    deadline = time.monotonic() + 30 * SLOWDOWN
    while _daemons_under(root) and time.monotonic() < deadline:
        time.sleep(0.1)
    stuck = _daemons_under(root)
    for pid in stuck:
        os.kill(pid, signal.SIGKILL)
    return left, stuck


def test_demo_runs(tmp_path):
    env = dict(os.environ, H5MEMFS=str(BUILD / "src" / "h5memfs"),
               TMPDIR=str(tmp_path))
    rc, out, err, timed_out = _run(["bash", str(REPO / "docs" / "demo.sh")],
                                   tmp_path, env, TIMEOUT)
    left, stuck = _finish(tmp_path)
    report = f"exit {rc}\n--- stdout ---\n{out}--- stderr ---\n{err}"
    assert not timed_out, report
    assert rc == 0, report
    assert not left and not stuck, report
    assert "temperature_mean" in out, report
    assert not list(tmp_path.iterdir()), "demo.sh left files behind"


def tour_script(root):
    """The tour blocks as one script, paths moved under root."""
    code = "".join(c for _, _, c in BLOCKS[2:])
    code = re.sub(r"(?<![\w./-])/(data|mnt)/", lambda m: f"{root}/{m[1]}/",
                  code)
    code = re.sub(r"(?<![\w./-])build(?=/|\s|$)", str(BUILD), code)
    return "set -euo pipefail\nset -x\n" + code


def test_tour_runs_as_written_and_does_what_it_says(tmp_path):
    for exe in (BUILD / "src" / "h5memfs",
                BUILD / "src" / "scratch" / "h5memfs-scratch"):
        assert exe.exists(), f"{exe} not built (ninja -C {BUILD})"
    root = tmp_path / "root"
    root.mkdir()
    script = tmp_path / "tour.sh"
    script.write_text(tour_script(root))
    env = dict(os.environ, DESTDIR=str(root / "dest"),
               TMPDIR=str(tmp_path))
    env.pop("H5MEMFS", None)
    try:
        rc, out, err, timed_out = _run(["bash", str(script)], REPO, env,
                                       TIMEOUT)
    finally:
        left, stuck = _finish(root)
    report = f"exit {rc}\n--- stdout ---\n{out}--- stderr ---\n{err}"
    assert not timed_out, f"timed out after {TIMEOUT}s\n" + report
    assert rc == 0, report
    assert not left, f"mounts left behind: {sorted(left)}\n" + report
    assert not stuck, "daemons still running 30 s after the tour\n" + report

    data = root / "data"
    # The h5py edit reached the source (h5memfs sync, then unmount).
    ls = subprocess.run(["h5ls", f"{data}/run1/experiment.h5/run1"],
                        capture_output=True, text=True, timeout=60 * SLOWDOWN)
    assert "mean" in ls.stdout, ls.stdout + ls.stderr
    # The discarded draft line and the volatile scratch mount wrote nothing.
    assert (data / "run1" / "notes.txt").read_text() == \
        "Measurements from the demo rig.\n"
    # The volatile file never reached the source.
    assert not (data / "run1" / "tmp.h5").exists()
    # Nothing but the sample (no temporaries, no conflict copies) in it.
    assert sorted(p.name for p in (data / "run1").iterdir()) == \
        ["calibration.h5", "experiment.h5", "notes.txt"]
    # The scratch job's output was kept.
    out_dir = data / "run1-out"
    assert (out_dir / "packed.h5").exists()
    diff = subprocess.run(["h5diff", str(out_dir / "packed.h5"),
                           str(data / "run1" / "experiment.h5")],
                          capture_output=True, text=True, timeout=60 * SLOWDOWN)
    assert diff.returncode == 0, diff.stdout + diff.stderr
    # meson install put the programs under DESTDIR.
    dest = root / "dest"
    installed = {p.name for p in dest.rglob("*")}
    assert {"h5memfs", "h5memfs-scratch", "mount.h5memfs",
            "h5memfs.1"} <= installed, sorted(installed)
    # The tour's `status` and `grep` printed what the README shows.
    assert f"{data}/run1 {root}/mnt/run1 fuse.h5memfs" in out, out
