"""Helpers for the h5memfs mount tests (tests/integration, tests/robust):
snapshots of a directory tree, sample SOURCE trees, errno probes,
renameat2; and, from h5mount, commands run with a timeout (run) and
mounts_at.

This is not a test module and holds no fixtures (those are in the suites'
conftest.py); everything here works on plain paths, mounted or not.
"""

import ctypes
import errno
import hashlib
import os
import stat
import sys

import numpy as np

from h5mount import SLOWDOWN, mounts_at, run  # noqa: F401  (helpers.run, ...)

PYTHON = sys.executable
TMP_PREFIX = ".h5memfs-tmp."

# Fixed timestamps (ns) so that mtimes in SOURCE are not "now" and carry
# sub-second digits that a filesystem with coarse times would lose.
T_OLD_NS = 1_500_000_000_123_456_789
T_OLDER_NS = 1_400_000_000_987_654_321

OTHER_UID = 1234
OTHER_GID = 5678


def run_python(code, *args, timeout=30, check=True):
    """Run CODE in a separate /usr/bin/python3 process (its own open files,
    its own locks); return the CompletedProcess."""
    return run([PYTHON, "-c", code, *map(str, args)], timeout=timeout,
               check=check)


def errno_of(fn, *args, **kw):
    """Run fn; return 0 when it succeeds, the errno of its OSError when not."""
    try:
        res = fn(*args, **kw)
        if isinstance(res, int) and fn is os.open:
            os.close(res)
        return 0
    except OSError as e:
        return e.errno


def errname(n):
    return "OK" if n == 0 else errno.errorcode.get(n, str(n))


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def write_file(path, data, mode="wb"):
    with open(path, mode) as f:
        f.write(data)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def user_xattrs(path):
    """{name: value} of the user.* xattrs of path, not following symlinks."""
    out = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EPERM):
            return out
        raise
    for name in names:
        if name.startswith("user."):
            out[name] = os.getxattr(path, name, follow_symlinks=False)
    return out


def walk(root):
    """Relative paths of everything under root ('' for root itself), sorted,
    without following symlinks."""
    paths = [""]
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel = os.path.relpath(dirpath, root)
        rel = "" if rel == "." else rel
        for name in dirnames + filenames:
            paths.append(os.path.join(rel, name))
    return sorted(paths)


def snapshot(root, contents=True, xattrs=True, dir_mtime=True,
             ctime=False, ino=False, skip=()):
    """{relative path: metadata tuple} of the tree at root.

    Always: type, mode, uid, gid, mtime in ns, size and nlink (not for
    directories, whose size and link count are the filesystem's business),
    symlink target; with contents a sha256 of regular files; with xattrs the
    user.* xattrs; with ctime/ino those too (only meaningful for comparing one
    filesystem with itself). Hard links appear as a 'link group' index: the
    sorted position of the first path that has the same inode, so two
    filesystems with different inode numbers compare equal.
    """
    snap = {}
    first_path_of_ino = {}
    for rel in walk(root):
        if any(rel == s or rel.startswith(s + "/") for s in skip):
            continue
        path = os.path.join(root, rel) if rel else root
        st = os.lstat(path)
        kind = stat.S_IFMT(st.st_mode)
        entry = {"type": kind, "mode": stat.S_IMODE(st.st_mode),
                 "uid": st.st_uid, "gid": st.st_gid}
        if kind != stat.S_IFDIR or dir_mtime:
            entry["mtime_ns"] = st.st_mtime_ns
        if kind != stat.S_IFDIR:
            entry["size"] = st.st_size
            entry["nlink"] = st.st_nlink
        if kind == stat.S_IFLNK:
            entry["target"] = os.readlink(path)
        if kind == stat.S_IFREG:
            entry["link_group"] = first_path_of_ino.setdefault(st.st_ino, rel)
            if contents:
                entry["sha256"] = sha256(path)
        if xattrs:
            entry["xattrs"] = user_xattrs(path)
        if ctime:
            entry["ctime_ns"] = st.st_ctime_ns
        if ino:
            entry["ino"] = st.st_ino
        snap[rel] = entry
    return snap


def _short(value, limit=120):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def diff_snapshots(a, b, a_name="a", b_name="b"):
    """A readable list of differences between two snapshots ([] if equal)."""
    out = []
    for rel in sorted(set(a) | set(b)):
        if rel not in a:
            out.append(f"{rel!r}: only in {b_name}")
        elif rel not in b:
            out.append(f"{rel!r}: only in {a_name}")
        elif a[rel] != b[rel]:
            keys = sorted(set(a[rel]) | set(b[rel]))
            for k in keys:
                if a[rel].get(k) != b[rel].get(k):
                    out.append(f"{rel!r}: {k}: "
                               f"{a_name}={_short(a[rel].get(k))} "
                               f"{b_name}={_short(b[rel].get(k))}")
    return out


def assert_same_tree(a, b, a_name="a", b_name="b"):
    diffs = diff_snapshots(a, b, a_name, b_name)
    assert not diffs, "trees differ:\n" + "\n".join(diffs[:60])


FIND_FORMAT = r"%P\t%y\t%s\t%m\t%T@\t%l\t%U\t%G\t%n\n"


def find_listing(root):
    """`find ROOT -printf` listing: path, type, size, mode, mtime, link
    target, uid, gid, links; size and links blanked for directories."""
    res = run(["find", str(root), "-printf", FIND_FORMAT], timeout=60)
    lines = []
    for line in res.stdout.splitlines():
        f = line.split("\t")
        if f[1] == "d":
            f[2] = f[8] = "-"
        lines.append("\t".join(f))
    return sorted(lines)


def tmp_files(root):
    """Paths under root whose name starts with the daemon's temp prefix."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            if name.startswith(TMP_PREFIX):
                found.append(os.path.join(dirpath, name))
    return found


def vm_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


# --- renameat2 -------------------------------------------------------------

AT_FDCWD = -100
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
_libc = ctypes.CDLL(None, use_errno=True)


def renameat2(old, new, flags):
    """renameat2(AT_FDCWD, old, AT_FDCWD, new, flags); OSError on failure."""
    fn = _libc.renameat2
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int,
                   ctypes.c_char_p, ctypes.c_uint]
    if fn(AT_FDCWD, os.fsencode(old), AT_FDCWD, os.fsencode(new), flags):
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), str(old))


# --- sample content --------------------------------------------------------

def make_hdf5_sample(path):
    """An HDF5 file with groups, attributes, a chunked gzip dataset, a
    resizable dataset, strings and a compound dataset."""
    import h5py
    rng = np.random.default_rng(42)
    with h5py.File(path, "w") as f:
        f.attrs["title"] = "h5memfs sample"
        f.attrs["version"] = 3
        g = f.create_group("measurements/run1")
        g.attrs["temperature"] = 21.5
        g.create_dataset("ints", data=np.arange(1000, dtype="i4"))
        g.create_dataset("floats", data=rng.random((64, 64)),
                         chunks=(16, 16), compression="gzip")
        ds = f.create_dataset("growing", shape=(10,), maxshape=(None,),
                              dtype="f8", chunks=(8,))
        ds[:] = np.linspace(0, 1, 10)
        f.create_dataset("names", data=np.array([b"alpha", b"beta", b"gamma"]))
        comp = np.zeros(5, dtype=[("id", "i8"), ("x", "f4"), ("tag", "S4")])
        comp["id"] = np.arange(5)
        comp["x"] = np.arange(5) / 2
        comp["tag"] = b"ab"
        f.create_dataset("table", data=comp)
        f["link_to_ints"] = h5py.SoftLink("/measurements/run1/ints")


def make_pytables_sample(path):
    import tables

    class Row(tables.IsDescription):
        name = tables.StringCol(8)
        value = tables.Float64Col()

    with tables.open_file(path, "w") as f:
        t = f.create_table("/", "readings", Row)
        r = t.row
        for i in range(20):
            r["name"] = f"r{i}".encode()
            r["value"] = i * 0.5
            r.append()
        t.flush()


def make_source_tree(root):
    """Fill root with a varied tree: text, binary, empty, sparse and HDF5
    files, nested directories, symlinks (relative, absolute, dangling), hard
    links, modes, another owner, fixed ns mtimes, user xattrs. Returns the
    list of relative paths of regular files."""
    os.makedirs(root, exist_ok=True)

    def p(*parts):
        return os.path.join(root, *parts)

    rng = np.random.default_rng(7)
    os.makedirs(p("sub", "deeper", "deepest"))
    os.makedirs(p("empty_dir"))
    os.makedirs(p("data"))
    write_file(p("hello.txt"), b"hello, world\n")
    write_file(p("empty"), b"")
    write_file(p("random.bin"), rng.bytes(300_000))
    write_file(p("sub", "notes.txt"), b"line one\nline two\n" * 100)
    write_file(p("sub", "deeper", "deepest", "leaf.txt"), b"leaf\n")
    write_file(p("with space and \u00e9.txt"), b"unicode name\n")
    with open(p("sparse.bin"), "wb") as f:
        f.seek(8 << 20)
        f.write(b"end of sparse file")
    make_hdf5_sample(p("data", "sample.h5"))
    make_pytables_sample(p("data", "table.h5"))
    # Hard links: two names in different directories.
    os.link(p("sub", "notes.txt"), p("data", "notes-hardlink.txt"))
    # Symlinks.
    os.symlink("hello.txt", p("link-to-hello"))
    os.symlink("../sub/deeper", p("data", "link-to-dir"))
    os.symlink("/nonexistent/absolute/target", p("dangling-abs"))
    os.symlink("does-not-exist", p("sub", "dangling-rel"))
    # Modes and owners.
    os.chmod(p("hello.txt"), 0o640)
    os.chmod(p("random.bin"), 0o755)
    os.chmod(p("sub", "notes.txt"), 0o444)
    os.chmod(p("empty_dir"), 0o700)
    os.chmod(p("sub", "deeper"), 0o750)
    os.chown(p("random.bin"), OTHER_UID, OTHER_GID)
    os.chown(p("empty_dir"), OTHER_UID, OTHER_GID)
    os.chown(p("link-to-hello"), OTHER_UID, OTHER_GID, follow_symlinks=False)
    # xattrs.
    os.setxattr(p("hello.txt"), "user.comment", b"greeting")
    os.setxattr(p("hello.txt"), "user.empty", b"")
    os.setxattr(p("sub"), "user.dir_attr", b"on a directory")
    os.setxattr(p("data", "sample.h5"), "user.binary", bytes(range(256)))
    # Fixed times, files first then directories deepest first, so that
    # creating entries does not overwrite the directory times set here.
    files = []
    for rel in reversed(walk(root)):
        path = p(rel) if rel else root
        st = os.lstat(path)
        if stat.S_ISREG(st.st_mode):
            files.append(rel)
        when = T_OLD_NS if not stat.S_ISDIR(st.st_mode) else T_OLDER_NS
        os.utime(path, ns=(when, when + len(rel)), follow_symlinks=False)
    return sorted(files)


def change_everything(root):
    """A mix of changes of every kind, applied to root (the mount)."""
    p = lambda *a: os.path.join(root, *a)  # noqa: E731
    # New files and directories.
    os.makedirs(p("new", "nested"))
    write_file(p("new", "nested", "file.txt"), b"brand new\n" * 50)
    write_file(p("new", "empty"), b"")
    # Modified files: in place, appended, truncated.
    write_file(p("random.bin"), b"PATCH", "r+b")
    write_file(p("sub", "deeper", "deepest", "leaf.txt"), b"more\n", "ab")
    os.truncate(p("sparse.bin"), 1000)
    # Renames: a file over an existing name, a directory.
    os.rename(p("with space and \u00e9.txt"), p("renamed.txt"))
    os.rename(p("empty"), p("hello.txt"))
    os.rename(p("sub", "deeper"), p("moved-deeper"))
    # Deletions.
    os.unlink(p("sub", "notes.txt"))
    os.unlink(p("dangling-abs"))
    os.rmdir(p("empty_dir"))
    # Symlinks and hard links.
    os.symlink("renamed.txt", p("new", "link-to-renamed"))
    os.link(p("random.bin"), p("new", "random-hardlink"))
    os.link(p("data", "notes-hardlink.txt"), p("new", "notes-3rd-name"))
    # Modes, owners, times, xattrs.
    os.chmod(p("random.bin"), 0o600)
    os.chmod(p("new"), 0o701)
    os.chown(p("renamed.txt"), OTHER_UID, OTHER_GID)
    os.utime(p("renamed.txt"), ns=(1_111_111_111_111_111_111,
                                   1_222_222_222_222_222_222))
    os.utime(p("new", "link-to-renamed"), ns=(1_000_000_000_000_000_001,
                                              1_300_000_000_000_000_003),
             follow_symlinks=False)
    os.setxattr(p("renamed.txt"), "user.added", b"in the mount")
    os.setxattr(p("data", "sample.h5"), "user.binary", b"replaced")
    os.removexattr(p("sub"), "user.dir_attr")
    os.setxattr(p("new", "nested"), "user.on_new_dir", b"yes")


def run_on_terminal(argv, timeout=60):
    """Run argv with standard error on a pseudo-terminal (progress bars
    show only there), stdout piped. Returns (returncode, stdout, what the
    terminal showed)."""
    import pty
    import subprocess
    master, slave = pty.openpty()
    try:
        res = subprocess.run([str(a) for a in argv],
                             stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=slave,
                             timeout=timeout * SLOWDOWN)
        os.close(slave)
        slave = None
        shown = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO once the terminal's last writer is gone
                break
            if not chunk:
                break
            shown += chunk
    finally:
        if slave is not None:
            os.close(slave)
        os.close(master)
    return res.returncode, res.stdout, shown
