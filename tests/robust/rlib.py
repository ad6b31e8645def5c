"""Shared pieces of the robustness tests, beside the mount harness of every
suite (tests/lib/h5mount.py) and the integration suite's helpers
(tests/lib/helpers.py): directories that other users can traverse, running
a function as another user in a forked child, subprocesses that are always
killed on timeout, and checks that a daemon is still alive and answering.

This is not a test module and holds no fixtures (those are in conftest.py).
"""

import errno
import os
import pickle
import select
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

for p in (str(HERE), str(REPO / "tests" / "lib")):
    if p not in sys.path:
        sys.path.insert(0, p)

import h5mount  # noqa: E402  (tests/lib/h5mount.py)
import helpers  # noqa: E402  (tests/lib/helpers.py)
from h5mount import DAEMON, SLOWDOWN, Mount, run  # noqa: E402,F401

PYTHON = "/usr/bin/python3"

# The two data paths every data test runs on.
DATA_PATHS = ["passthrough=on", "passthrough=off"]

OTHER_UID = helpers.OTHER_UID
OTHER_GID = helpers.OTHER_GID


def open_dir(prefix, base="/tmp"):
    """A fresh directory under base that every user can traverse (pytest's
    tmp_path is 0700, which hides a mount from other uids)."""
    d = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    os.chmod(d, 0o755)
    return d


class Child:
    """A subprocess started with Popen that is killed (by its PID, with
    its process group) when the test ends, whatever the outcome."""

    def __init__(self, argv, **kw):
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        kw.setdefault("start_new_session", True)
        self.argv = argv
        self.proc = subprocess.Popen(argv, **kw)

    def wait(self, timeout):
        """Wait; on timeout kill and raise AssertionError."""
        try:
            out, err = self.proc.communicate(timeout=timeout * SLOWDOWN)
        except subprocess.TimeoutExpired:
            self.kill()
            try:
                out, err = self.proc.communicate(timeout=3)
            except (subprocess.TimeoutExpired, ValueError):
                # Unkillable for now: blocked in a FUSE request that its
                # daemon already read (the kernel then waits for the
                # answer). It goes when that daemon answers or dies.
                out, err = b"", b"(still blocked after SIGKILL)"
            raise AssertionError(
                f"{self.argv} did not finish in {timeout}s (killed)\n"
                f"stdout: {_text(out)[-3000:]}\nstderr: {_text(err)[-3000:]}")
        return self.proc.returncode, _text(out), _text(err)

    def kill(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                pass  # blocked in a FUSE request its daemon has read


def _text(b):
    if b is None:
        return ""
    return b.decode(errors="replace") if isinstance(b, bytes) else b


def as_user(fn, uid=OTHER_UID, gid=OTHER_GID, groups=(), timeout=20):
    """Run fn() in a forked child with real, effective and saved ids set to
    uid/gid; return ('ok', value) or ('err', errno). The child's result
    comes back pickled through a pipe."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: no Python cleanup, just the answer and _exit
        try:
            os.close(r)
            os.setgroups(list(groups))
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            try:
                res = ("ok", fn())
            except OSError as e:
                res = ("err", e.errno)
            except BaseException:
                res = ("exc", traceback.format_exc())
            data = pickle.dumps(res)
            os.write(w, data)
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    deadline = time.monotonic() + timeout * SLOWDOWN
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                os.kill(pid, signal.SIGKILL)
                raise AssertionError(f"child as uid {uid} timed out")
            chunk = os.read(r, 65536)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    res = pickle.loads(data)
    if res[0] == "exc":
        raise AssertionError(f"child as uid {uid} raised:\n{res[1]}")
    return res


def as_user_errno(fn, **kw):
    """0 when fn() succeeds as the other user, else its errno."""
    res = as_user(fn, **kw)
    return 0 if res[0] == "ok" else res[1]


def daemon_answers(m, timeout=10):
    """The daemon is alive and serves a stat and a readdir of the root
    within timeout (checked from a child process, so that a hung request
    does not hang the test)."""
    assert m.running(), (f"daemon died (exit {m.proc.poll()}); "
                         f"stderr: {m.stderr()}")
    code = ("import os,sys; os.stat(sys.argv[1]); os.listdir(sys.argv[1]);"
            "print('ok')")
    c = Child([PYTHON, "-c", code, str(m.path)])
    rc, out, err = c.wait(timeout)
    assert rc == 0 and out.strip() == "ok", f"mount not answering: {err}"
    assert m.running(), f"daemon died; stderr: {m.stderr()}"


def errname(n):
    return helpers.errname(n)


def eno(fn, *a, **kw):
    """errno of fn(*a), 0 when it succeeds (fds it returns are closed)."""
    try:
        res = fn(*a, **kw)
        if fn is os.open and isinstance(res, int):
            os.close(res)
        return 0
    except OSError as e:
        return e.errno


E = errno


def err(fn, *a, **kw):
    """'OK' when fn(*a, **kw) succeeds (an fd it returns is closed), else
    the errno's name, e.g. 'EEXIST': asserts then read as the man page."""
    return errname(eno(fn, *a, **kw))


# --- syscalls Python's os module does not expose fully ----------------------

import ctypes  # noqa: E402

_libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def utimensat(path, atime, mtime, follow=True):
    """utimensat(2); atime/mtime: (sec, nsec), UTIME_NOW or UTIME_OMIT, or
    None for both UTIME_NOW (a NULL times pointer)."""
    fn = _libc.utimensat
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p,
                   ctypes.c_int]
    flags = 0 if follow else AT_SYMLINK_NOFOLLOW
    if atime is None and mtime is None:
        ptr = None
    else:
        ts = (_Timespec * 2)()
        for i, t in enumerate((atime, mtime)):
            if t in (UTIME_NOW, UTIME_OMIT):
                ts[i].tv_sec, ts[i].tv_nsec = 0, t
            else:
                ts[i].tv_sec, ts[i].tv_nsec = t
        ptr = ctypes.addressof(ts)
    if fn(AT_FDCWD, os.fsencode(path), ptr, flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), str(path))


def getxattr_sized(path, name, size):
    """getxattr(2) with a buffer of `size` bytes (0: ask the length).
    Returns the value (or its length when size is 0)."""
    fn = _libc.getxattr
    fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p,
                   ctypes.c_size_t]
    fn.restype = ctypes.c_ssize_t
    buf = ctypes.create_string_buffer(max(size, 1))
    n = fn(os.fsencode(path), name.encode(), buf if size else None, size)
    if n < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), str(path))
    return buf.raw[:n] if size else n


def listxattr_sized(path, size):
    fn = _libc.listxattr
    fn.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]
    fn.restype = ctypes.c_ssize_t
    buf = ctypes.create_string_buffer(max(size, 1))
    n = fn(os.fsencode(path), buf if size else None, size)
    if n < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), str(path))
    return buf.raw[:n] if size else n


def st_ns(path, follow=True):
    """(atime, mtime, ctime) in ns."""
    st = os.stat(path, follow_symlinks=follow)
    return st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns
