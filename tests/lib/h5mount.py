"""The mount harness of every h5memfs mount test (tests/integration,
tests/robust, tests/gluster) and of bench/gluster_workflow.py: a Mount
that starts the daemon in the foreground, waits for its readiness line on
a FIFO and always unmounts; commands run with a timeout; and the register
of live daemons that the suites' watchdogs and session ends go through.

No pytest here: the suites' conftest.py files make fixtures of it, and a
plain script can use it too.

The daemon is $H5MEMFS, or $H5MEMFS_BUILD/src/h5memfs, or
<repo>/build/src/h5memfs. $H5MEMFS_TEST_SLOWDOWN scales every timeout.
$H5MEMFS_DATA_PATH=passthrough|daemon runs every mount on one data path
(unless the mount's options choose one); $H5MEMFS_TEST_OPTIONS
(comma-separated) adds other options to every mount, e.g.
increment=4K,page_size=4K.

Hygiene: a Mount ends in every outcome: fusermount3 -u (retried while
busy), a wait for the daemon's exit; on any failure fusermount3 -u -z,
SIGTERM, SIGKILL, by the daemon's own PID, and umount -l as a last resort.
"""

import json
import os
import select
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def built(rel, env):
    """$env, else $H5MEMFS_BUILD/rel, else <repo>/build/rel; absolute, since
    the daemon runs with / as its working directory."""
    if os.environ.get(env):
        return Path(os.environ[env]).absolute()
    build = Path(os.environ.get("H5MEMFS_BUILD", REPO / "build"))
    return (build / rel).absolute()


DAEMON = built("src/h5memfs", "H5MEMFS")
SCRATCH = built("src/scratch/h5memfs-scratch", "H5MEMFS_SCRATCH_TOOL")

# HDF5 file locking must stay on, as by default.
os.environ.pop("HDF5_USE_FILE_LOCKING", None)

# Multiplies every timeout and deadline: for a busy machine, or a daemon
# under valgrind or a sanitizer.
SLOWDOWN = float(os.environ.get("H5MEMFS_TEST_SLOWDOWN", "1"))

# The data path under test: "passthrough", "daemon", or None for the
# daemon's own choice (auto: passthrough as root on Linux 6.9+).
DATA_PATH = os.environ.get("H5MEMFS_DATA_PATH") or None
START_TIMEOUT = 20 * SLOWDOWN
EXIT_TIMEOUT = 60 * SLOWDOWN

EXTRA_OPTIONS = [o for o in os.environ.get("H5MEMFS_TEST_OPTIONS",
                                          "").split(",") if o]


def run(argv, timeout=60, check=True, **kw):
    """subprocess.run with a timeout always set (seconds, multiplied by
    H5MEMFS_TEST_SLOWDOWN) and text output captured."""
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    kw.setdefault("stdin", subprocess.DEVNULL)
    kw.setdefault("text", True)
    argv = [a if isinstance(a, (str, bytes)) else str(a) for a in argv]
    res = subprocess.run(argv, timeout=timeout * SLOWDOWN, **kw)
    if check and res.returncode != 0:
        raise AssertionError(
            f"{argv} exited {res.returncode}\nstdout: {res.stdout}\n"
            f"stderr: {res.stderr}")
    return res


def mounts_at(path):
    """Lines of /proc/mounts (split) whose mount point is path. Never stats
    path itself, so a dead FUSE mount does not hang the question."""
    path = os.path.realpath(path)
    out = []
    with open("/proc/mounts") as f:
        for line in f:
            fields = line.split()
            mp = fields[1].replace("\\040", " ")
            if mp == path:
                out.append(fields)
    return out


def mounted(path):
    return bool(mounts_at(path))


# --- what is running: for the watchdogs and the session ends ----------------

# Daemons (Mounts) started and not yet reaped, and other processes a test
# asked to be killed with them (track()). Each has kill().
_live = []
_live_lock = threading.Lock()


def track(proc):
    """Let the watchdog SIGKILL this Popen (started by the test) too."""
    with _live_lock:
        _live.append(proc)
    return proc


def untrack(x):
    with _live_lock:
        if x in _live:
            _live.remove(x)


class Watchdog:
    """`with Watchdog(seconds) as w:` around a test: past the deadline,
    SIGKILL every daemon started (and process tracked) since it began, so
    that their blocked FUSE requests fail with ENOTCONN and the test fails
    instead of hanging the suite. w.fired tells whether it did. The deadline
    is used as given (the caller scales it by SLOWDOWN)."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.fired = False

    def __enter__(self):
        with _live_lock:
            self.before = set(map(id, _live))
        self.timer = threading.Timer(self.seconds, self._fire)
        self.timer.daemon = True
        self.timer.start()
        return self

    def _fire(self):
        self.fired = True
        with _live_lock:
            victims = [x for x in _live if id(x) not in self.before]
        for x in victims:
            try:
                x.kill()
            except (ProcessLookupError, OSError):
                pass

    def __exit__(self, *exc):
        self.timer.cancel()
        # Tracked processes are the test's: forget them with it.
        with _live_lock:
            _live[:] = [x for x in _live
                        if id(x) in self.before or isinstance(x, Mount)]
        return False


def stop_all():
    """Last line of defence at the end of a session: no daemon and no mount
    outlives it, no tracked process either."""
    with _live_lock:
        left = list(_live)
    for x in left:
        if isinstance(x, Mount):
            x.force_stop()
        else:
            try:
                x.kill()
            except OSError:
                pass


# --- one daemon -------------------------------------------------------------

class DaemonStartError(AssertionError):
    pass


class Mount:
    """One h5memfs daemon serving MOUNTPOINT (which must exist).

    As a context manager: `with Mount(mp, src) as m:` starts it and
    finishes it (unmount and checks) on the way out.
    Mount(...).start() returns once the daemon wrote 'ready' to its notify
    pipe; it raises DaemonStartError if the daemon exits first or does not
    get ready in time. unmount()/umount()/sigterm() end it and return its
    exit status. finish() is the teardown: it ends the daemon if still
    running and raises if anything went wrong: an exit status other than
    expect_exit, output on stdout, output on stderr unless allow_stderr, a
    mount left behind.
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

    def __repr__(self):
        return f"<h5memfs {self.source} on {self.path}>"

    # --- start ------------------------------------------------------------

    def argv(self, notify_pipe):
        opts = [f"notify_pipe={notify_pipe}"] + self.options
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
            raise DaemonStartError(
                f"daemon not built: {self.binary} missing (build: "
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
            fifo.unlink()
        if not mounted(self.path):
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
                # start-up. Give it time to exit and report its status.
                try:
                    rc = self.proc.wait(10 * SLOWDOWN)
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
        return self.proc.pid if self.proc else None

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
        return mounted(self.path)

    def __truediv__(self, rel):
        return self.path / rel

    def __enter__(self):
        return self if self.proc is not None else self.start()

    def __exit__(self, *exc):
        self.finish()
        return False

    # --- the control commands ---------------------------------------------

    def status(self):
        """`h5memfs status MNT --json`, parsed."""
        res = run([self.binary, "status", self.path, "--json", "--all",
                   "--hdf5"], timeout=30)
        return json.loads(res.stdout)

    def file_status(self, rel):
        for f in self.status()["files"]:
            if f["path"] == rel:
                return f
        return None

    def sync(self, *paths, check=False):
        """`h5memfs sync MNT [PATHS]` (paths relative to the mount)."""
        return run([self.binary, "sync", self.path,
                    *[self.path / p for p in paths]], timeout=120,
                   check=check)

    # --- stop -------------------------------------------------------------

    def _reap(self, rc):
        self.returncode = rc
        untrack(self)

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
        # (a child still exiting): retry until the deadline, then give up
        # loudly.
        deadline = time.monotonic() + 5 * SLOWDOWN
        while True:
            res = run(argv, timeout=30, check=False)
            if (res.returncode == 0 or "busy" not in res.stderr
                    or time.monotonic() > deadline):
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

    def kill(self):
        """SIGKILL the daemon (the watchdog's way): blocked requests then
        fail with ENOTCONN."""
        self.killed_by_watchdog = True
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)

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
            run(["fusermount3", "-u", "-z", str(self.path)], timeout=10,
                check=False)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5 * SLOWDOWN)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10 * SLOWDOWN)
        if self.proc is not None:
            self._reap(self.proc.returncode)
        if self.is_mounted():
            run(["umount", "-l", str(self.path)], timeout=10, check=False)

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
            msg = f"mount {self.path}: " + "\n".join(problems)
            if self.allow_stderr and self.stderr():
                msg += f"\ndaemon log:\n{self.stderr()[-5000:]}"
            raise AssertionError(msg)


def finish_all(mounts):
    """Finish every Mount of a fixture, newest first (a remount holds the
    mount point of its predecessor); return the problems found."""
    errors = []
    for m in reversed(mounts):
        try:
            m.finish()
        except AssertionError as e:
            errors.append(str(e))
    return errors
