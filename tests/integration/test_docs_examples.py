"""Run every example of docs/from-pytables-h5py.md, end to end.

Convention: on that page every fenced code block is an example that runs as
written, and is tagged ```sh (run with bash) or ```python (run with
/usr/bin/python3); any other fenced or indented code block is an error, so
an example cannot be skipped silently. Each block runs in its own temporary
working directory, with build/src and build/src/scratch first in PATH
($H5MEMFS_BUILD, else <repo>/build), with TMPDIR set to a fresh directory
(so that every `mktemp -d` mount point lands there), under a timeout, and
must exit 0. Shell blocks unmount in their own `trap`; in any case the test
lazily unmounts any h5memfs mount the block left behind under its TMPDIR
(and fails for it), and kills the block's process group on a timeout.

README.md's commands are run by test_readme.py.
"""

import os
import re
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("H5MEMFS_BUILD", REPO / "build")).absolute()
PAGE = REPO / "docs" / "from-pytables-h5py.md"
SLOWDOWN = float(os.environ.get("H5MEMFS_TEST_SLOWDOWN", "1"))
TIMEOUT = 90 * SLOWDOWN
RUNNERS = {"sh": ["bash"], "bash": ["bash"], "python": ["/usr/bin/python3"]}

FENCE = re.compile(r"^```(\S*)\s*$")


def extract_blocks(text):
    """[(lineno, lang, code)] for every fenced block; raise on a bad page."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, lang = i + 1, m.group(1)
        j = i + 1
        while j < len(lines) and lines[j].rstrip() != "```":
            j += 1
        if j == len(lines):
            raise ValueError(f"{PAGE.name}:{start}: unclosed code block")
        blocks.append((start, lang, "\n".join(lines[i + 1:j]) + "\n"))
        i = j + 1
    return blocks


def _indented_code(text):
    """Line numbers of 4-space-indented code blocks (outside fences)."""
    found, in_fence, prev_blank = [], False, True
    for n, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            in_fence = not in_fence
        elif not in_fence and line.startswith("    ") and line.strip() \
                and prev_blank:
            found.append(n)
        prev_blank = not line.strip()
    return found


BLOCKS = extract_blocks(PAGE.read_text())


def h5memfs_mounts(under):
    """h5memfs mounts below the directory `under` (the block's own TMPDIR:
    other programs may mount and unmount elsewhere at the same time)."""
    prefix = str(under).rstrip("/") + "/"
    with open("/proc/mounts") as f:
        found = {line.split()[1].encode().decode("unicode_escape")
                 for line in f if line.split()[2] == "fuse.h5memfs"}
    return {m for m in found if m.startswith(prefix)}


def test_page_has_only_runnable_blocks():
    text = PAGE.read_text()
    assert BLOCKS, "no examples found"
    bad = [(n, lang) for n, lang, _ in BLOCKS if lang not in RUNNERS]
    assert not bad, f"code blocks with no runnable tag (line, tag): {bad}"
    assert not _indented_code(text), \
        f"indented code blocks are not run: lines {_indented_code(text)}"
    langs = {lang for _, lang, _ in BLOCKS}
    assert {"sh", "python"} <= langs


@pytest.mark.parametrize("lineno,lang,code", BLOCKS,
                         ids=[f"line{n}-{lang}" for n, lang, _ in BLOCKS])
def test_example(lineno, lang, code, tmp_path):
    if lang in ("sh", "bash") and not os.path.exists("/dev/fuse"):
        pytest.skip("no /dev/fuse")
    for exe in (BUILD / "src" / "h5memfs",
                BUILD / "src" / "scratch" / "h5memfs-scratch"):
        assert exe.exists(), f"{exe} not built (ninja -C {BUILD})"
    script = tmp_path / ("example.py" if lang == "python" else "example.sh")
    script.write_text(code)
    work = tmp_path / "cwd"
    work.mkdir()
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(BUILD / "src"),
                                   str(BUILD / "src" / "scratch"),
                                   "/usr/bin", "/bin", "/usr/sbin", "/sbin",
                                   env.get("PATH", "")])
    env.pop("H5MEMFS", None)
    env["TMPDIR"] = str(tmp_path)
    proc = subprocess.Popen(RUNNERS[lang] + [str(script)], cwd=work, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
        timed_out = False
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    finally:
        left = h5memfs_mounts(tmp_path)
        for mnt in left:
            subprocess.run(["fusermount3", "-uz", mnt],
                           stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    report = (f"{PAGE.name}:{lineno} ({lang}) exit {proc.returncode}\n"
              f"--- code ---\n{code}--- stdout ---\n{out.decode(errors='replace')}"
              f"--- stderr ---\n{err.decode(errors='replace')}")
    assert not timed_out, f"timed out after {TIMEOUT}s\n" + report
    assert proc.returncode == 0, report
    assert not left, f"mounts left behind: {sorted(left)}\n" + report
