#!/usr/bin/python3
"""fsx.py - a model-based random exerciser for h5memfs, in the spirit of
fsx: a seeded random sequence of file operations is applied at once to the
mount and to a reference directory on tmpfs (/dev/shm), and after every
step the two must agree: every result and errno, every byte of every file,
of every open descriptor and of every mapping, sizes, modes, link counts,
the directory listing.

Operations: open (create, O_TRUNC, O_APPEND, read-only, write-only),
close, read and write at the file position, pread/pwrite at random offsets
(biased to page and image boundaries), lseek, ftruncate and truncate up and
down, shared and private mmap with reads, writes, msync and munmap, fsync
and fdatasync, chmod, rename (also RENAME_NOREPLACE and RENAME_EXCHANGE),
unlink of open files, hard links, mkdir/rmdir and directory renames,
`h5memfs sync`, and remounts: unmount (SOURCE must then mirror the mount and
the reference), then mount again with another mode chosen at random
(write-back, write-back with commit=1, sync_on_close, volatile).

What is checked against SOURCE: after fsync (and msync on the daemon data
path, where msync reaches the daemon) the file's bytes are in SOURCE under
each of its names; after `h5memfs sync` and after unmount SOURCE equals the
reference (names, bytes, modes, link counts) and, after unmount, the mount
as last seen (also mtimes); on a volatile mount SOURCE never changes, and
the next mount starts again from it.

Run alone:
    /usr/bin/python3 tests/robust/fsx.py --seed 1234 --ops 2000 \
        --path passthrough=off --mode source
It prints its seed and, on a divergence, the last operations and the line
that replays the run. Exit 0: no divergence; 1: divergence; 2: usage.
"""

import argparse
import errno
import faulthandler
import mmap
import os
import random
import shutil
import signal
import stat
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rlib  # noqa: E402
from rlib import helpers  # noqa: E402

PAGE = mmap.PAGESIZE
IMAGE_PAGE = 65536  # the daemon's default dirty-tracking page

FILES = ["a", "b", "c", "d/e", "d/f", "x/e"]
DIRS = ["d", "x"]

# op name -> weight
WEIGHTS = {
    "open": 10, "close": 6, "write": 10, "pwrite": 14, "read": 5,
    "pread": 8, "lseek": 3, "ftruncate": 6, "truncate": 3, "mmap": 4,
    "mwrite": 8, "mread": 4, "msync": 3, "munmap": 2, "fsync": 3,
    "fdatasync": 1, "chmod": 2, "rename": 4, "rename2": 2, "unlink": 3,
    "link": 3, "dirop": 2, "sync": 1, "remount": 1,
}


# Kinds of mount a remount picks from (write-back twice as likely).
MODES = ["writeback", "commit", "sync_on_close", "volatile", "writeback"]


class Divergence(AssertionError):
    pass


def outcome(fn, *a, **kw):
    """('ok', value) or ('err', errno name) of fn(*a, **kw)."""
    try:
        return ("ok", fn(*a, **kw))
    except OSError as e:
        return ("err", errno.errorcode.get(e.errno, e.errno))
    except ValueError as e:  # mmap's own checks
        return ("err", f"ValueError: {e}")


class Handle:
    def __init__(self, hid, name, flags, mfd, rfd):
        self.hid, self.name, self.flags = hid, name, flags
        self.mfd, self.rfd = mfd, rfd
        self.maps = []

    @property
    def readable(self):
        return (self.flags & os.O_ACCMODE) in (os.O_RDONLY, os.O_RDWR)

    @property
    def writable(self):
        return (self.flags & os.O_ACCMODE) in (os.O_WRONLY, os.O_RDWR)

    def __repr__(self):
        return f"h{self.hid}({self.name})"


class Mapping:
    def __init__(self, mid, h, off, length, shared, writable, mm, rm):
        self.mid, self.h, self.off, self.length = mid, h, off, length
        self.shared, self.writable = shared, writable
        self.mm, self.rm = mm, rm
        self.orphan = False  # its handle was closed

    def __repr__(self):
        kind = "shared" if self.shared else "private"
        return f"m{self.mid}({self.h}@{self.off}+{self.length},{kind})"


def lstat_or_none(p):
    try:
        return os.lstat(p)
    except FileNotFoundError:
        return None


def read_all(path):
    with open(path, "rb") as f:
        return f.read()


def pread_all(fd):
    size = os.fstat(fd).st_size
    out = bytearray()
    while len(out) < size:
        chunk = os.pread(fd, size - len(out), len(out))
        if not chunk:
            break
        out += chunk
    return bytes(out)


def tree(root):
    """{rel: (type, mode, size, nlink, link group, content)} of root."""
    out = {}
    groups = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, root)
        for name in sorted(dirnames + filenames):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            st = os.lstat(os.path.join(root, rel))
            if stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode))
            elif stat.S_ISREG(st.st_mode):
                grp = groups.setdefault(st.st_ino, rel)
                out[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_size,
                            st.st_nlink, grp,
                            read_all(os.path.join(root, rel)))
            else:
                out[rel] = ("other", stat.S_IFMT(st.st_mode))
    return out


def describe_tree_diff(a, b, an, bn):
    lines = []
    for rel in sorted(set(a) | set(b)):
        if rel not in a:
            lines.append(f"{rel}: only in {bn}")
        elif rel not in b:
            lines.append(f"{rel}: only in {an}")
        elif a[rel] != b[rel]:
            x, y = a[rel], b[rel]
            if x[0] == "file" and y[0] == "file":
                fields = ["type", "mode", "size", "nlink", "link group"]
                for i, f in enumerate(fields):
                    if x[i] != y[i]:
                        lines.append(f"{rel}: {f} {an}={x[i]!r} {bn}={y[i]!r}")
                if x[5] != y[5]:
                    lines.append(f"{rel}: content differs "
                                 f"{first_diff(x[5], y[5])}")
            else:
                lines.append(f"{rel}: {an}={x!r} {bn}={y!r}")
    return lines


def first_diff(a, b):
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            j = i
            while j < n and a[j] != b[j]:
                j += 1
            return (f"first at byte {i} (run of {j - i} bytes; "
                    f"lengths {len(a)} and {len(b)}; "
                    f"got {a[i:i + 16].hex()} want {b[i:i + 16].hex()})")
    return f"lengths {len(a)} and {len(b)}, common prefix equal"


class Exerciser:
    def __init__(self, args):
        self.args = args
        self.seed = args.seed
        self.rng = random.Random(self.seed)
        self.data_rng = random.Random(self.seed ^ 0x5EED)
        self.work = Path(args.workdir or tempfile.mkdtemp(prefix="h5fsx-"))
        self.work.mkdir(parents=True, exist_ok=True)
        self.src = self.work / "src"
        self.mnt = self.work / "mnt"
        self.refbase = Path(tempfile.mkdtemp(prefix="h5fsx-ref-",
                                             dir="/dev/shm"))
        self.ref = self.refbase / "ref"
        self.snap = self.refbase / "volatile-source"
        self.log_path = Path(args.log) if args.log else self.work / "ops.log"
        self.log = open(self.log_path, "w", buffering=1)
        self.handles = []
        self.maps = []
        self.next_id = 0
        self.step = 0
        self.m = None
        self.mode = None
        self.history = []
        self.registry = []
        self.maxsize = args.maxsize
        self.counts = {}

    # --- logging ----------------------------------------------------------

    def note(self, text):
        line = f"{self.step:6d} [{self.mode}] {text}"
        self.history.append(line)
        if len(self.history) > 60:
            del self.history[:20]
        self.log.write(line + "\n")

    def fail(self, what):
        raise Divergence(what)

    # --- mounts -----------------------------------------------------------

    def mount_options(self, mode):
        opts = [self.args.path]
        if mode == "volatile" or self.args.mode == "scratch":
            opts.append("volatile")
        elif mode == "commit":
            opts.append("commit=1")
        elif mode == "sync_on_close":
            opts.append("sync_on_close")
        return opts

    def start_mount(self, mode):
        self.mode = mode
        source = None if self.args.mode == "scratch" else self.src
        m = rlib.Mount(self.mnt, source, self.mount_options(mode),
                       workdir=self.work, registry=self.registry)
        m.start()
        self.m = m
        if self.args.pidfile:
            with open(self.args.pidfile, "a") as f:
                f.write(f"{m.pid} {self.mnt}\n")
        if self.writes_back():
            pass
        elif source is not None:
            # What SOURCE must still be when this volatile mount ends.
            shutil.rmtree(self.snap, ignore_errors=True)
            rlib.run(["cp", "-a", f"{self.src}/.", str(self.snap)],
                     timeout=60)
        self.note(f"mounted {' '.join(m.options)}")

    def writes_back(self):
        return self.args.mode != "scratch" and self.mode != "volatile"

    def pick_mode(self):
        if self.args.mode == "scratch":
            return "volatile"
        return self.rng.choice(self.args.modes)

    def setup(self):
        self.src.mkdir(exist_ok=True)
        self.mnt.mkdir(exist_ok=True)
        if self.args.mode != "scratch":
            # A starting tree in SOURCE: three files, one hard link.
            (self.src / "d").mkdir()
            for rel, size in (("a", 70000), ("d/e", 5000), ("c", 0)):
                (self.src / rel).write_bytes(self.data_rng.randbytes(size))
            os.link(self.src / "a", self.src / "d" / "f")
            os.chmod(self.src / "c", 0o600)
            rlib.run(["cp", "-a", f"{self.src}/.", str(self.ref)], timeout=60)
        else:
            self.ref.mkdir()
        self.start_mount(self.args.modes[0] if self.args.mode != "scratch"
                         else "volatile")
        self.check_all()

    def close_everything(self):
        for mp in list(self.maps):
            self.unmap(mp)
        for h in list(self.handles):
            self.close_handle(h)

    def remount(self):
        self.close_everything()
        if self.writes_back():
            seen = helpers.snapshot(self.mnt, xattrs=False)
        self.m.unmount()
        try:
            self.m.finish()
        except AssertionError as e:  # exit status, stderr
            self.fail(f"at unmount: {e}")
        if self.args.mode != "scratch":
            if self.writes_back():
                self.compare_source("after unmount")
                after = helpers.snapshot(self.src, xattrs=False)
                diffs = helpers.diff_snapshots(after, seen, "SOURCE",
                                               "mount before unmount")
                if diffs:
                    self.fail("SOURCE after unmount differs from the mount:"
                              "\n" + "\n".join(diffs[:30]))
                left = helpers.tmp_files(self.src)
                if left:
                    self.fail(f"temporary files left in SOURCE: {left}")
            else:
                self.check_volatile_source("after volatile unmount")
                shutil.rmtree(self.ref)
                rlib.run(["cp", "-a", f"{self.src}/.", str(self.ref)],
                         timeout=60)
        else:
            shutil.rmtree(self.ref)
            self.ref.mkdir()
        self.start_mount(self.pick_mode())

    def teardown(self):
        try:
            self.close_everything()
        except Exception:
            pass
        problems = []
        if self.m is not None and (self.m.running() or self.m.is_mounted()):
            try:
                self.m.finish()
            except AssertionError as e:
                problems.append(str(e))
        shutil.rmtree(self.refbase, ignore_errors=True)
        return problems

    # --- checks -----------------------------------------------------------

    def check_alive(self):
        if not self.m.running():
            self.fail(f"daemon died (exit {self.m.proc.poll()}); stderr:\n"
                      f"{self.m.stderr()}")

    def check_all(self):
        self.check_alive()
        mt, rt = tree(self.mnt), tree(self.ref)
        if mt != rt:
            self.fail("mount and reference differ:\n" + "\n".join(
                describe_tree_diff(mt, rt, "mount", "ref")[:30]))
        for h in self.handles:
            ms, rs = os.fstat(h.mfd), os.fstat(h.rfd)
            if (ms.st_size, ms.st_nlink) != (rs.st_size, rs.st_nlink):
                self.fail(f"{h}: fstat size/nlink mount={ms.st_size}/"
                          f"{ms.st_nlink} ref={rs.st_size}/{rs.st_nlink}")
            if h.readable:
                a, b = pread_all(h.mfd), pread_all(h.rfd)
                if a != b:
                    self.fail(f"{h}: bytes read through the descriptor "
                              f"differ: {first_diff(a, b)}")
        for mp in self.maps:
            size = mp.rm.size()
            end = min(mp.off + mp.length, size)
            if end > mp.off:
                a = mp.mm[0:end - mp.off]
                b = mp.rm[0:end - mp.off]
                if a != b:
                    self.fail(f"{mp}: mapped bytes differ: {first_diff(a, b)}")

    def compare_source(self, when):
        # With commit=1 the commit thread may be between its temporary
        # file and the rename while we look; at unmount nothing may be left.
        # Wait (up to 3 s) for such a pass to end, then compare strictly.
        busy = self.mode == "commit" and "unmount" not in when
        for _ in range(60):
            before = busy and helpers.tmp_files(self.src)
            st = tree(self.src)
            if not (before or (busy and helpers.tmp_files(self.src))):
                break
            time.sleep(0.05)
        rt = tree(self.ref)
        if st != rt:
            self.fail(f"SOURCE differs from the reference {when}:\n" +
                      "\n".join(describe_tree_diff(st, rt, "SOURCE",
                                                   "ref")[:30]))

    def check_volatile_source(self, when):
        st, want = tree(self.src), tree(self.snap)
        if st != want:
            self.fail(f"volatile mount changed SOURCE ({when}):\n" +
                      "\n".join(describe_tree_diff(st, want, "SOURCE",
                                                   "SOURCE at mount")[:30]))

    def names_of(self, h):
        """The reference names of h's inode."""
        ino = os.fstat(h.rfd).st_ino
        out = []
        for rel in FILES:
            st = lstat_or_none(self.ref / rel)
            if st is not None and st.st_ino == ino:
                out.append(rel)
        return out

    def check_durable(self, h, why):
        """After fsync (or msync where it is one): h's bytes in SOURCE."""
        if self.args.mode == "scratch":
            return
        if not self.writes_back():
            self.check_volatile_source(f"after {why} on a volatile mount")
            return
        want = read_all(f"/proc/self/fd/{h.rfd}")  # h may be write-only
        for rel in self.names_of(h):
            try:
                got = read_all(self.src / rel)
            except FileNotFoundError:
                self.fail(f"after {why} of {h}: {rel} missing in SOURCE")
            if got != want:
                self.fail(f"after {why} of {h}: SOURCE/{rel} differs from "
                          f"the file: {first_diff(got, want)}")

    # --- helpers for ops --------------------------------------------------

    def both(self, what, fm, fr):
        a, b = fm(), fr()
        self.note(f"{what} -> {b[1] if b[0] == 'err' else 'ok'}")
        if a != b:
            self.fail(f"{what}: mount gave {_short(a)}, reference {_short(b)}")
        return b

    def data(self, n):
        return self.data_rng.randbytes(n)

    def ref_size(self, h):
        return os.fstat(h.rfd).st_size

    def length(self, room):
        """A request size: mostly small, sometimes page-sized or large."""
        r = self.rng.random()
        if r < 0.4:
            n = self.rng.randint(1, 64)
        elif r < 0.7:
            n = self.rng.randint(1, 8192)
        elif r < 0.9:
            n = self.rng.choice([PAGE, IMAGE_PAGE, 2 * PAGE, PAGE - 1,
                                 IMAGE_PAGE + 1])
        else:
            n = self.rng.randint(1, 256 * 1024)
        return max(0, min(n, room))

    def offset(self, size):
        """An offset: inside the file, at its end, past it, or near a page
        or image-page boundary."""
        r = self.rng.random()
        if r < 0.35 or size == 0:
            off = self.rng.randint(0, max(size, 1))
        elif r < 0.5:
            off = size
        elif r < 0.75:
            b = self.rng.choice([PAGE, IMAGE_PAGE])
            off = b * self.rng.randint(0, max(1, self.maxsize // b)) + \
                self.rng.randint(-3, 3)
        else:
            off = self.rng.randint(0, self.maxsize)
        return max(0, min(off, self.maxsize - 1))

    def pick_handle(self, want=None):
        hs = self.handles
        if want == "write":
            hs = [h for h in hs if h.writable]
        if not hs:
            return None
        return self.rng.choice(hs)

    # --- operations ---------------------------------------------------------

    def op_open(self):
        if len(self.handles) >= 6:
            return self.op_close()
        name = self.rng.choice(FILES)
        acc = self.rng.choice([os.O_RDWR] * 5 + [os.O_RDONLY, os.O_WRONLY])
        flags = acc
        if self.rng.random() < 0.6:
            flags |= os.O_CREAT
        if self.rng.random() < 0.08 and acc != os.O_RDONLY:
            flags |= os.O_TRUNC
        if self.rng.random() < 0.15:
            flags |= os.O_APPEND
        if flags & os.O_CREAT and self.rng.random() < 0.1:
            flags |= os.O_EXCL
        mode = self.rng.choice([0o644, 0o600, 0o664])
        what = f"open {name} flags={flags:#o} mode={mode:#o}"
        a = outcome(os.open, self.mnt / name, flags, mode)
        b = outcome(os.open, self.ref / name, flags, mode)
        self.note(f"{what} -> {b[1] if b[0] == 'err' else 'ok'}")
        if a[0] != b[0] or (a[0] == "err" and a != b):
            for x in (a, b):
                if x[0] == "ok":
                    os.close(x[1])
            self.fail(f"{what}: mount {_short(a)}, reference {_short(b)}")
        if b[0] == "ok":
            h = Handle(self.next_id, name, flags, a[1], b[1])
            self.next_id += 1
            self.handles.append(h)
            self.note(f"  is {h}")

    def close_handle(self, h):
        for mp in list(h.maps):
            self.unmap(mp)
        self.handles.remove(h)
        self.both(f"close {h}", lambda: outcome(os.close, h.mfd),
                  lambda: outcome(os.close, h.rfd))

    def op_close(self):
        h = self.pick_handle()
        if h is None:
            return self.op_open()
        # A handle with mappings: sometimes keep the mappings (they hold
        # the file open themselves), as programs do.
        if h.maps and self.rng.random() < 0.5:
            self.handles.remove(h)
            self.both(f"close {h} keeping its mappings",
                      lambda: outcome(os.close, h.mfd),
                      lambda: outcome(os.close, h.rfd))
            # Python's mmap keeps a dup() of the descriptor, so the file
            # stays open until the mapping goes, as with C's mmap.
            for mp in h.maps:
                mp.orphan = True
            h.maps = []
            return
        self.close_handle(h)

    def op_write(self):
        h = self.pick_handle("write") or self.pick_handle()
        if h is None:
            return self.op_open()
        pos = os.lseek(h.rfd, 0, os.SEEK_CUR)
        if h.flags & os.O_APPEND:
            pos = self.ref_size(h)
        n = self.length(self.maxsize - pos)
        buf = self.data(n)
        self.both(f"write {h} {n} bytes at pos {pos}",
                  lambda: outcome(os.write, h.mfd, buf),
                  lambda: outcome(os.write, h.rfd, buf))

    def op_pwrite(self):
        h = self.pick_handle("write") or self.pick_handle()
        if h is None:
            return self.op_open()
        off = self.offset(self.ref_size(h))
        n = self.length(self.maxsize - off)
        buf = self.data(n)
        self.both(f"pwrite {h} {n} bytes at {off}",
                  lambda: outcome(os.pwrite, h.mfd, buf, off),
                  lambda: outcome(os.pwrite, h.rfd, buf, off))

    def op_read(self):
        h = self.pick_handle()
        if h is None:
            return self.op_open()
        n = self.length(1 << 20)
        self.both(f"read {h} {n} bytes",
                  lambda: outcome(os.read, h.mfd, n),
                  lambda: outcome(os.read, h.rfd, n))

    def op_pread(self):
        h = self.pick_handle()
        if h is None:
            return self.op_open()
        off = self.offset(self.ref_size(h))
        n = self.length(1 << 20)
        self.both(f"pread {h} {n} bytes at {off}",
                  lambda: outcome(os.pread, h.mfd, n, off),
                  lambda: outcome(os.pread, h.rfd, n, off))

    def op_lseek(self):
        h = self.pick_handle()
        if h is None:
            return self.op_open()
        whence = self.rng.choice([os.SEEK_SET, os.SEEK_CUR, os.SEEK_END])
        off = self.rng.randint(0, 4096) if whence != os.SEEK_SET else \
            self.offset(self.ref_size(h))
        self.both(f"lseek {h} {off} whence={whence}",
                  lambda: outcome(os.lseek, h.mfd, off, whence),
                  lambda: outcome(os.lseek, h.rfd, off, whence))

    def new_size(self, size):
        r = self.rng.random()
        if r < 0.3:
            return self.rng.randint(0, size) if size else 0
        if r < 0.4:
            return 0
        if r < 0.6:
            b = self.rng.choice([PAGE, IMAGE_PAGE])
            return min(self.maxsize, b * self.rng.randint(0, 8) +
                       self.rng.randint(-2, 2) % b)
        return self.rng.randint(0, self.maxsize)

    def op_ftruncate(self):
        h = self.pick_handle("write") or self.pick_handle()
        if h is None:
            return self.op_open()
        size = self.new_size(self.ref_size(h))
        self.both(f"ftruncate {h} to {size}",
                  lambda: outcome(os.ftruncate, h.mfd, size),
                  lambda: outcome(os.ftruncate, h.rfd, size))

    def op_truncate(self):
        name = self.rng.choice(FILES)
        st = lstat_or_none(self.ref / name)
        size = self.new_size(st.st_size if st else 0)
        self.both(f"truncate {name} to {size}",
                  lambda: outcome(os.truncate, self.mnt / name, size),
                  lambda: outcome(os.truncate, self.ref / name, size))

    def op_mmap(self):
        if len(self.maps) >= 4:
            return self.op_munmap()
        h = self.pick_handle()
        if h is None:
            return self.op_open()
        size = self.ref_size(h)
        if size == 0:
            return self.op_pwrite()
        off = self.rng.randint(0, (size - 1) // PAGE) * PAGE
        length = self.rng.randint(1, size - off)
        shared = self.rng.random() < 0.8
        writable = self.rng.random() < 0.8
        prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
        flags = mmap.MAP_SHARED if shared else mmap.MAP_PRIVATE
        what = (f"mmap {h} off={off} len={length} "
                f"{'shared' if shared else 'private'} "
                f"{'rw' if writable else 'ro'}")
        a = outcome(mmap.mmap, h.mfd, length, flags=flags, prot=prot,
                    offset=off)
        b = outcome(mmap.mmap, h.rfd, length, flags=flags, prot=prot,
                    offset=off)
        self.note(f"{what} -> {b[1] if b[0] == 'err' else 'ok'}")
        if a[0] != b[0] or (a[0] == "err" and a != b):
            for x in (a, b):
                if x[0] == "ok":
                    x[1].close()
            self.fail(f"{what}: mount {_short(a)}, reference {_short(b)}")
        if b[0] == "ok":
            mp = Mapping(self.next_id, h, off, length, shared, writable,
                         a[1], b[1])
            self.next_id += 1
            h.maps.append(mp)
            self.maps.append(mp)
            self.note(f"  is {mp}")

    def pick_map(self, writable=False):
        ms = [mp for mp in self.maps if mp.writable or not writable]
        return self.rng.choice(ms) if ms else None

    def map_room(self, mp):
        """Bytes of the mapping inside the file now (touching a page past
        the end of the file would be SIGBUS)."""
        size, msize = mp.rm.size(), mp.mm.size()
        if size != msize:
            self.fail(f"{mp}: file size mount={msize} ref={size}")
        return max(0, min(mp.length, size - mp.off))

    def op_mwrite(self):
        mp = self.pick_map(writable=True)
        if mp is None:
            return self.op_mmap()
        room = self.map_room(mp)
        if room == 0:
            return
        start = self.rng.randint(0, room - 1)
        n = self.length(room - start)
        buf = self.data(n)
        mp.mm[start:start + n] = buf
        mp.rm[start:start + n] = buf
        self.note(f"mwrite {mp} {n} bytes at {start}")

    def op_mread(self):
        mp = self.pick_map()
        if mp is None:
            return self.op_mmap()
        room = self.map_room(mp)
        self.note(f"mread {mp} {room} bytes")
        a, b = mp.mm[0:room], mp.rm[0:room]
        if a != b:
            self.fail(f"mread {mp}: {first_diff(a, b)}")

    def op_msync(self):
        mp = self.pick_map()
        if mp is None:
            return self.op_mmap()
        self.both(f"msync {mp}", lambda: outcome(mp.mm.flush),
                  lambda: outcome(mp.rm.flush))
        # msync(MS_SYNC) reaches the daemon as an fsync on the daemon data
        # path only; with passthrough the mapping is of the memory file
        # itself (documented exception).
        if (mp.shared and mp.writable and "off" in self.args.path
                and not mp.orphan):
            self.check_durable(mp.h, "msync")

    def unmap(self, mp):
        self.note(f"munmap {mp}")
        mp.mm.close()
        mp.rm.close()
        self.maps.remove(mp)
        if mp in mp.h.maps:
            mp.h.maps.remove(mp)

    def op_munmap(self):
        mp = self.pick_map()
        if mp is None:
            return self.op_mmap()
        self.unmap(mp)

    def op_fsync(self, data_only=False):
        h = self.pick_handle()
        if h is None:
            return self.op_open()
        fn = os.fdatasync if data_only else os.fsync
        self.both(f"{fn.__name__} {h}", lambda: outcome(fn, h.mfd),
                  lambda: outcome(fn, h.rfd))
        self.check_durable(h, fn.__name__)

    def op_fdatasync(self):
        return self.op_fsync(data_only=True)

    def op_chmod(self):
        name = self.rng.choice(FILES + DIRS)
        mode = self.rng.choice([0o600, 0o644, 0o640, 0o755, 0o700])
        if name in DIRS:
            mode |= 0o700
        self.both(f"chmod {name} {mode:#o}",
                  lambda: outcome(os.chmod, self.mnt / name, mode),
                  lambda: outcome(os.chmod, self.ref / name, mode))

    def op_rename(self):
        a, b = self.rng.choice(FILES), self.rng.choice(FILES)
        self.both(f"rename {a} {b}",
                  lambda: outcome(os.rename, self.mnt / a, self.mnt / b),
                  lambda: outcome(os.rename, self.ref / a, self.ref / b))

    def op_rename2(self):
        a, b = self.rng.choice(FILES), self.rng.choice(FILES)
        flag = self.rng.choice([helpers.RENAME_NOREPLACE,
                                helpers.RENAME_EXCHANGE])
        self.both(f"renameat2 {a} {b} flags={flag}",
                  lambda: outcome(helpers.renameat2, self.mnt / a,
                                  self.mnt / b, flag),
                  lambda: outcome(helpers.renameat2, self.ref / a,
                                  self.ref / b, flag))

    def op_unlink(self):
        name = self.rng.choice(FILES)
        self.both(f"unlink {name}",
                  lambda: outcome(os.unlink, self.mnt / name),
                  lambda: outcome(os.unlink, self.ref / name))

    def op_link(self):
        a, b = self.rng.choice(FILES), self.rng.choice(FILES)
        self.both(f"link {a} {b}",
                  lambda: outcome(os.link, self.mnt / a, self.mnt / b),
                  lambda: outcome(os.link, self.ref / a, self.ref / b))

    def op_dirop(self):
        kind = self.rng.choice(["mkdir", "rmdir", "rename"])
        a, b = self.rng.choice(DIRS), self.rng.choice(DIRS)
        if kind == "mkdir":
            self.both(f"mkdir {a}",
                      lambda: outcome(os.mkdir, self.mnt / a, 0o755),
                      lambda: outcome(os.mkdir, self.ref / a, 0o755))
        elif kind == "rmdir":
            self.both(f"rmdir {a}",
                      lambda: outcome(os.rmdir, self.mnt / a),
                      lambda: outcome(os.rmdir, self.ref / a))
        else:
            self.both(f"rename dir {a} {b}",
                      lambda: outcome(os.rename, self.mnt / a, self.mnt / b),
                      lambda: outcome(os.rename, self.ref / a, self.ref / b))

    def op_sync(self):
        self.note("h5memfs sync")
        res = rlib.run([str(rlib.DAEMON), "sync", str(self.mnt)], timeout=60,
                       check=False)
        if res.returncode != 0:
            self.fail(f"h5memfs sync exited {res.returncode}: {res.stderr}")
        if self.args.mode == "scratch":
            return
        if self.writes_back():
            self.compare_source("after h5memfs sync")
        else:
            self.check_volatile_source("after h5memfs sync")

    def op_remount(self):
        self.note("remount")
        self.remount()

    # --- the loop -----------------------------------------------------------

    def one_step(self):
        names = list(WEIGHTS)
        weights = [WEIGHTS[n] for n in names]
        if self.args.no_remount:
            weights[names.index("remount")] = 0
        op = self.rng.choices(names, weights)[0]
        self.counts[op] = self.counts.get(op, 0) + 1
        getattr(self, "op_" + op)()
        self.check_all()

    def run(self):
        print(f"fsx: seed {self.seed} path {self.args.path} mode "
              f"{self.args.mode} ops {self.args.ops} duration "
              f"{self.args.duration} log {self.log_path}", flush=True)
        start = time.monotonic()
        self.setup()
        while True:
            if self.args.duration:
                if time.monotonic() - start >= self.args.duration:
                    break
            elif self.step >= self.args.ops:
                break
            self.step += 1
            self.one_step()
        self.step += 1
        self.note("final remount")
        self.remount()
        self.check_all()
        return time.monotonic() - start


def _short(x, limit=200):
    t = repr(x)
    return t if len(t) <= limit else t[:limit] + "..."


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--ops", type=int, default=1000)
    ap.add_argument("--duration", type=float, default=0,
                    help="run for SECONDS instead of --ops operations")
    ap.add_argument("--path", default="passthrough=on",
                    choices=["passthrough=on", "passthrough=off"])
    ap.add_argument("--mode", default="source",
                    choices=["source", "scratch"],
                    help="source: a SOURCE written back (remounts pick "
                    "write-back, commit=1, sync_on_close or volatile); "
                    "scratch: volatile mounts without SOURCE")
    ap.add_argument("--modes", default=",".join(MODES),
                    help="the mount kinds remounts pick from (first: the "
                    "first mount); default %(default)s")
    ap.add_argument("--maxsize", type=int, default=1 << 20)
    ap.add_argument("--workdir")
    ap.add_argument("--log")
    ap.add_argument("--pidfile",
                    help="append each daemon's PID and mount point here")
    ap.add_argument("--no-remount", action="store_true")
    ap.add_argument("--weight", action="append", default=[],
                    metavar="OP=N", help="change an operation's weight "
                    "(to focus a run; 0 leaves it out); ops: " +
                    " ".join(WEIGHTS))
    args = ap.parse_args(argv)
    args.modes = args.modes.split(",")
    if not set(args.modes) <= set(MODES):
        ap.error(f"--modes: choose from {MODES}")
    for w in args.weight:
        op, _, n = w.partition("=")
        if op not in WEIGHTS or not n.isdigit():
            ap.error(f"bad --weight {w!r}")
        WEIGHTS[op] = int(n)
    if args.seed is None:
        args.seed = int.from_bytes(os.urandom(4), "little")
    faulthandler.enable()
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    # SIGTERM: leave through the finally below (unmount, cleanup).
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(3))
    ex = Exerciser(args)
    replay = (f"/usr/bin/python3 {Path(__file__).resolve()} --seed "
              f"{args.seed} --path {args.path} --mode {args.mode} "
              f"--maxsize {args.maxsize} --modes {','.join(args.modes)} " +
              "".join(f"--weight {w} " for w in args.weight) +
              (f"--duration {args.duration}" if args.duration
               else f"--ops {args.ops}"))
    status = 0
    try:
        took = ex.run()
        print(f"fsx: OK seed {args.seed}: {ex.step} steps in {took:.1f}s; "
              f"ops {dict(sorted(ex.counts.items()))}", flush=True)
    except Divergence as e:
        status = 1
        print(f"fsx: DIVERGENCE at step {ex.step} (seed {args.seed}): {e}",
              flush=True)
    except Exception:
        status = 1
        print(f"fsx: ERROR at step {ex.step} (seed {args.seed}):\n"
              f"{traceback.format_exc()}", flush=True)
    finally:
        if status:
            print("fsx: last operations:\n" + "\n".join(ex.history[-40:]),
                  flush=True)
            print(f"fsx: replay: {replay}", flush=True)
            print(f"fsx: full log: {ex.log_path}", flush=True)
            if ex.m is not None and ex.m.stderr():
                print(f"fsx: daemon stderr:\n{ex.m.stderr()[-4000:]}",
                      flush=True)
        problems = ex.teardown()
        if problems:
            status = 1
            print("fsx: daemon problems:\n" + "\n".join(problems),
                  flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
