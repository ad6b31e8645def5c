"""Fixtures for the many-nodes tests: a GlusterFS volume mounted twice on
this machine (fixture.sh), standing for two nodes A and B, and one h5memfs
mount over each.

The volume comes from $H5MEMFS_GLUSTER_NODES ("DIR_A:DIR_B", set by
run.sh after `fixture.sh up`), or else this session runs `fixture.sh up`
itself and `fixture.sh down` at its end. $H5MEMFS_GLUSTER_SKIP (a reason)
or `fixture.sh up` exiting 77 skips every test with that reason.

The h5memfs mounts are the shared harness's (tests/lib/h5mount.py).
Hygiene: every h5memfs mount a test makes is unmounted at its teardown
(fusermount3 -u, then -uz; the daemon's own PID is the only one
signalled); a watchdog SIGKILLs a hung test's daemons and the processes it
tracks, so that blocked requests fail instead of hanging the suite; every
subprocess has a timeout.
"""

import json
import os
import platform
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "lib"))

import h5mount  # noqa: E402
from h5mount import SLOWDOWN, Mount, mounted, track  # noqa: E402,F401

FIXTURE = HERE / "fixture.sh"
STATE = Path(os.environ.get("H5MEMFS_GLUSTER_STATE",
                            "/var/tmp/h5memfs-gluster"))
RESULTS = STATE / "logs" / "results.jsonl"
DEADLINE = 120 * SLOWDOWN


def record(**kw):
    """Append one measurement to the results file (read by run.sh)."""
    try:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with open(RESULTS, "a") as f:
            f.write(json.dumps(kw) + "\n")
    except OSError:
        pass


def _fixture_up():
    res = subprocess.run(["bash", str(FIXTURE), "up"], text=True,
                         capture_output=True, timeout=300,
                         stdin=subprocess.DEVNULL)
    if res.returncode == 77:
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        why = lines[-1] if lines else "GlusterFS not available"
        return None, "no GlusterFS here: " + why.removeprefix("SKIP: ")
    if res.returncode != 0:
        pytest.fail(f"fixture.sh up failed ({res.returncode}):\n"
                    f"{res.stderr}", pytrace=False)
    return res.stdout.split(), None


@pytest.fixture(scope="session")
def gluster():
    """(node A's client mount, node B's client mount) of one volume."""
    skip = os.environ.get("H5MEMFS_GLUSTER_SKIP")
    if skip:
        pytest.skip(skip)
    started = False
    if os.environ.get("H5MEMFS_GLUSTER_NODES"):
        dirs = os.environ["H5MEMFS_GLUSTER_NODES"].split(":")
    else:
        dirs, why = _fixture_up()
        if dirs is None:
            pytest.skip(why)
        started = True
    a, b = (Path(d) for d in dirs)
    for d in (a, b):
        if not mounted(d):
            pytest.fail(f"{d} is not a mount point", pytrace=False)
    try:
        yield a, b
    finally:
        if started:
            subprocess.run(["bash", str(FIXTURE), "down"], timeout=300,
                           stdin=subprocess.DEVNULL)


def wait_for(pred, timeout=10.0, step=0.05, what="condition"):
    """Poll pred() until it returns a true value; return it, and the
    seconds it took. Raises AssertionError at the timeout."""
    t0 = time.monotonic()
    end = t0 + timeout * SLOWDOWN
    while True:
        v = pred()
        if v:
            return v, time.monotonic() - t0
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(step)


class Pair:
    """One test directory on the volume, seen through both clients, and
    (after mount()) one h5memfs over it on each node."""

    def __init__(self, gluster, name, workdir):
        self.ga, self.gb = gluster
        self.name = name
        self.src_a = self.ga / name   # SOURCE of node A's h5memfs
        self.src_b = self.gb / name   # the same directory, node B's client
        self.workdir = workdir
        self.mounts = []
        self.a = self.b = None

    def h5memfs(self, source, tag, options=()):
        mp = self.workdir / f"mnt-{tag}-{len(self.mounts)}"
        mp.mkdir()
        # What a failed write-back saves stays with the test.
        options = [*options, f"rescue={self.workdir}/rescue-{tag}"]
        # The daemon's log lines (ESTALE waits, conflicts) are expected.
        m = Mount(mp, source, options, workdir=self.workdir,
                  allow_stderr=True, registry=self.mounts)
        return m.start()

    def mount(self, options=()):
        self.a = self.h5memfs(self.src_a, "a", options)
        self.b = self.h5memfs(self.src_b, "b", options)
        return self.a, self.b

    def finish(self):
        return h5mount.finish_all(self.mounts)


@pytest.fixture
def pair(gluster, request, tmp_path):
    """A fresh directory on the volume, visible on both nodes; the test
    calls pair.mount(options) to put one h5memfs over it on each node."""
    name = f"t-{request.node.name[:40]}-{uuid.uuid4().hex[:6]}"
    for ch in "[]/ ":
        name = name.replace(ch, "_")
    p = Pair(gluster, name, tmp_path)
    p.src_a.mkdir()
    wait_for(p.src_b.is_dir, what=f"{name} on node B's client")
    try:
        yield p
    finally:
        errors = p.finish()
        shutil.rmtree(p.src_a, ignore_errors=True)
        if errors:
            pytest.fail("\n\n".join(errors), pytrace=False)


def _passthrough_possible():
    try:
        major, minor = (int(x) for x in
                        platform.release().split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (6, 9) and os.geteuid() == 0


DATA_PATHS = [
    pytest.param(["passthrough=off"], id="daemon"),
    pytest.param(["passthrough=on"], id="passthrough",
                 marks=pytest.mark.skipif(
                     not _passthrough_possible(),
                     reason="kernel FUSE passthrough needs Linux 6.9+ "
                            "and root")),
]


@pytest.fixture(params=DATA_PATHS)
def data_path(request):
    """h5memfs options choosing each data path in turn."""
    return request.param


@pytest.fixture(autouse=True)
def _watchdog(request):
    """SIGKILL the daemons (and tracked child processes) of a test that
    runs past its deadline: their blocked requests then fail, and the test
    fails instead of hanging the suite."""
    with h5mount.Watchdog(DEADLINE) as w:
        yield
    if w.fired:
        pytest.fail(f"the test ran past {DEADLINE} s: the watchdog killed "
                    f"its daemons", pytrace=False)


def pytest_sessionfinish(session, exitstatus):
    """Last line of defence: no daemon and no mount outlives the suite."""
    h5mount.stop_all()
