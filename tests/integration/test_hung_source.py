"""A SOURCE that hangs never stalls the whole mount.

SOURCE here is a FUSE filesystem of our own, bench/slowfs (a passthrough
that caches nothing: timeout=0), and SIGSTOP of its daemon makes every
call on SOURCE block, as a dead NFS server does. While it hangs:

- the write-back of one file (fsync, sync) blocks in SOURCE; reads,
  writes, stat and listings of other loaded files, and writes to that
  same file, still answer at once;
- more fsyncs than the daemon has workers wait for SOURCE, and a `cat`
  of a loaded file and an `ls` still answer;
- after SIGTERM the final write-back waits for SOURCE, and processes
  using the mount get answers (reads of loaded files; changes are
  refused with EROFS) until it ends; it ends with status 0 once SOURCE
  answers again.

Every program the tests run on the mount is a child process with a
deadline (scaled by H5MEMFS_TEST_SLOWDOWN): a hang fails the test, never
hangs the suite.
"""
import contextlib
import errno
import os
import signal
import subprocess
import sys
import time

import pytest

import h5mount
import helpers
from acceptance import SLOWDOWN

SLOWFS = h5mount.built("bench/slowfs", "H5MEMFS_SLOWFS")
# Time a request that needs no SOURCE gets while SOURCE hangs.
PROMPT = 3 * SLOWDOWN


class SlowFS:
    """bench/slowfs over `under`, mounted at `path`; stop() hangs it."""

    def __init__(self, under, path):
        self.path = path
        self.stopped = False
        self.proc = subprocess.Popen(
            [str(SLOWFS), "-f", "-o", "delay_us=0,timeout=0", str(under),
             str(path)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE)
        h5mount.track(self.proc)
        deadline = time.monotonic() + 20 * SLOWDOWN
        while not h5mount.mounted(path):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.end()
                pytest.fail(f"slowfs did not mount: "
                            f"{self.proc.stderr.read()}")
            time.sleep(0.05)

    def stop(self):
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.stopped = True

    def cont(self):
        if self.stopped:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.stopped = False

    def end(self):
        """Answer again, unmount, and wait for the daemon."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
        if h5mount.mounted(self.path):
            h5mount.run(["fusermount3", "-u", "-z", str(self.path)],
                        timeout=10, check=False)
        try:
            self.proc.wait(10 * SLOWDOWN)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10 * SLOWDOWN)
        h5mount.untrack(self.proc)


@pytest.fixture
def slow(tmp_path):
    """(under, slowfs): slowfs over the directory `under`; ended (answering
    again, unmounted) after every h5memfs mount of the test."""
    if not SLOWFS.exists():
        pytest.skip(f"{SLOWFS} not built")
    under = tmp_path / "under"
    under.mkdir()
    mp = tmp_path / "slow"
    mp.mkdir()
    s = SlowFS(under, mp)
    yield under, s
    s.end()


def spawn(code, *args):
    """A Python child running `code` with argv[1:] = args."""
    p = subprocess.Popen([sys.executable, "-c", code, *map(str, args)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, text=True)
    return h5mount.track(p)


def finish(p, timeout, what):
    """Wait for a child; its stdout. Fails (killing it) past timeout."""
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        pytest.fail(f"{what} did not answer within {timeout:.0f} s while "
                    f"SOURCE hangs")
    assert p.returncode == 0, f"{what}: {err}"
    return out


def prompt(code, *args, what, timeout=None):
    t = time.monotonic()
    out = finish(spawn(code, *args), timeout or PROMPT, what)
    return out, time.monotonic() - t


FSYNC = ("import os, sys\n"
         "fd = os.open(sys.argv[1], os.O_RDWR)\n"
         "os.fsync(fd)\n"
         "print('synced')\n")
CAT = ("import sys\n"
       "sys.stdout.write(open(sys.argv[1], 'rb').read().decode())\n")
LS = ("import os, sys\n"
      "print(' '.join(sorted(os.listdir(sys.argv[1]))))\n")
STAT = ("import os, sys\n"
        "print(os.stat(sys.argv[1]).st_size)\n")
WRITE = ("import os, sys\n"
         "fd = os.open(sys.argv[1], os.O_WRONLY)\n"
         "os.pwrite(fd, sys.argv[2].encode(), 0)\n"
         "os.close(fd)\n"
         "print('written')\n")


@contextlib.contextmanager
def copying_with_commit(s):
    """SOURCE hangs until a commit tick (commit=1) is copying the file
    made dirty before; it answers again when the block ends."""
    s.stop()
    try:
        time.sleep(3 * SLOWDOWN)  # a commit tick is copying by now
        yield
    finally:
        s.cont()


def blocked(p, what):
    """p must still be waiting (for SOURCE)."""
    time.sleep(0.5)
    assert p.poll() is None, f"{what} ended while SOURCE hangs: " \
                             f"{p.communicate()}"


def test_a_write_back_blocked_in_source_stalls_no_other_file(slow, mount):
    under, s = slow
    for name in ("a", "b"):
        helpers.write_file(under / name, f"{name} from SOURCE".encode())
    m = mount(s.path)
    for name in ("a", "b"):
        assert helpers.read_file(m / name) == \
            f"{name} from SOURCE".encode()
    helpers.write_file(m / "a", b"A changed in the mount", "r+b")
    s.stop()
    try:
        sync = spawn(FSYNC, m / "a")
        blocked(sync, "fsync of a")
        out, _ = prompt(CAT, m / "b", what="cat of b")
        assert out == "b from SOURCE"
        out, _ = prompt(STAT, m / "b", what="stat of b")
        assert out.strip() == str(len(b"b from SOURCE"))
        out, _ = prompt(LS, m.path, what="ls of the root")
        assert out.split() == ["a", "b"]
        prompt(WRITE, m / "b", "B", what="a write to b")
        assert sync.poll() is None, "fsync of a returned while SOURCE hangs"
    finally:
        s.cont()
    assert finish(sync, 30 * SLOWDOWN, "fsync of a").strip() == "synced"
    assert m.unmount() == 0
    assert helpers.read_file(under / "a") == b"A changed in the mount"
    assert helpers.read_file(under / "b") == b"B from SOURCE"


def test_a_file_whose_write_back_hangs_in_source_can_still_be_written(
        slow, mount):
    """The commit thread's pass copies a to a SOURCE that hangs; writes,
    opens and reads of a itself answer meanwhile (an fsync of a would
    not: the kernel holds a's inode lock until it is answered), and the
    write made during the copy lands at the next pass."""
    under, s = slow
    helpers.write_file(under / "a", b"a from SOURCE")
    m = mount(s.path, options=["commit=1"])
    assert helpers.read_file(m / "a") == b"a from SOURCE"
    os.listxattr(m / "a")  # xattrs in memory: the pass needs only the copy
    s.stop()
    try:
        prompt(WRITE, m / "a", "a, a new ver.", what="a write to a")
        time.sleep(3 * SLOWDOWN)  # a commit tick is copying a by now
        prompt(WRITE, m / "a", "written during", what="a write to a")
        out, _ = prompt(CAT, m / "a", what="cat of a")
        assert out == "written during"
    finally:
        s.cont()
    assert m.unmount() == 0
    assert helpers.read_file(under / "a") == b"written during"


def test_times_set_while_a_write_back_copies_reach_source(slow, mount):
    """A utimens that arrives while the commit thread's copy of the file
    waits for SOURCE is newer than the times that copy carries: it must
    reach SOURCE at a later pass, not be taken as written by the copy
    (the writeback cache sends the times programs saw this way, after
    their data). On the daemon path the pass first drains the kernel's
    cache through the mount, whose opens wait for SOURCE too, so the copy
    starts only once SOURCE answers: there the test checks the outcome.
    """
    under, s = slow
    helpers.write_file(under / "a", b"a from SOURCE")
    m = mount(s.path, options=["commit=1"])
    assert helpers.read_file(m / "a") == b"a from SOURCE"
    os.listxattr(m / "a")  # xattrs in memory: the pass needs only the copy
    # no lookup, no open while SOURCE hangs: the magic link of an O_PATH
    # descriptor reaches the file with a SETATTR only
    fd = os.open(m / "a", os.O_PATH)
    try:
        helpers.write_file(m / "a", b"A", "r+b")
        with copying_with_commit(s):
            prompt("import os, sys\nos.utime(sys.argv[1], "
                   "ns=(7 * 10**17, 10**18))\n", f"/proc/{os.getpid()}/fd/{fd}",
                   what="utime of a")
    finally:
        os.close(fd)
    assert os.stat(m / "a").st_mtime_ns == 10**18
    assert m.unmount() == 0
    st = os.stat(under / "a")
    assert (st.st_atime_ns, st.st_mtime_ns) == (7 * 10**17, 10**18)
    assert helpers.read_file(under / "a") == b"A from SOURCE"


def test_a_rename_over_a_file_while_its_write_back_copies_is_no_conflict(
        slow, mount):
    """The write-then-rename idiom over a file whose write-back is waiting
    for SOURCE: the rename is journalled while SOURCE's file is about to
    be replaced by that write-back, so its replay must expect the new
    version there, not take it for someone else's (a conflict copy). As
    above, on the daemon path the copy starts only once SOURCE answers."""
    under, s = slow
    helpers.write_file(under / "shared", b"version 0")
    m = mount(s.path, options=["commit=1"])
    assert helpers.read_file(m / "shared") == b"version 0"
    os.listxattr(m / "shared")
    helpers.write_file(m / ".tmp", b"version 2")
    m.sync(check=True)  # .tmp is in SOURCE too
    helpers.write_file(m / "shared", b"version 1", "r+b")
    os.stat(m / ".tmp")
    with copying_with_commit(s):
        prompt("import os, sys\nos.rename(sys.argv[1], sys.argv[2])\n",
               m / ".tmp", m / "shared", what="rename over shared")
    assert helpers.read_file(m / "shared") == b"version 2"
    assert m.unmount() == 0
    assert sorted(os.listdir(under)) == ["shared"]
    assert helpers.read_file(under / "shared") == b"version 2"


def test_more_fsyncs_than_workers_on_a_hung_source_leave_the_mount_serving(
        slow, mount):
    under, s = slow
    count = 40  # more than the daemon's worker threads
    for i in range(count):
        helpers.write_file(under / f"f{i:02}", b"old")
    helpers.write_file(under / "loaded", b"in memory")
    m = mount(s.path)
    assert helpers.read_file(m / "loaded") == b"in memory"
    for i in range(count):
        helpers.write_file(m / f"f{i:02}", f"new {i}".encode(), "r+b")
    s.stop()
    syncs = []
    try:
        syncs = [spawn(FSYNC, m / f"f{i:02}") for i in range(count)]
        blocked(syncs[0], "fsync")
        time.sleep(1)  # let them all reach the daemon
        out, _ = prompt(CAT, m / "loaded", what="cat of a loaded file")
        assert out == "in memory"
        out, _ = prompt(LS, m.path, what="ls of the root")
        assert len(out.split()) == count + 1
        assert all(p.poll() is None for p in syncs), \
            "an fsync returned while SOURCE hangs"
    finally:
        s.cont()
    for p in syncs:
        assert finish(p, 60 * SLOWDOWN, "fsync").strip() == "synced"
    for i in range(count):
        assert helpers.read_file(under / f"f{i:02}") == f"new {i}".encode()
    assert m.unmount() == 0


READER = ("import os, sys, time\n"
          "fd = os.open(sys.argv[1], os.O_RDONLY)\n"
          "print('open', flush=True)\n"
          "sys.stdin.readline()\n"
          "print(os.pread(fd, 100, 0).decode(), flush=True)\n")


def test_the_final_write_back_on_a_hung_source_still_answers_readers(
        slow, mount):
    under, s = slow
    helpers.write_file(under / "a", b"old")
    helpers.write_file(under / "b", b"loaded before")
    m = mount(s.path)
    assert helpers.read_file(m / "b") == b"loaded before"
    helpers.write_file(m / "a", b"the final pass writes this", "r+b")
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(m / "b")], text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    h5mount.track(reader)
    assert reader.stdout.readline() == "open\n"
    s.stop()
    try:
        os.kill(m.pid, signal.SIGTERM)
        # the final pass waits for SOURCE ...
        time.sleep(1)
        assert m.running(), "the daemon ended while SOURCE hangs"
        # ... while the mount answers its users
        reader.stdin.write("go\n")
        reader.stdin.flush()
        out = finish(reader, PROMPT, "a read of an open file")
        assert out.strip() == "loaded before"
        out, _ = prompt(CAT, m / "b", what="cat of a loaded file")
        assert out == "loaded before"
        p = spawn("import os, sys\n"
                  "try:\n"
                  "    open(sys.argv[1], 'wb').write(b'late')\n"
                  "except OSError as e:\n"
                  "    print(e.errno)\n", m / "new")
        assert finish(p, PROMPT, "a create").strip() == str(errno.EROFS)
        assert m.running()
    finally:
        s.cont()
    assert m.wait() == 0
    assert helpers.read_file(under / "a") == b"the final pass writes this"
    assert not (under / "new").exists()


OPEN = ("import os, sys\n"
        "try:\n"
        "    print(open(sys.argv[1], 'rb').read().decode())\n"
        "except OSError as e:\n"
        "    print(e.errno)\n")


def test_opens_waiting_for_a_hung_source_never_take_every_worker(
        slow, mount):
    """Loads wait source_timeout (60 s here) for SOURCE; 40 of them, of
    different files and of one file, still leave workers for the files in
    memory: only FS_MAX_WAITING requests wait at once, the others fail
    with EIO at once."""
    under, s = slow
    count = 40
    for i in range(count):
        helpers.write_file(under / f"f{i:02}", f"file {i}".encode())
    helpers.write_file(under / "loaded", b"in memory")
    m = mount(s.path, options=["source_timeout=60"], allow_stderr=True)
    assert helpers.read_file(m / "loaded") == b"in memory"
    s.stop()
    opens = []
    try:
        opens = [spawn(OPEN, m / f"f{i:02}") for i in range(count)]
        opens += [spawn(OPEN, m / "f00") for _ in range(count // 2)]
        time.sleep(2 * SLOWDOWN)  # let them all reach the daemon
        out, _ = prompt(CAT, m / "loaded", what="cat of a loaded file")
        assert out == "in memory"
        out, _ = prompt(LS, m.path, what="ls of the root")
        assert len(out.split()) == count + 1
    finally:
        s.cont()
    got = [finish(p, 60 * SLOWDOWN, "an open").strip() for p in opens]
    for i, out in enumerate(got):
        want = f"file {i % count if i < count else 0}"
        assert out in (want, str(errno.EIO)), (i, out)
    assert str(errno.EIO) in got, "no open was refused at once"
    assert "requests already wait for SOURCE" in m.stderr()
    assert m.unmount() == 0


BIG_READER = ("import os, sys\n"
              "fd = os.open(sys.argv[1], os.O_RDONLY)\n"
              "print('open', flush=True)\n"
              "sys.stdin.readline()\n"
              "try:\n"
              "    os.pread(fd, 4096, int(sys.argv[2])); print('read')\n"
              "except OSError as e:\n"
              "    print(e.errno)\n")


def test_reads_of_a_file_served_from_a_hung_source_never_take_every_worker(
        slow, mount):
    """A file larger than max_memory is read from SOURCE's file: on the
    daemon path each read waits in the daemon. 40 of them on a hung SOURCE
    still leave workers for the files in memory."""
    if h5mount.DATA_PATH == "passthrough":
        pytest.skip("passthrough: the kernel reads SOURCE's file itself")
    under, s = slow
    count, step = 40, 256 << 10
    helpers.write_file(under / "big", os.urandom(count * step))
    helpers.write_file(under / "loaded", b"in memory")
    m = mount(s.path, options=["max_memory=1M", "passthrough=off"],
              allow_stderr=True)
    assert helpers.read_file(m / "loaded") == b"in memory"
    readers = []
    for i in range(count):
        p = subprocess.Popen([sys.executable, "-c", BIG_READER,
                              str(m / "big"), str(i * step)], text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        readers.append(h5mount.track(p))
        assert p.stdout.readline() == "open\n"
    s.stop()
    try:
        for p in readers:
            p.stdin.write("go\n")
            p.stdin.flush()
        time.sleep(2 * SLOWDOWN)  # let the reads reach the daemon
        out, _ = prompt(CAT, m / "loaded", what="cat of a loaded file")
        assert out == "in memory"
    finally:
        s.cont()
    got = [finish(p, 60 * SLOWDOWN, "a read").strip() for p in readers]
    assert set(got) <= {"read", str(errno.EIO)}, got
    assert m.unmount() == 0
