"""Shared tools for the acceptance tests of issues #3 (safe write-back:
validation, dirty pages, conflicts, errors, crashes, commit) and #4
(memory budget, preload, status/sync/discard/evict commands).

Not a test module. Fixtures defined here are imported by the test modules
that use them (`from acceptance import xfs, small_tmpfs`), since conftest.py
belongs to the base suite.
"""

import contextlib
import ctypes
import errno
import json
import os
import re
import select
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

import h5mount
import helpers

DAEMON = h5mount.DAEMON
SLOWDOWN = h5mount.SLOWDOWN

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


# --- the commands -------------------------------------------------------

def cli(*args, user=None, timeout=60, check=False):
    """Run `h5memfs ARGS...` (stderr a pipe: never a terminal); return the
    CompletedProcess. user="nobody" runs it as uid/gid 65534."""
    argv = [str(DAEMON), *map(str, args)]
    if user == "nobody":
        argv = NOBODY + argv
    return helpers.run(argv, timeout=timeout, check=check)


def status(mnt):
    """`h5memfs status MNT --json --all --hdf5` (every file, with what
    libhdf5 sees in those in memory), parsed.

    A status taken while a file's document changes between the command's
    two getxattr calls fails with ERANGE (a known daemon/CLI bug, tested
    on its own in test_commands.py); here it is retried so that tests
    about something else do not fail on it."""
    for _ in range(5):
        res = cli("status", mnt.path if hasattr(mnt, "path") else mnt,
                  "--json", "--all", "--hdf5")
        if res.returncode == 0 or "out of range" not in res.stderr:
            break
    assert res.returncode == 0, \
        f"status exited {res.returncode}: {res.stderr}"
    try:
        return json.loads(res.stdout)
    except ValueError as e:
        raise AssertionError(f"status --json is not JSON ({e}):\n"
                             f"{res.stdout}")


def file_status(mnt, rel):
    """The `files` entry of rel in the mount's status."""
    doc = status(mnt)
    for f in doc["files"]:
        if f["path"] == rel:
            return f
    raise AssertionError(f"{rel} not in status files: "
                         f"{[f['path'] for f in doc['files']]}")


def mount_status(mnt):
    return status(mnt)["mount"]


def expected_data_path():
    """'passthrough', 'daemon' or None (auto) as the suite was asked."""
    return h5mount.DATA_PATH


# --- waiting --------------------------------------------------------------

def wait_until(pred, timeout=10, interval=0.05, what="condition"):
    """Poll pred() until it is true; return its value or fail."""
    deadline = time.monotonic() + timeout * SLOWDOWN
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting "
                                 f"for {what}")
        time.sleep(interval)


# --- file operations ------------------------------------------------------

def fsync_path(path):
    """open + fsync + close; returns 0 or the errno of fsync."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        return 0
    except OSError as e:
        return e.errno
    finally:
        os.close(fd)


def pwrite_fsync(path, data, offset=0):
    """Write data at offset and fsync on the same descriptor; raises the
    OSError of whichever step fails."""
    fd = os.open(path, os.O_RDWR)
    try:
        os.pwrite(fd, data, offset)
        os.fsync(fd)
    finally:
        os.close(fd)


def write_through(path, data, offset=0, truncate=False):
    """Write data into an existing file of the mount and close it."""
    fd = os.open(path, os.O_RDWR | (os.O_TRUNC if truncate else 0))
    try:
        os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


def errno_name(e):
    return errno.errorcode.get(e, str(e)) if e else "OK"


def hostname_candidates():
    host = socket.gethostname()
    return {host, host.split(".")[0]}


def conflict_regex(stem, ext, seq=False):
    """The conflict name STEM.conflict-HOST-YYYYmmdd-HHMMSS[-N].EXT."""
    hosts = "|".join(re.escape(h) for h in hostname_candidates())
    return re.compile(rf"^{re.escape(stem)}\.conflict-(?:{hosts})-"
                      rf"(\d{{8}}-\d{{6}})" + (r"-(\d+)" if seq else "") +
                      rf"{re.escape(ext)}$")


def conflict_files(directory, stem, ext):
    rx = conflict_regex(stem, ext)
    rx_seq = conflict_regex(stem, ext, seq=True)
    return sorted(n for n in os.listdir(directory)
                  if rx.match(n) or rx_seq.match(n))


def random_bytes(n, seed=1):
    import numpy as np
    return np.random.default_rng(seed).bytes(n)


def make_hdf5(path, n=20000, libver=None, userblock=0):
    """A small valid HDF5 file with a few objects."""
    import h5py
    import numpy as np
    kw = {}
    if libver:
        kw["libver"] = libver
    if userblock:
        kw["userblock_size"] = userblock
    with h5py.File(path, "w", **kw) as f:
        f["ints"] = np.arange(n, dtype="i8")
        g = f.create_group("grp")
        g.attrs["note"] = "valid"
        g.create_dataset("chunked", data=np.ones((64, 64)), chunks=(16, 16),
                         compression="gzip")


def h5_readable(path):
    """True when h5py opens path read-only and reads its datasets."""
    r = helpers.run_python(
        "import h5py, sys\n"
        "with h5py.File(sys.argv[1], 'r') as f:\n"
        "    f.visititems(lambda n, o: o[()] if hasattr(o, 'dtype') "
        "else None)\n", path, check=False)
    return r.returncode == 0


def daemon_lines(m):
    return [ln for ln in m.stderr().splitlines() if ln.strip()]


def assert_no_libhdf5_noise(m):
    """The daemon's log holds its own lines, not libhdf5 error stacks."""
    noise = [ln for ln in daemon_lines(m)
             if "HDF5-DIAG" in ln or ln.lstrip().startswith(("#0", "major:",
                                                             "minor:"))]
    assert not noise, ("libhdf5 printed its error stack into the daemon's "
                       "log:\n" + "\n".join(noise[:12]))


# --- privileged scaffolding: loop filesystems and small tmpfs ---------------

def _run(argv, check=True, timeout=60):
    return helpers.run(argv, timeout=timeout, check=check)


def _umount(path):
    for _ in range(20):
        if not helpers.mounts_at(path):
            return
        res = _run(["umount", str(path)], check=False)
        if res.returncode == 0:
            return
        time.sleep(0.1)
    _run(["umount", "-l", str(path)], check=False)


@contextlib.contextmanager
def loop_filesystem(kind, size_mib, workdir):
    """A fresh filesystem of `kind` ('xfs' with reflink, or 'ext4') on a
    loop device backed by a sparse file in workdir. Yields (mountpoint,
    loop device name such as 'loop3'). Unmounted and detached in every
    outcome."""
    img = Path(workdir) / f"{kind}.img"
    mp = Path(workdir) / f"{kind}-mnt"
    mp.mkdir()
    with open(img, "wb") as f:
        f.truncate(size_mib << 20)
    if kind == "xfs":
        _run(["mkfs.xfs", "-q", "-f", "-m", "reflink=1", str(img)])
    else:
        _run(["mkfs.ext4", "-q", "-F", str(img)])
    dev = _run(["losetup", "-f", "--show", str(img)]).stdout.strip()
    try:
        _run(["mount", dev, str(mp)])
        try:
            yield mp, os.path.basename(dev)
        finally:
            _umount(mp)
    finally:
        _run(["losetup", "-d", dev], check=False)
        img.unlink(missing_ok=True)


def sectors_written(loopname):
    """Field 7 of /sys/block/loopN/stat: 512-byte sectors written."""
    with open(f"/sys/block/{loopname}/stat") as f:
        return int(f.read().split()[6])


def device_bytes_written(loopname, action):
    """Bytes the device took while action() ran and `sync` flushed."""
    os.sync()
    before = sectors_written(loopname)
    action()
    os.sync()
    return (sectors_written(loopname) - before) * 512


@contextlib.contextmanager
def tmpfs_mount(workdir, size="2M", name="smallfs"):
    """A small tmpfs mounted in workdir; yields its path. Remounted
    read-write if needed, then unmounted, in every outcome."""
    mp = Path(workdir) / name
    mp.mkdir()
    _run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755",
          "tmpfs", str(mp)])
    try:
        yield mp
    finally:
        _run(["chattr", "-R", "-i", str(mp)], check=False)
        _umount(mp)


def remount(path, how):
    _run(["mount", "-o", f"remount,{how}", str(path)])


@pytest.fixture
def xfs(tmp_path):
    """(mountpoint, loopname) of a fresh 1 GiB XFS with reflink."""
    with loop_filesystem("xfs", 1024, tmp_path) as fs:
        yield fs


@pytest.fixture
def ext4(tmp_path):
    """(mountpoint, loopname) of a fresh 512 MiB ext4 (no reflink)."""
    with loop_filesystem("ext4", 512, tmp_path) as fs:
        yield fs


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 2 MiB tmpfs; SOURCE is its subdirectory 'src' so that filler
    files can sit beside SOURCE, outside the mount's view."""
    with tmpfs_mount(tmp_path, "2M") as mp:
        (mp / "src").mkdir()
        yield mp


@pytest.fixture
def rescue_dir(tmp_path):
    d = tmp_path / "rescue"
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def public_dir():
    """A directory every user may traverse (pytest's tmp_path is 0700),
    for mounts that another user must reach."""
    d = Path(tempfile.mkdtemp(prefix="h5memfs-pub-"))
    os.chmod(d, 0o755)
    yield d
    for sub in d.iterdir():
        if helpers.mounts_at(sub):
            _run(["umount", "-l", str(sub)], check=False)
    shutil.rmtree(d, ignore_errors=True)


def fill(path, nbytes):
    """Write nbytes of zeros... as real data (tmpfs counts it)."""
    with open(path, "wb") as f:
        f.write(b"\xa5" * nbytes)


def run_as_child(argv, **kw):
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, **kw)


def chattr_i(path, on):
    """Make a file or directory immutable (chattr +i) or not again."""
    _run(["chattr", "+i" if on else "-i", str(path)])


# --- stepping in between two SOURCE calls of the daemon -----------------

class _FanEvent(ctypes.Structure):
    _fields_ = [("event_len", ctypes.c_uint32), ("vers", ctypes.c_uint8),
                ("reserved", ctypes.c_uint8),
                ("metadata_len", ctypes.c_uint16),
                ("mask", ctypes.c_uint64), ("fd", ctypes.c_int32),
                ("pid", ctypes.c_int32)]


@contextlib.contextmanager
def on_open_of(mountpoint, prefix, action):
    """While in the block, the first open(2) on the filesystem mounted at
    `mountpoint` of a file whose name starts with `prefix` waits until
    action() has run (fanotify FAN_OPEN_PERM, root): a deterministic way
    to change SOURCE between two calls the daemon makes. Yields a list
    that gets the opened path. Skips where the kernel lacks permission
    events."""
    libc = ctypes.CDLL(None, use_errno=True)
    FAN_CLOEXEC, FAN_CLASS_CONTENT = 0x1, 0x4
    FAN_MARK_ADD, FAN_MARK_MOUNT = 0x1, 0x10
    FAN_OPEN_PERM, FAN_ALLOW = 0x10000, 0x1
    fan = libc.fanotify_init(FAN_CLOEXEC | FAN_CLASS_CONTENT,
                             os.O_RDONLY | os.O_LARGEFILE)
    if fan < 0:
        pytest.skip("fanotify: " + os.strerror(ctypes.get_errno()))
    if libc.fanotify_mark(fan, FAN_MARK_ADD | FAN_MARK_MOUNT,
                          ctypes.c_uint64(FAN_OPEN_PERM), -100,
                          str(mountpoint).encode()) < 0:
        e = ctypes.get_errno()
        os.close(fan)
        pytest.skip("fanotify permission events: " + os.strerror(e))
    seen, stop = [], threading.Event()

    def serve():
        size = ctypes.sizeof(_FanEvent)
        while not stop.is_set():
            r, _, _ = select.select([fan], [], [], 0.05)
            if not r:
                continue
            buf = os.read(fan, 64 * size)
            for off in range(0, len(buf), size):
                ev = _FanEvent.from_buffer_copy(buf, off)
                try:
                    path = os.readlink(f"/proc/self/fd/{ev.fd}")
                    if (not seen and
                            os.path.basename(path).startswith(prefix)):
                        seen.append(path)
                        action()
                finally:
                    os.write(fan, struct.pack("iI", ev.fd, FAN_ALLOW))
                    os.close(ev.fd)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield seen
    finally:
        stop.set()
        t.join(10)
        os.close(fan)  # answers whatever is left: allowed
