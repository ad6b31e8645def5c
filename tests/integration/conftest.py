"""Fixtures for the h5memfs mount tests: the `mount` factory over the
shared harness (tests/lib/h5mount.py: Mount, which starts the daemon in the
foreground, waits for its readiness line on a FIFO and always unmounts), a
watchdog that turns a hung test into a failure instead of a hung suite, and
sample SOURCE trees.

Every test that mounts gets, in its teardown, an unmount with fusermount3, a
wait for the daemon's exit, and checks that it exited 0, wrote nothing on
stdout or stderr, and left no mount behind. On any failure the mount is
lazily unmounted and the daemon terminated and killed, by its PID.

The environment variables (H5MEMFS, H5MEMFS_BUILD, H5MEMFS_TEST_SLOWDOWN,
H5MEMFS_DATA_PATH, H5MEMFS_TEST_OPTIONS) are read by tests/lib/h5mount.py.
"""

import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

import h5mount  # noqa: E402
import helpers  # noqa: E402
from h5mount import SLOWDOWN, Mount  # noqa: E402

REPO = h5mount.REPO

DEFAULT_DEADLINE = 45 * SLOWDOWN  # a test's time before the watchdog fires
SLOW_DEADLINE = 150 * SLOWDOWN    # ... for tests marked slow


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: the test takes more than 10 s")


# --- fixtures ---------------------------------------------------------------

@pytest.fixture(autouse=True)
def _watchdog(request):
    """Kill the daemons of a test that runs past its deadline: the blocked
    FUSE requests then fail with ENOTCONN and the test fails (the Mount's
    teardown says the watchdog fired) instead of hanging the suite."""
    deadline = (SLOW_DEADLINE if request.node.get_closest_marker("slow")
                else DEFAULT_DEADLINE)
    with h5mount.Watchdog(deadline):
        yield


@pytest.fixture
def mount(tmp_path):
    """Factory: mount(source, options=(), mountpoint=None, **kw) -> Mount,
    started; every Mount made here is finished (unmounted and checked) at
    teardown. source=None mounts without SOURCE (give options volatile)."""
    made = []

    def make(source, options=(), mountpoint=None, **kw):
        if mountpoint is None:
            mountpoint = tmp_path / f"mnt{len(made)}"
            mountpoint.mkdir()
        m = Mount(mountpoint, source, options, workdir=tmp_path,
                  registry=made, **kw)
        m.start()
        return m

    yield make
    errors = h5mount.finish_all(made)
    if errors:
        pytest.fail("\n\n".join(errors), pytrace=False)


@pytest.fixture
def source(tmp_path):
    """A SOURCE directory with the sample tree (see helpers.make_source_tree)."""
    src = tmp_path / "src"
    helpers.make_source_tree(src)
    return src


@pytest.fixture
def empty_source(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    return src


@pytest.fixture
def mnt(mount, source):
    """The sample SOURCE mounted with default options."""
    return mount(source)


@pytest.fixture
def rw(mount, empty_source):
    """An empty SOURCE mounted with default options (written back)."""
    return mount(empty_source)


@pytest.fixture
def scratch(mount):
    """A volatile mount without SOURCE: an empty scratch workspace."""
    return mount(None, options=["volatile"])


@pytest.fixture
def tmpfs_dir():
    """A fresh directory on tmpfs (/dev/shm), the reference filesystem."""
    d = tempfile.mkdtemp(prefix="h5memfs-ref-", dir="/dev/shm")
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


def pytest_sessionfinish(session, exitstatus):
    """Last line of defence: no daemon and no mount outlives the suite."""
    h5mount.stop_all()
