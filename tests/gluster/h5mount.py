"""One h5memfs daemon for the GlusterFS tests and the GlusterFS bench.

Self-contained (no pytest): H5Mount(source, mountpoint, options).start()
runs `h5memfs -f -o notify_pipe=FIFO,...`, waits for "ready", and
finish() unmounts it (fusermount3 -u, then -uz) and waits for the daemon,
whose PID is the only one it ever signals. Every subprocess has a timeout.
"""

import json
import os
import select
import signal
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _built(rel, env):
    if os.environ.get(env):
        return Path(os.environ[env]).absolute()
    build = Path(os.environ.get("H5MEMFS_BUILD", REPO / "build"))
    return (build / rel).absolute()


DAEMON = _built("src/h5memfs", "H5MEMFS")
SCRATCH = _built("mount-helpers/h5memfs-scratch", "H5MEMFS_SCRATCH_TOOL")

SLOWDOWN = float(os.environ.get("H5MEMFS_TEST_SLOWDOWN", "1"))
START_TIMEOUT = 20 * SLOWDOWN
EXIT_TIMEOUT = 60 * SLOWDOWN


def run(argv, timeout=60, check=True, **kw):
    """subprocess.run with a timeout always set and text output captured."""
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    kw.setdefault("stdin", subprocess.DEVNULL)
    kw.setdefault("text", True)
    res = subprocess.run([str(a) for a in argv], timeout=timeout * SLOWDOWN,
                         **kw)
    if check and res.returncode != 0:
        raise AssertionError(
            f"{argv} exited {res.returncode}\nstdout: {res.stdout}\n"
            f"stderr: {res.stderr}")
    return res


def mounted(path):
    """Is path a mount point in /proc/mounts? (never stats the path, so a
    dead FUSE mount does not hang the question)"""
    path = os.path.abspath(path)
    with open("/proc/mounts") as f:
        for line in f:
            fields = line.split()
            mnt = fields[1].encode().decode("unicode_escape")
            if mnt == path:
                return True
    return False


class H5Mount:
    count = 0

    def __init__(self, source, mountpoint, options=(), workdir=None,
                 binary=None):
        H5Mount.count += 1
        self.n = H5Mount.count
        self.source = Path(source)
        self.path = Path(mountpoint)
        self.options = list(options)
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="h5memfs-gl-"))
        self.binary = Path(binary or DAEMON)
        self.proc = None
        self.returncode = None
        self.stderr_path = self.workdir / f"h5memfs{self.n}.stderr"

    def __truediv__(self, rel):
        return self.path / rel

    def __repr__(self):
        return f"<h5memfs {self.source} on {self.path}>"

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

    def start(self, timeout=START_TIMEOUT):
        if not self.binary.exists():
            raise AssertionError(f"h5memfs not built: {self.binary} missing "
                                 f"(cd {REPO} && ninja -C build)")
        self.path.mkdir(parents=True, exist_ok=True)
        fifo = self.workdir / f"ready{self.n}.fifo"
        os.mkfifo(fifo)
        rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        try:
            opts = ",".join([f"notify_pipe={fifo}"] + self.options)
            with open(self.stderr_path, "wb") as err:
                self.proc = subprocess.Popen(
                    [str(self.binary), "-f", "-o", opts, str(self.source),
                     str(self.path)], stdin=subprocess.DEVNULL,
                    stdout=err, stderr=err, cwd="/")
            deadline = time.monotonic() + timeout
            buf = b""
            while not buf.endswith(b"\n"):
                if self.proc.poll() is not None:
                    raise AssertionError(
                        f"h5memfs exited {self.proc.returncode} before ready:"
                        f" {self.stderr()}")
                if time.monotonic() > deadline:
                    raise AssertionError(f"h5memfs not ready after {timeout}"
                                         f" s: {self.stderr()}")
                r, _, _ = select.select([rfd], [], [], 0.1)
                if r:
                    try:
                        data = os.read(rfd, 64)
                    except BlockingIOError:
                        continue
                    if not data:
                        time.sleep(0.05)
                        continue
                    buf += data
            if buf != b"ready\n":
                raise AssertionError(f"notify pipe said {buf!r}")
        except BaseException:
            self.force_stop()
            raise
        finally:
            os.close(rfd)
            fifo.unlink()
        return self

    def __enter__(self):
        return self if self.proc else self.start()

    def __exit__(self, *exc):
        self.finish()
        return False

    def unmount(self, timeout=EXIT_TIMEOUT):
        """fusermount3 -u (retried while busy), then wait for the daemon's
        exit; returns its exit status. Forces it down on failure."""
        res = None
        for _ in range(50):
            res = run(["fusermount3", "-u", self.path], timeout=timeout,
                      check=False)
            if res.returncode == 0 or "busy" not in res.stderr:
                break
            time.sleep(0.1)
        if res.returncode != 0 and mounted(self.path):
            self.force_stop()
            raise AssertionError(f"fusermount3 -u {self.path}: {res.stderr}")
        return self.wait(timeout)

    def wait(self, timeout=EXIT_TIMEOUT):
        try:
            self.returncode = self.proc.wait(timeout * SLOWDOWN)
        except subprocess.TimeoutExpired:
            self.force_stop()
            raise AssertionError(f"h5memfs did not exit within {timeout} s "
                                 f"of its unmount: {self.stderr()}")
        return self.returncode

    def force_stop(self):
        """Lazy unmount, then SIGTERM, SIGKILL to our daemon's PID."""
        if mounted(self.path):
            run(["fusermount3", "-uz", self.path], timeout=20, check=False)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc is not None:
            self.returncode = self.proc.returncode
        if mounted(self.path):
            run(["umount", "-l", self.path], timeout=20, check=False)

    def kill(self):
        """SIGKILL our daemon (the watchdog): blocked requests then fail."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()

    def finish(self, expect_exit=0):
        """Unmount if still mounted; raise if the exit status is not
        expect_exit or a mount is left."""
        problems = []
        if self.proc is None:
            return
        if self.running():
            try:
                self.unmount()
            except AssertionError as e:
                problems.append(str(e))
        if self.running() or mounted(self.path):
            self.force_stop()
            problems.append("daemon or mount still there at the end")
        if self.returncode != expect_exit:
            problems.append(f"daemon exit status {self.returncode}, "
                            f"expected {expect_exit}")
        if problems:
            raise AssertionError(f"{self}: " + "; ".join(problems) +
                                 f"\ndaemon log:\n{self.stderr()}")

    # --- the control commands ---------------------------------------------

    def status(self):
        res = run([self.binary, "status", self.path, "--json", "--all",
                   "--hdf5"], timeout=30)
        return json.loads(res.stdout)

    def file_status(self, rel):
        for f in self.status()["files"]:
            if f["path"] == rel:
                return f
        return None

    def sync(self, *paths, check=False):
        return run([self.binary, "sync", self.path,
                    *[self.path / p for p in paths]], timeout=120,
                   check=check)
