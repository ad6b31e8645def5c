"""A hostile SOURCE and crafted files.

The daemon runs as root over a SOURCE that others change at any moment and
serves files anyone may have crafted. Two suites:

- a workload writes through the mount while a mutator swaps SOURCE's
  names for symlinks into a decoy tree outside SOURCE, FIFOs, device
  nodes, sockets and directories, edits files in place and renames
  directories. After every round the decoy tree is unchanged (bytes,
  modes, owners, times, xattrs), the daemon answers within a deadline, and
  at the end every byte written through the mount is in SOURCE, in a
  conflict copy or in the rescue directory;
- a corpus of crafted HDF5 files made here (byte flips in the superblock,
  object headers, B-trees and heaps, truncations, deep nesting, huge
  dimensions): for each, status and validation give an answer and the
  daemon stays alive.
"""

import json
import os
import random
import stat
import time

import h5py
import numpy as np
import pytest

import rlib
from rlib import helpers

H5MEMFS = rlib.DAEMON


def cli(*args, timeout=120):
    return helpers.run([str(H5MEMFS), *map(str, args)],
                       timeout=timeout * rlib.SLOWDOWN, check=False)


# --- the decoy tree -------------------------------------------------------

def make_decoy(root):
    root.mkdir()
    (root / "c").mkdir()
    for rel in ("a", "b", "c/d"):
        helpers.write_file(root / rel, f"decoy {rel}\n".encode() * 50)
        os.chmod(root / rel, 0o600)
        os.setxattr(root / rel, "user.decoy", rel.encode())
        os.utime(root / rel, ns=(helpers.T_OLD_NS, helpers.T_OLD_NS))
    os.utime(root / "c", ns=(helpers.T_OLD_NS, helpers.T_OLD_NS))
    return root


def fingerprint(root):
    """Everything an escape would change; atimes aside (reads move them)."""
    out = {}
    for rel in helpers.walk(root):
        p = os.path.join(root, rel) if rel else str(root)
        st = os.lstat(p)
        data = helpers.read_file(p) if stat.S_ISREG(st.st_mode) else None
        out[rel] = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns,
                    st.st_ctime_ns, st.st_nlink, data,
                    sorted((n, os.getxattr(p, n, follow_symlinks=False))
                           for n in os.listxattr(p, follow_symlinks=False)))
    return out


# --- the mutator ----------------------------------------------------------

SWAPS = ["symlink", "fifo", "chardev", "socket", "directory", "edit"]


def remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        for rel in reversed(helpers.walk(path)[1:]):
            p = os.path.join(path, rel)
            (os.rmdir if os.path.isdir(p) and not os.path.islink(p)
             else os.unlink)(p)
        os.rmdir(path)
    else:
        os.unlink(path)


def swap(path, kind, decoy):
    """Replace SOURCE's entry at path by something hostile."""
    if kind == "edit":
        if os.path.isfile(path) and not os.path.islink(path):
            with open(path, "r+b") as f:
                f.write(b"EDITED BEHIND THE MOUNT")
        return
    remove(path)
    if kind == "symlink":
        os.symlink(decoy / "a", path)
    elif kind == "fifo":
        os.mkfifo(path, 0o666)
    elif kind == "chardev":
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    elif kind == "socket":
        os.mknod(path, stat.S_IFSOCK | 0o666)
    elif kind == "directory":
        os.mkdir(path)
        os.symlink(decoy / "c", os.path.join(path, "inner"))


def found_somewhere(source, rescue, rel, data):
    """Is `data` (the last bytes written to rel through the mount) in
    SOURCE at rel, in a conflict copy of it, or in the rescue directory?"""
    d, leaf = os.path.split(rel)
    candidates = [os.path.join(source, rel)]
    if os.path.isdir(os.path.join(source, d)):
        candidates += [os.path.join(source, d, n)
                       for n in os.listdir(os.path.join(source, d))
                       if n.startswith(leaf + ".conflict-")]
    if os.path.isdir(rescue):
        for r, _dirs, files in os.walk(rescue):
            candidates += [os.path.join(r, n) for n in files
                           if n.startswith(leaf.replace("/", "%"))
                           or n.endswith(leaf)]
    for c in candidates:
        if os.path.isfile(c) and not os.path.islink(c) and \
                helpers.read_file(c) == data:
            return c
    return None


ROUNDS = 8
NAMES = ["f0", "f1", "f2", "f3", "sub/g0", "sub/g1", "sub/deeper/h0"]
SPECIAL = ["p0", "sub/c0"]


@pytest.mark.deadline(600)
def test_a_hostile_source_never_leaks_hangs_or_loses_data(
        mount, source, datapath, open_tmp):
    decoy = make_decoy(open_tmp / "decoy")
    before = fingerprint(decoy)
    rescue = open_tmp / "rescue"
    rng = random.Random(12)
    m = mount(source, [datapath, f"rescue={rescue}"], allow_stderr=True)
    os.makedirs(m / "sub/deeper")
    os.mkfifo(m / "p0", 0o640)
    os.mknod(m / "sub/c0", stat.S_IFCHR | 0o640, os.makedev(1, 3))
    last = {}
    for rnd in range(ROUNDS):
        for rel in SPECIAL:  # metadata of special files, written back
            for op in (lambda p: os.chmod(p, 0o4755 if rnd % 2 else 0o640),
                       lambda p: os.utime(p, ns=(helpers.T_OLDER_NS,) * 2)):
                try:
                    op(m / rel)
                except OSError:
                    pass
        # the workload: data and metadata of every file, through the mount
        for i, rel in enumerate(NAMES):
            data = f"round {rnd} {rel}\n".encode() * (10 + i)
            try:
                helpers.write_file(m / rel, data)
            except OSError:
                continue  # its SOURCE entry is no file any more: EIO
            last[rel] = data
            for op in (lambda p: os.chmod(p, 0o4755),
                       lambda p: os.utime(p, ns=(helpers.T_OLDER_NS,) * 2),
                       lambda p: os.setxattr(p, "user.round",
                                             str(rnd).encode())):
                try:
                    op(m / rel)
                except OSError:
                    pass
        # the mutator: swap some of SOURCE's names
        present = [rel for rel in NAMES + SPECIAL
                   if os.path.lexists(source / rel)]
        for rel in rng.sample(present, min(3, len(present))):
            swap(source / rel, rng.choice(SWAPS), decoy)
        if rnd == ROUNDS // 2 and os.path.isdir(source / "sub/deeper"):
            os.rename(source / "sub/deeper", source / "sub/moved")
        t0 = time.monotonic()
        cli("sync", m.path)  # may report failures; must answer
        assert time.monotonic() - t0 < 60 * rlib.SLOWDOWN
        rlib.daemon_answers(m)
        assert fingerprint(decoy) == before, f"round {rnd}"
    rc = m.unmount()
    m.expect_exit = rc  # 2: something went to the rescue directory
    assert rc in (0, 2), m.stderr()
    assert fingerprint(decoy) == before
    lost = {rel: data for rel, data in last.items()
            if not found_somewhere(source, rescue, rel, data)}
    assert not lost, (sorted(lost), m.stderr())


# --- crafted HDF5 files ---------------------------------------------------

def base_file(path, latest):
    with h5py.File(path, "w", libver="latest" if latest else "earliest") as f:
        g = f.create_group("g")
        g.create_dataset("d", data=np.arange(1000, dtype="i4"))
        g.create_dataset("c", data=np.arange(4096, dtype="f8"),
                         chunks=(256,))
        for i in range(20):
            g.attrs[f"a{i}"] = i
        f.create_group("h").create_group("i")
    return helpers.read_file(path)


def flip(data, off, mask=0xFF):
    b = bytearray(data)
    if 0 <= off < len(b):
        b[off] ^= mask
    return bytes(b)


def crafted(tmp):
    """(name, bytes) of every crafted file."""
    out = []
    for latest in (False, True):
        tag = "v3" if latest else "v0"
        good = base_file(tmp / f"base-{tag}.h5", latest)
        out.append((f"good-{tag}.h5", good))
        for off in (8, 9, 13, 14, 15, 24, 40, 56, 64, 80):
            out.append((f"sb{off}-{tag}.h5", flip(good, off)))
        for sig in (b"OHDR", b"TREE", b"HEAP", b"SNOD", b"BTHD", b"FRHP",
                    b"OCHK"):
            at = good.find(sig)
            for delta in (4, 5, 8, 16, 24):
                if at >= 0:
                    out.append((f"{sig.decode()}{delta}-{tag}.h5",
                                flip(good, at + delta)))
        for frac in (0.1, 0.5, 0.9):
            out.append((f"cut{int(frac * 100)}-{tag}.h5",
                        good[:int(len(good) * frac)]))
        rng = random.Random(len(good))
        for k in range(6):
            b = bytearray(good)
            for _ in range(16):
                b[rng.randrange(len(b))] = rng.randrange(256)
            out.append((f"noise{k}-{tag}.h5", bytes(b)))
    deep = tmp / "deep.h5"
    with h5py.File(deep, "w") as f:
        g = f
        for i in range(150):
            g = g.create_group(f"n{i}")
    out.append(("deep.h5", helpers.read_file(deep)))
    huge = tmp / "huge.h5"
    with h5py.File(huge, "w") as f:
        f.create_dataset("big", shape=(2 ** 40,), dtype="u1", chunks=(1024,))
        f.create_dataset("many", shape=(2 ** 31, 2 ** 20), dtype="u1",
                         chunks=(1, 1024))
    out.append(("huge.h5", helpers.read_file(huge)))
    return out


@pytest.mark.deadline(600)
def test_crafted_files_get_an_answer_and_never_take_the_daemon_down(
        mount, source, open_tmp):
    work = open_tmp / "craft"
    work.mkdir()
    files = crafted(work)
    for name, data in files:
        helpers.write_file(source / name, data)
    m = mount(source, ["validate=strict", f"rescue={open_tmp}/rescue"],
              allow_stderr=True)
    for name, data in files:
        assert helpers.read_file(m / name) == data  # loaded
        res = cli("status", m / name, "--json", "--hdf5")
        assert res.returncode == 0, (name, res.stderr)
        doc = json.loads(res.stdout)
        entry = doc["files"][0] if "files" in doc else doc
        assert "hdf5" in json.dumps(entry), (name, res.stdout)
        # a change makes it a write-back candidate: validated
        fd = os.open(m / name, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, b"\0")
            try:
                os.fsync(fd)
            except OSError as e:
                assert e.errno == 5, (name, e)  # EIO: refused (strict)
        finally:
            os.close(fd)
        rlib.daemon_answers(m)
    good = [n for n, _ in files if n.startswith("good-")]
    for name in good:
        # a valid file stays valid with a byte appended: written back
        assert helpers.read_file(source / name).endswith(b"\0"), name
    rc = m.unmount()
    m.expect_exit = rc  # 2: something went to the rescue directory
    assert rc in (0, 2), m.stderr()
