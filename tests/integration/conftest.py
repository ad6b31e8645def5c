"""Fixtures for the h5memfs mount tests: a Mount that starts the daemon in the
foreground, waits for its readiness line on a FIFO and always unmounts, a
watchdog that turns a hung test into a failure instead of a hung suite, and
sample SOURCE trees.

Every test that mounts gets, in its teardown, an unmount with fusermount3, a
wait for the daemon's exit, and checks that it exited 0, wrote nothing on
stdout or stderr, and left no mount behind. On any failure the mount is
lazily unmounted and the daemon terminated and killed, by its PID.

The daemon is $H5MEMFS, or $H5MEMFS_BUILD/src/h5memfs, or
<repo>/build/src/h5memfs. $H5MEMFS_TEST_SLOWDOWN scales every timeout.
$H5MEMFS_DATA_PATH=passthrough|daemon runs every mount on one data path;
$H5MEMFS_TEST_OPTIONS (comma-separated) adds other options to every mount,
e.g. increment=4K,page_size=4K.
"""

import os
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

import helpers

REPO = Path(__file__).resolve().parents[2]


def _daemon_path():
    """Absolute, since the daemon runs with / as its working directory."""
    if os.environ.get("H5MEMFS"):
        return Path(os.environ["H5MEMFS"]).absolute()
    build = Path(os.environ.get("H5MEMFS_BUILD", REPO / "build"))
    return (build / "src" / "h5memfs").absolute()


DAEMON = _daemon_path()

# HDF5 file locking must stay on, as by default.
os.environ.pop("HDF5_USE_FILE_LOCKING", None)

# Seconds. H5MEMFS_TEST_SLOWDOWN multiplies them all, for a daemon under
# valgrind or a sanitizer.
SLOWDOWN = float(os.environ.get("H5MEMFS_TEST_SLOWDOWN", "1"))

# The data path under test: "passthrough", "daemon", or None for the
# daemon's own choice (auto: passthrough as root on Linux 6.9+).
DATA_PATH = os.environ.get("H5MEMFS_DATA_PATH") or None
DEFAULT_DEADLINE = 45 * SLOWDOWN  # a test's time before the watchdog fires
SLOW_DEADLINE = 150 * SLOWDOWN    # ... for tests marked slow
START_TIMEOUT = 20 * SLOWDOWN
EXIT_TIMEOUT = 60 * SLOWDOWN

EXTRA_OPTIONS = [o for o in os.environ.get("H5MEMFS_TEST_OPTIONS",
                                          "").split(",") if o]

# Daemons started and not yet reaped, for the watchdog and the session end.
_live = []
_live_lock = threading.Lock()


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: the test takes more than 10 s")


class DaemonStartError(AssertionError):
    pass


class Mount:
    """One h5memfs daemon serving MOUNTPOINT.

    As a context manager: `with Mount(mp, src) as m:` starts it and
    finishes it (unmount and checks) on the way out.
    Mount(...).start() returns once the daemon wrote 'ready' to its notify
    pipe; it raises DaemonStartError if the daemon exits first or does not
    get ready in time. unmount()/umount()/sigterm() end it and return its
    exit status. finish() is the teardown: it ends the daemon if still
    running and raises if anything went wrong.
    """

    _count = 0

    def __init__(self, mountpoint, source=None, options=(), workdir=None,
                 allow_stderr=False, expect_exit=0, binary=None,
                 registry=None):
        Mount._count += 1
        self.n = Mount._count
        self.path = Path(mountpoint)
        self.source = Path(source) if source is not None else None
        self.options = list(options) + [o for o in EXTRA_OPTIONS
                                        if o not in options]
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="h5memfs-"))
        self.allow_stderr = allow_stderr
        self.expect_exit = expect_exit
        self.binary = Path(binary or DAEMON)
        self.proc = None
        self.returncode = None
        self.killed_by_watchdog = False
        self.start_failed = False
        self.stderr_path = self.workdir / f"daemon{self.n}.stderr"
        self.stdout_path = self.workdir / f"daemon{self.n}.stdout"
        # The list the fixture finishes at teardown; remounts join it.
        self.registry = registry if registry is not None else []
        self.registry.append(self)

    # --- start ------------------------------------------------------------

    def argv(self, notify_pipe):
        opts = [f"notify_pipe={notify_pipe}"] + self.options
        # H5MEMFS_DATA_PATH=passthrough|daemon runs the suite on one path.
        if DATA_PATH and not any(o.startswith("passthrough=") for o in opts):
            opts.append("passthrough=" +
                        ("on" if DATA_PATH == "passthrough" else "off"))
        argv = [str(self.binary), "-f", "-o", ",".join(opts)]
        if self.source is not None:
            argv.append(str(self.source))
        argv.append(str(self.path))
        return argv

    def start(self, timeout=START_TIMEOUT):
        if not self.binary.exists():
            pytest.fail(f"daemon not built: {self.binary} missing (build: "
                        f"cd {REPO} && meson setup build && ninja -C build)")
        fifo = self.workdir / f"ready{self.n}.fifo"
        os.mkfifo(fifo)
        rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        try:
            with open(self.stderr_path, "wb") as err, \
                    open(self.stdout_path, "wb") as out:
                self.proc = subprocess.Popen(
                    self.argv(fifo), stdin=subprocess.DEVNULL, stdout=out,
                    stderr=err, cwd="/")
            with _live_lock:
                _live.append(self)
            self._wait_ready(rfd, timeout)
        except BaseException:
            self.start_failed = True
            self.force_stop()
            raise
        finally:
            os.close(rfd)
        if not os.path.ismount(self.path):
            self.start_failed = True
            self.force_stop()
            raise DaemonStartError(
                f"daemon said ready but {self.path} is not a mount point")
        return self

    def _wait_ready(self, rfd, timeout):
        deadline = time.monotonic() + timeout
        poller = select.poll()
        poller.register(rfd, select.POLLIN)
        buf = b""
        while b"\n" not in buf:
            rc = self.proc.poll()
            if rc is not None:
                self._reap(rc)
                raise DaemonStartError(
                    f"daemon exited {rc} before ready: {self.argv('FIFO')}\n"
                    f"stderr: {self.stderr()}")
            if time.monotonic() > deadline:
                raise DaemonStartError(
                    f"daemon not ready after {timeout}s: "
                    f"{self.argv('FIFO')}\nstderr: {self.stderr()}")
            if not poller.poll(100):
                continue
            try:
                data = os.read(rfd, 64)
            except BlockingIOError:
                continue
            if not data:
                # The daemon closed the pipe without a line: a failed
                # start-up. Give it a moment to exit and report its status.
                try:
                    rc = self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    rc = None
                if rc is not None:
                    self._reap(rc)
                raise DaemonStartError(
                    f"daemon closed the notify pipe without 'ready' "
                    f"(exit {rc}): stderr: {self.stderr()}")
            buf += data
        if buf != b"ready\n":
            raise DaemonStartError(f"notify pipe said {buf!r}, not 'ready'")

    # --- state ------------------------------------------------------------

    @property
    def pid(self):
        return self.proc.pid

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stderr(self):
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stdout(self):
        try:
            return self.stdout_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def is_mounted(self):
        return bool(helpers.mounts_at(self.path))

    def __truediv__(self, rel):
        return self.path / rel

    def __enter__(self):
        return self if self.proc is not None else self.start()

    def __exit__(self, *exc):
        self.finish()
        return False

    # --- stop -------------------------------------------------------------

    def _reap(self, rc):
        self.returncode = rc
        with _live_lock:
            if self in _live:
                _live.remove(self)

    def wait(self, timeout=EXIT_TIMEOUT):
        """Wait for the daemon to exit; force it down and raise if it does
        not within timeout. Returns its exit status."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.force_stop()
            raise AssertionError(
                f"daemon did not exit within {timeout}s after the unmount "
                f"request; stderr: {self.stderr()}")
        self._reap(rc)
        return rc

    def unmount(self, timeout=EXIT_TIMEOUT):
        """fusermount3 -u, then wait for the daemon; return its status."""
        return self._unmount_with(["fusermount3", "-u", str(self.path)],
                                  timeout)

    def umount(self, timeout=EXIT_TIMEOUT):
        """umount(8) instead of fusermount3; return the daemon's status."""
        return self._unmount_with(["umount", str(self.path)], timeout)

    def _unmount_with(self, argv, timeout):
        if not self.running():
            raise AssertionError(
                f"daemon already exited ({self.proc.poll()}) before unmount;"
                f" stderr: {self.stderr()}")
        # A test's leftover open file makes the mount busy for a moment
        # (a child still exiting); retry briefly, then give up loudly.
        for _ in range(50):
            res = helpers.run(argv, timeout=30, check=False)
            if res.returncode == 0 or "busy" not in res.stderr:
                break
            time.sleep(0.1)
        if res.returncode != 0:
            self.force_stop()
            raise AssertionError(f"{argv} failed: {res.stderr}")
        return self.wait(timeout)

    def signal(self, sig, timeout=EXIT_TIMEOUT):
        """Send sig to the daemon; return its exit status."""
        os.kill(self.proc.pid, sig)
        return self.wait(timeout)

    def sigterm(self, timeout=EXIT_TIMEOUT):
        return self.signal(signal.SIGTERM, timeout)

    def remount(self, **kw):
        """A new Mount with the same SOURCE, MOUNTPOINT and options (this one
        must have exited), started."""
        assert not self.running(), "remount of a mount still running"
        args = dict(mountpoint=self.path, source=self.source,
                    options=self.options, workdir=self.workdir,
                    allow_stderr=self.allow_stderr,
                    expect_exit=self.expect_exit, binary=self.binary,
                    registry=self.registry)
        args.update(kw)
        return Mount(**args).start()

    def force_stop(self):
        """Lazy unmount, terminate, kill: never leave a stale mount."""
        if self.is_mounted():
            helpers.run(["fusermount3", "-u", "-z", str(self.path)],
                        timeout=10, check=False)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc is not None:
            self._reap(self.proc.returncode)
        if self.is_mounted():
            helpers.run(["umount", "-l", str(self.path)], timeout=10,
                        check=False)

    def finish(self):
        """Teardown: end the daemon if it still runs, then check its exit
        status, its output and that no mount is left. Raises on problems."""
        problems = []
        if self.proc is None or self.start_failed:
            return  # start() already raised with the daemon's story
        if self.running():
            try:
                self.unmount()
            except AssertionError as e:
                problems.append(str(e))
        if self.running() or self.is_mounted():
            self.force_stop()
            problems.append("daemon or mount still there at teardown")
        if self.killed_by_watchdog:
            problems.append("the test hung: the watchdog killed the daemon")
        rc = self.proc.returncode
        if rc != self.expect_exit:
            problems.append(f"daemon exit status {rc}, expected "
                            f"{self.expect_exit}")
        if not self.allow_stderr and self.stderr():
            problems.append(f"unexpected daemon stderr:\n{self.stderr()}")
        if self.stdout():
            problems.append(f"unexpected daemon stdout:\n{self.stdout()}")
        if problems:
            raise AssertionError(f"mount {self.path}: " + "\n".join(problems))


# --- fixtures ---------------------------------------------------------------

@pytest.fixture(autouse=True)
def _watchdog(request):
    """Kill the daemons of a test that runs past its deadline: the blocked
    FUSE requests then fail with ENOTCONN and the test fails instead of
    hanging the suite."""
    deadline = (SLOW_DEADLINE if request.node.get_closest_marker("slow")
                else DEFAULT_DEADLINE)
    with _live_lock:
        before = set(map(id, _live))

    def fire():
        with _live_lock:
            victims = [m for m in _live if id(m) not in before]
        for m in victims:
            m.killed_by_watchdog = True
            try:
                os.kill(m.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    timer = threading.Timer(deadline, fire)
    timer.daemon = True
    timer.start()
    yield
    timer.cancel()


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
    errors = []
    # Newest first: a remount holds the mount point of its predecessor.
    for m in reversed(made):
        try:
            m.finish()
        except AssertionError as e:
            errors.append(str(e))
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
    with _live_lock:
        left = list(_live)
    for m in left:
        m.force_stop()
