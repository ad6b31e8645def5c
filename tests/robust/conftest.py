"""Fixtures for the h5memfs robustness tests (tests/robust).

They use the mount harness of every suite (tests/lib/h5mount.py: Mount,
the watchdog) and add:

- `--long` (or H5MEMFS_LONG=1): run the tests marked `long` (30-minute
  exerciser, full PyTables suite); skipped otherwise.
- a watchdog per test: past its deadline (marker `deadline(seconds)`, else
  90 s, 240 s for `slow`, 2400 s for `long`, all scaled by
  H5MEMFS_TEST_SLOWDOWN) the test's daemons are killed, so a hang becomes
  a failure (blocked requests fail with ENOTCONN) instead of a hung suite.
- `mount`: a factory like the integration one, but its mount points live
  in a directory every user can traverse (tests run as other uids), and
  each Mount is finished at teardown: unmounted with fusermount3 (then
  -uz), exit status 0, no daemon output, no mount left.
- `datapath`: the two data paths, passthrough=on and passthrough=off.
"""

import os
import shutil

import pytest

import rlib

h5mount = rlib.h5mount


def pytest_addoption(parser):
    parser.addoption("--long", action="store_true", default=False,
                     help="also run the tests marked long (h5memfs robust)")


def pytest_configure(config):
    config.addinivalue_line("markers", "long: runs for many minutes; only "
                            "with --long or H5MEMFS_LONG=1")
    config.addinivalue_line("markers", "slow: the test takes more than 10 s")
    config.addinivalue_line("markers", "deadline(seconds): the watchdog's "
                            "time for this test")


def _long_enabled(config):
    try:
        opt = config.getoption("--long")
    except ValueError:  # conftest not initial: the option is unknown
        opt = False
    return opt or os.environ.get("H5MEMFS_LONG") == "1"


def pytest_collection_modifyitems(config, items):
    if _long_enabled(config):
        return
    skip = pytest.mark.skip(reason="long test: run with --long")
    for item in items:
        if item.get_closest_marker("long"):
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _robust_watchdog(request):
    marker = request.node.get_closest_marker("deadline")
    if marker:
        deadline = marker.args[0]
    elif request.node.get_closest_marker("long"):
        deadline = 2400
    elif request.node.get_closest_marker("slow"):
        deadline = 240
    else:
        deadline = 90
    with h5mount.Watchdog(deadline * rlib.SLOWDOWN):
        yield


@pytest.fixture
def open_tmp():
    """A fresh directory under /tmp that every user can traverse."""
    d = rlib.open_dir("h5memfs-robust-")
    yield d
    _rmtree(d)


def _rmtree(d):
    # Never descend into a mount left behind by a failed teardown.
    for root, dirs, _files in os.walk(d):
        for name in list(dirs):
            if os.path.ismount(os.path.join(root, name)):
                return
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def mount(open_tmp):
    """Factory: mount(source, options=(), mountpoint=None, **kw) -> Mount,
    started, mount point traversable by every user. Finished (unmounted and
    checked) at teardown, newest first."""
    made = []

    def make(source, options=(), mountpoint=None, **kw):
        if mountpoint is None:
            mountpoint = open_tmp / f"mnt{len(made)}"
            mountpoint.mkdir()
            os.chmod(mountpoint, 0o755)
        m = rlib.Mount(mountpoint, source, options, workdir=open_tmp,
                       registry=made, **kw)
        m.start()
        return m

    yield make
    errors = h5mount.finish_all(made)
    if errors:
        pytest.fail("\n\n".join(errors), pytrace=False)


@pytest.fixture
def source(open_tmp):
    """An empty SOURCE directory (mode 0755, root)."""
    src = open_tmp / "src"
    src.mkdir()
    os.chmod(src, 0o755)
    return src


@pytest.fixture(params=rlib.DATA_PATHS)
def datapath(request):
    return request.param


@pytest.fixture
def shm_dir():
    """A fresh directory on tmpfs (/dev/shm), traversable by every user."""
    d = rlib.open_dir("h5memfs-robust-", "/dev/shm")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def pytest_sessionfinish(session, exitstatus):
    """No daemon and no mount outlives the suite."""
    h5mount.stop_all()


# --- POSIX conformance: one test body, three filesystems ----------------------

class FsDir:
    """Where a conformance test runs: `path` is an empty directory of the
    filesystem under test (the mount's root, or a tmpfs directory), `other`
    an empty directory on another filesystem (for EXDEV), `m` the Mount or
    None on tmpfs."""

    def __init__(self, kind, path, m, other):
        self.kind, self.path, self.m, self.other = kind, path, m, other

    def p(self, *parts):
        return os.path.join(str(self.path), *parts)

    @property
    def is_mount(self):
        return self.m is not None

    def __repr__(self):
        return f"FsDir({self.kind}, {self.path})"


FS_KINDS = ["tmpfs"] + rlib.DATA_PATHS


@pytest.fixture(params=FS_KINDS)
def fsd(request, mount, source, shm_dir, open_tmp):
    """The same test on tmpfs and on the mount (both data paths, with
    allow_other so that other uids can be tried). umask 022.
    H5MEMFS_ROBUST_SCRATCH=1: volatile mounts without SOURCE instead."""
    old = os.umask(0o022)
    kind = request.param
    m = None
    try:
        if kind == "tmpfs":
            other = open_tmp / "other"
            other.mkdir()
            yield FsDir(kind, shm_dir, None, other)
        else:
            if os.environ.get("H5MEMFS_ROBUST_SCRATCH") == "1":
                # No SOURCE at all (valgrind.sh: valgrind 3.19 has no
                # openat2, without which the daemon cannot reach SOURCE).
                m = mount(None, [kind, "allow_other", "volatile"])
            else:
                m = mount(source, [kind, "allow_other"])
            yield FsDir(kind, m.path, m, shm_dir)
            rlib.daemon_answers(m)
    finally:
        os.umask(old)
