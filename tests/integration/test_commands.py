"""The commands: `h5memfs status MNT [--json]`, `sync MNT [PATH...]`,
`discard PATH...`, `evict PATH...`. Each exits 0 when it succeeded for
every path, 1 otherwise with one message per failure; only a user who may
write a file may change its state. status also shows the data path
actually taken: on passthrough the daemon sees no read requests."""

import datetime
import errno
import json
import os
import subprocess

import pytest

import helpers
from acceptance import (DAEMON, SLOWDOWN, cli, expected_data_path,
                        file_status,
                        make_hdf5, mount_status, public_dir,
                        random_bytes, status)  # noqa: F401 (fixture)

MiB = 1 << 20

MOUNT_KEYS = {"format", "source", "volatile", "data_path", "max_memory",
              "memory_used", "files_loaded", "dirty_files", "dirty_bytes",
              "writebacks", "writeback_bytes", "writeback_errors",
              "conflicts", "invalid", "commits", "loads", "load_bytes",
              "read_requests", "write_requests", "evictions", "preload"}
FILE_KEYS = {"path", "state", "size", "memory_bytes", "dirty_bytes",
             "volatile", "last_writeback", "hdf5"}
STATES = {"not loaded", "loading", "clean", "dirty", "volatile",
          "invalid HDF5", "conflict", "from SOURCE"}


@pytest.fixture
def src(empty_source):
    helpers.write_file(empty_source / "a.txt", b"alpha\n" * 1000)
    os.makedirs(empty_source / "sub/deep")
    helpers.write_file(empty_source / "sub/deep/b.bin", random_bytes(200000))
    make_hdf5(empty_source / "sub/c.h5")
    return empty_source


def one_message(res):
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 1, (res.returncode, res.stdout, res.stderr)
    assert len(lines) == 1, f"expected one message, got: {res.stderr!r}"
    return lines[0]


# --- status ---------------------------------------------------------------

def test_status_json_describes_the_mount_and_every_file(mount, src):
    m = mount(src)
    doc = status(m)
    assert set(doc) >= {"mount", "mountpoint", "files"}
    ms = doc["mount"]
    assert MOUNT_KEYS <= set(ms), MOUNT_KEYS - set(ms)
    assert set(ms["preload"]) >= {"state", "files", "bytes", "skipped"}
    assert ms["source"] == str(src) and doc["mountpoint"] == str(m.path)
    assert ms["volatile"] is False
    assert ms["data_path"] in ("passthrough", "daemon")
    if expected_data_path():
        assert ms["data_path"] == expected_data_path()
    assert ms["files_loaded"] == 0 and ms["dirty_files"] == 0
    files = {f["path"]: f for f in doc["files"]}
    assert set(files) == {"a.txt", "sub/deep/b.bin", "sub/c.h5"}
    for rel, f in files.items():
        assert FILE_KEYS <= set(f), (rel, FILE_KEYS - set(f))
        assert f["state"] == "not loaded", f
        assert f["size"] == os.path.getsize(src / rel), f
        assert f["memory_bytes"] == 0 and f["dirty_bytes"] == 0, f
        assert f["volatile"] is False
        assert f["last_writeback"]["time"] is None
    assert m.unmount() == 0


def test_status_follows_a_file_from_not_loaded_to_dirty_to_written(
        mount, src):
    m = mount(src)
    helpers.read_file(m / "a.txt")
    st = file_status(m, "a.txt")
    assert st["state"] == "clean" and st["memory_bytes"] >= 6000, st
    ms = mount_status(m)
    assert ms["files_loaded"] == 1 and ms["loads"] >= 1, ms
    assert ms["load_bytes"] >= 6000, ms
    fd = os.open(m / "a.txt", os.O_RDWR)
    try:
        os.pwrite(fd, b"CHANGED", 100)
        st = file_status(m, "a.txt")
        assert st["state"] == "dirty" and st["dirty_bytes"] > 0, st
        ms = mount_status(m)
        assert ms["dirty_files"] == 1 and ms["dirty_bytes"] > 0, ms
        before = datetime.datetime.now(datetime.timezone.utc)
        os.fsync(fd)
    finally:
        os.close(fd)
    st = file_status(m, "a.txt")
    assert st["state"] == "clean" and st["dirty_bytes"] == 0, st
    lw = st["last_writeback"]
    assert lw["ok"] is True and lw["error"] is None, lw
    when = datetime.datetime.strptime(lw["time"], "%Y-%m-%dT%H:%M:%SZ") \
        .replace(tzinfo=datetime.timezone.utc)
    assert abs((when - before).total_seconds()) < 60, lw
    ms = mount_status(m)
    assert ms["writebacks"] >= 1 and ms["writeback_bytes"] >= 7, ms
    assert ms["dirty_files"] == 0 and ms["writeback_errors"] == 0, ms
    assert m.unmount() == 0


def test_status_sees_writes_still_held_open_by_their_writer(mount, src):
    """A program that wrote and keeps its file open (no fsync, no close):
    status already says dirty, on either data path."""
    m = mount(src)
    fd = os.open(m / "a.txt", os.O_RDWR)
    try:
        os.pwrite(fd, b"pending", 0)
        st = file_status(m, "a.txt")
        assert st["state"] == "dirty" and st["dirty_bytes"] > 0, st
    finally:
        os.close(fd)
    assert m.unmount() == 0


def test_status_sees_a_new_file_its_writer_still_holds_open(mount, src):
    m = mount(src)
    fd = os.open(m / "fresh.bin", os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.write(fd, b"f" * 100000)
        st = file_status(m, "fresh.bin")
        assert st["size"] == 100000 and st["memory_bytes"] >= 100000, st
        assert st["state"] == "dirty", st
    finally:
        os.close(fd)
    assert m.unmount() == 0


def test_status_shows_an_hdf5_file_its_writer_holds_open(mount, src):
    """The case h5clear exists for, seen live: an h5py writer (libver
    latest) has flushed and keeps the file open; status shows its bytes
    and that a writer has it open, without the writer doing fsync."""
    from test_validation import WRITER
    m = mount(src)
    proc = subprocess.Popen([helpers.PYTHON, "-c", WRITER,
                             str(m / "live.h5"), "latest"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "ready\n", proc.stderr.read()
        size = os.stat(m / "live.h5").st_size
        st = file_status(m, "live.h5")
        assert st["size"] == size and st["state"] == "dirty", st
        assert st["hdf5"] is not None, st
        assert st["hdf5"]["writer_open"] is True, st
        assert st["hdf5"]["opens"] is True, st
        proc.stdin.write("\n")
        proc.stdin.flush()
        proc.communicate(timeout=30 * SLOWDOWN)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert m.unmount() == 0


def test_status_works_right_after_a_write_grows_a_new_file(mount, src):
    m = mount(src)
    fd = os.open(m / "grown.bin", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.pwrite(fd, b"x" * 10, MiB)
        res = cli("status", m.path, "--json")
        assert res.returncode == 0, res.stderr
        files = {f["path"]: f for f in json.loads(res.stdout)["files"]}
        assert files["grown.bin"]["size"] == MiB + 10, files["grown.bin"]
        res = cli("status", m.path)
        assert res.returncode == 0, res.stderr
    finally:
        os.close(fd)
    assert m.unmount() == 0


def test_status_table_has_a_header_and_a_line_per_file(mount, src):
    m = mount(src)
    helpers.write_file(m / "a.txt", b"dirty now")
    helpers.read_file(m / "sub/deep/b.bin")
    res = cli("status", m.path, "--all")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    lines = out.splitlines()
    assert any(ln.split()[:4] == ["STATE", "SIZE", "MEMORY", "DIRTY"]
               for ln in lines), out
    assert ms_path_line(lines, "data path") is not None, out
    data_path = mount_status(m)["data_path"]
    assert data_path in ms_path_line(lines, "data path"), out
    for rel, state in [("a.txt", "dirty"), ("sub/deep/b.bin", "clean"),
                       ("sub/c.h5", "not loaded")]:
        row = [ln for ln in lines if ln.rstrip().endswith(str(m / rel))]
        assert len(row) == 1, (rel, out)
        assert row[0].startswith(state), (rel, row[0])
    assert m.unmount() == 0


def ms_path_line(lines, word):
    for ln in lines:
        if word in ln:
            return ln
    return None


def test_the_data_path_taken_shows_in_the_read_requests(mount, src):
    m = mount(src)
    path = mount_status(m)["data_path"]
    if expected_data_path():
        assert path == expected_data_path()
    for _ in range(20):
        subprocess.run(["cat", str(m / "sub/deep/b.bin")], timeout=10,
                       check=True, stdout=subprocess.DEVNULL)
        helpers.read_file(m / "a.txt")
    reads = mount_status(m)["read_requests"]
    if path == "passthrough":
        assert reads == 0, f"passthrough, yet the daemon served {reads} reads"
    else:
        assert reads > 0, "daemon path, yet the daemon served no read"
    assert m.unmount() == 0


def test_a_file_read_right_after_it_is_written_comes_from_the_page_cache(
        mount, src):
    """Writing moves mtime past atime, so the open that follows finds atime
    due: only the first page is dropped from the kernel's cache, so that a
    read moves atime, rather than making the whole file come through the
    daemon again."""
    m = mount(src)
    data = random_bytes(4 * MiB)
    helpers.write_file(m / "fresh.bin", data)
    # The kernel stamps mtime with its coarse clock, which may still be
    # behind the atime the create took: make atime due for certain.
    st = os.stat(m / "fresh.bin")
    os.utime(m / "fresh.bin", ns=(helpers.T_OLD_NS, st.st_mtime_ns))
    before = mount_status(m)["read_requests"]
    with open(m / "fresh.bin", "rb") as f:
        assert f.read() == data
    # the first page comes through the daemon (it moves atime), the rest
    # of the 4 MiB (16 or more requests) from the cache
    assert mount_status(m)["read_requests"] - before <= 2
    st = os.stat(m / "fresh.bin")
    assert st.st_atime_ns > st.st_mtime_ns, "relatime: the read moves atime"
    assert m.unmount() == 0


def test_status_of_a_volatile_mount_says_so(mount, src):
    m = mount(src, options=["volatile"])
    helpers.write_file(m / "a.txt", b"scratch")
    ms = mount_status(m)
    assert ms["volatile"] is True
    assert file_status(m, "a.txt")["state"] == "volatile"
    assert m.unmount() == 0


# --- sync -------------------------------------------------------------------

def test_sync_of_the_whole_mount_writes_every_dirty_file(mount, src):
    m = mount(src)
    helpers.write_file(m / "a.txt", b"A2")
    helpers.write_file(m / "sub/deep/b.bin", b"B2")
    helpers.write_file(m / "new.txt", b"N")
    res = cli("sync", m.path)
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"{m.path}: written back\n", res.stdout
    assert helpers.read_file(src / "a.txt") == b"A2"
    assert helpers.read_file(src / "sub/deep/b.bin") == b"B2"
    assert helpers.read_file(src / "new.txt") == b"N"
    assert mount_status(m)["dirty_files"] == 0
    assert m.unmount() == 0


def test_more_concurrent_syncs_than_worker_threads_all_finish(mount, src):
    """A sync of an open file first drains the kernel's cached writes of
    it (daemon path): the daemon must never wait for itself, not even
    with more commands at once than it has worker threads (setxattr
    locks the inode, so each command syncs a file of its own)."""
    m = mount(src)
    n = 40
    fds = [os.open(m / f"open{i}", os.O_RDWR | os.O_CREAT)
           for i in range(n)]
    procs = []
    try:
        for i, fd in enumerate(fds):
            os.write(fd, f"cached {i}".encode())
        procs = [subprocess.Popen([str(DAEMON), "sync", str(m.path),
                                   str(m / f"open{i}")],
                                  stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE)
                 for i in range(n)]
        errs = [p.communicate(timeout=60 * SLOWDOWN)[1] for p in procs]
        assert [p.returncode for p in procs] == [0] * n, errs
        for i in range(n):
            assert helpers.read_file(src / f"open{i}") == \
                f"cached {i}".encode()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for fd in fds:
            os.close(fd)
    assert m.unmount() == 0


def test_commands_find_a_mount_point_with_spaces_and_long_mount_lines(
        mount, src, tmp_path):
    """mountinfo escapes a space as \\040, and other mounts' lines may be
    longer than any fixed buffer."""
    mp = tmp_path / "mount point with spaces"
    mp.mkdir()
    m = mount(src, mountpoint=mp)
    helpers.write_file(m / "a.txt", b"spaced")
    res = cli("sync", m.path, m / "a.txt")
    assert res.returncode == 0, res.stderr
    assert helpers.read_file(src / "a.txt") == b"spaced"
    long_dir = tmp_path
    for _ in range(16):  # each space is 4 bytes in mountinfo: > 12 KiB
        long_dir = long_dir / (" " * 200)
    long_dir.mkdir(parents=True)
    helpers.run(["mount", "-t", "tmpfs", "-o", "size=1m", "t" * 1000,
                 str(long_dir)], timeout=10)
    try:
        res = cli("status", m.path)
        assert res.returncode == 0, res.stderr
    finally:
        helpers.run(["umount", "-l", str(long_dir)], timeout=10,
                    check=False)
    assert m.unmount() == 0


def test_sync_of_paths_writes_those_and_says_so_for_each(mount, src):
    m = mount(src)
    helpers.write_file(m / "a.txt", b"A2")
    helpers.write_file(m / "sub/deep/b.bin", b"B2")
    helpers.write_file(m / "sub/other.txt", b"not synced yet")
    res = cli("sync", m.path, m / "a.txt", m / "sub/deep/b.bin")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [f"{m / 'a.txt'}: written back",
                                       f"{m / 'sub/deep/b.bin'}: "
                                       "written back"], res.stdout
    assert helpers.read_file(src / "a.txt") == b"A2"
    assert helpers.read_file(src / "sub/deep/b.bin") == b"B2"
    assert not (src / "sub/other.txt").exists()
    assert file_status(m, "sub/other.txt")["state"] == "dirty"
    assert m.unmount() == 0
    assert helpers.read_file(src / "sub/other.txt") == b"not synced yet"


def test_sync_of_a_file_only_read_leaves_it_untouched_in_source(mount, src):
    """Not even its ctime: another node watching it would take that for a
    change. (On the daemon path the kernel sends back the times it holds,
    unchanged, after the command's setxattr.)"""
    before = os.stat(src / "a.txt")
    m = mount(src)
    helpers.read_file(m / "a.txt")
    res = cli("sync", m.path / "a.txt")
    assert res.returncode == 0, res.stderr
    res = cli("sync", m.path)
    assert res.returncode == 0, res.stderr
    assert m.unmount() == 0
    after = os.stat(src / "a.txt")
    assert (after.st_ino, after.st_mtime_ns, after.st_ctime_ns) == \
        (before.st_ino, before.st_mtime_ns, before.st_ctime_ns)


def test_sync_on_a_terminal_shows_progress_on_stderr(mount, src):
    m = mount(src)
    helpers.write_file(m / "a.txt", b"A3" * 100000)
    rc, out, shown = helpers.run_on_terminal([DAEMON, "sync", str(m.path)])
    assert rc == 0
    assert b"#" in shown or b"%" in shown or b"/s" in shown, shown
    assert helpers.read_file(src / "a.txt") == b"A3" * 100000
    assert m.unmount() == 0


def test_sync_of_an_unknown_path_fails_with_one_message(mount, src):
    m = mount(src)
    msg = one_message(cli("sync", m.path, m / "no/such/file"))
    assert "no/such/file" in msg
    assert m.unmount() == 0


# --- discard ------------------------------------------------------------

def test_discard_drops_unsaved_changes(mount, src):
    m = mount(src)
    old = helpers.read_file(src / "a.txt")
    helpers.write_file(m / "a.txt", b"unwanted, and longer " * 1000)
    res = cli("discard", m / "a.txt")
    assert res.returncode == 0, res.stderr
    assert os.path.getsize(m / "a.txt") == len(old)
    assert helpers.read_file(m / "a.txt") == old
    st = file_status(m, "a.txt")
    assert st["state"] == "clean" and st["dirty_bytes"] == 0, st
    assert m.unmount() == 0
    assert helpers.read_file(src / "a.txt") == old


def test_discard_is_seen_by_a_handle_already_open(mount, src):
    m = mount(src)
    old = helpers.read_file(src / "sub/deep/b.bin")
    fd = os.open(m / "sub/deep/b.bin", os.O_RDWR)
    try:
        os.pwrite(fd, b"\0" * 5000, 0)
        res = cli("discard", m / "sub/deep/b.bin")
        assert res.returncode == 0, res.stderr
        assert os.pread(fd, len(old) + 10, 0) == old
    finally:
        os.close(fd)
    assert m.unmount() == 0
    assert helpers.read_file(src / "sub/deep/b.bin") == old


def test_discard_of_a_file_not_in_source_fails(mount, src):
    m = mount(src)
    helpers.write_file(m / "only-here.txt", b"new")
    msg = one_message(cli("discard", m / "only-here.txt"))
    assert "only-here.txt" in msg and "SOURCE" in msg, msg
    assert helpers.read_file(m / "only-here.txt") == b"new"
    assert m.unmount() == 0
    assert helpers.read_file(src / "only-here.txt") == b"new"


def test_discard_of_several_paths_and_of_a_file_never_loaded(mount, src):
    m = mount(src)
    helpers.write_file(m / "a.txt", b"x")
    helpers.write_file(m / "sub/deep/b.bin", b"y")
    res = cli("discard", m / "a.txt", m / "sub/deep/b.bin", m / "sub/c.h5")
    assert res.returncode == 0, res.stderr
    assert len(res.stdout.splitlines()) == 3, res.stdout
    assert helpers.read_file(m / "a.txt") == helpers.read_file(src / "a.txt")
    assert helpers.read_file(m / "sub/deep/b.bin") == \
        helpers.read_file(src / "sub/deep/b.bin")
    assert mount_status(m)["dirty_files"] == 0
    assert m.unmount() == 0


# --- evict ------------------------------------------------------------------

def test_evict_drops_a_clean_image_which_reloads_intact(mount, src):
    m = mount(src)
    data = helpers.read_file(m / "sub/deep/b.bin")
    used = mount_status(m)["memory_used"]
    res = cli("evict", m / "sub/deep/b.bin")
    assert res.returncode == 0, res.stderr
    st = file_status(m, "sub/deep/b.bin")
    assert st["state"] == "not loaded" and st["memory_bytes"] == 0, st
    ms = mount_status(m)
    assert ms["memory_used"] <= used - 200000, (used, ms["memory_used"])
    assert helpers.read_file(m / "sub/deep/b.bin") == data
    assert file_status(m, "sub/deep/b.bin")["state"] == "clean"
    assert m.unmount() == 0


def test_evict_refuses_a_dirty_file(mount, src):
    m = mount(src)
    helpers.write_file(m / "a.txt", b"unsaved")
    msg = one_message(cli("evict", m / "a.txt"))
    assert "a.txt" in msg and "unsaved" in msg, msg
    assert file_status(m, "a.txt")["state"] == "dirty"
    assert helpers.read_file(m / "a.txt") == b"unsaved"
    assert m.unmount() == 0
    assert helpers.read_file(src / "a.txt") == b"unsaved"


def test_evict_refuses_an_open_file(mount, src):
    m = mount(src)
    with open(m / "a.txt", "rb") as f:
        msg = one_message(cli("evict", m / "a.txt"))
        assert "a.txt" in msg and "open" in msg, msg
        assert file_status(m, "a.txt")["state"] == "clean"
        assert f.read() == helpers.read_file(src / "a.txt")
    assert m.unmount() == 0


# --- errors -------------------------------------------------------------

def test_commands_outside_a_mount_fail_with_one_message(tmp_path, mount,
                                                         src):
    plain = tmp_path / "plain"
    plain.mkdir()
    helpers.write_file(plain / "f", b"f")
    m = mount(src)
    for args in (["status", plain], ["status", plain, "--json"],
                 ["status", "/dev/shm"], ["status", tmp_path / "missing"],
                 ["sync", plain], ["sync", tmp_path / "missing"],
                 ["discard", plain / "f"], ["evict", plain / "f"],
                 ["discard", tmp_path / "missing"]):
        res = cli(*args)
        one_message(res)
        assert res.stdout == "", (args, res.stdout)
    assert m.unmount() == 0


def test_discard_and_evict_of_unknown_paths_in_a_mount_fail(mount, src):
    m = mount(src)
    for verb in ("discard", "evict"):
        msg = one_message(cli(verb, m / "nope.h5"))
        assert "nope.h5" in msg, msg
    assert m.unmount() == 0


def test_one_failing_path_fails_the_command_but_not_the_others(mount, src):
    m = mount(src)
    helpers.write_file(m / "a.txt", b"A9")
    res = cli("sync", m.path, m / "missing", m / "a.txt")
    assert res.returncode == 1
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert helpers.read_file(src / "a.txt") == b"A9"
    assert m.unmount() == 0


# --- permissions ------------------------------------------------------------

@pytest.fixture
def shared(public_dir, mount):
    """A mount with allow_other in a directory every user can reach: f is
    root's 0644, g is 0666."""
    src = public_dir / "src"
    src.mkdir(mode=0o755)
    os.chmod(src, 0o755)
    helpers.write_file(src / "f.txt", b"root's file\n")
    os.chmod(src / "f.txt", 0o644)
    helpers.write_file(src / "g.txt", b"everyone's file\n")
    os.chmod(src / "g.txt", 0o666)
    mp = public_dir / "mnt"
    mp.mkdir()
    m = mount(src, options=["allow_other"], mountpoint=mp)
    return m, src


def test_a_user_who_may_not_write_a_file_may_not_change_its_state(shared):
    m, src = shared
    helpers.write_file(m / "f.txt", b"root's change\n")
    for verb in ("sync", "discard", "evict"):
        args = [verb] + ([m.path] if verb == "sync" else []) + [m / "f.txt"]
        res = cli(*args, user="nobody")
        msg = one_message(res)
        assert "permission denied" in msg.lower(), (verb, msg)
    # Nothing happened to it.
    assert file_status(m, "f.txt")["state"] == "dirty"
    assert helpers.read_file(src / "f.txt") == b"root's file\n"
    r = helpers.run(["setpriv", "--reuid=65534", "--regid=65534",
                     "--clear-groups", helpers.PYTHON, "-c",
                     "import os, sys\n"
                     "try:\n"
                     "    os.setxattr(sys.argv[1], 'user.h5memfs.volatile',"
                     " b'1')\n"
                     "except OSError as e:\n"
                     "    print(e.errno)\n", str(m / "f.txt")], timeout=30)
    assert r.stdout.strip() in (str(errno.EACCES), str(errno.EPERM)), \
        r.stdout
    assert file_status(m, "f.txt")["volatile"] is False
    assert m.unmount() == 0
    assert helpers.read_file(src / "f.txt") == b"root's change\n"


def test_a_user_who_may_write_a_file_may_sync_it_and_anyone_may_read_status(
        shared):
    m, src = shared
    helpers.write_file(m / "g.txt", b"changed\n")
    res = cli("sync", m.path, m / "g.txt", user="nobody")
    assert res.returncode == 0, res.stderr
    assert helpers.read_file(src / "g.txt") == b"changed\n"
    res = cli("status", m.path, "--json", "--all", user="nobody")
    assert res.returncode == 0, res.stderr
    paths = {f["path"] for f in json.loads(res.stdout)["files"]}
    assert {"f.txt", "g.txt"} <= paths
    assert m.unmount() == 0


# --- a command line without traps ----------------------------------------

def test_sync_of_several_files_writes_every_one_given(mount, src):
    """`sync A B C` with files only: all three (not the last two)."""
    m = mount(src)
    for rel in ("a.txt", "sub/deep/b.bin", "sub/new.txt"):
        helpers.write_file(m / rel, b"synced " + rel.encode())
    res = cli("sync", m / "a.txt", m / "sub/deep/b.bin", m / "sub/new.txt")
    assert res.returncode == 0, res.stderr
    for rel in ("a.txt", "sub/deep/b.bin", "sub/new.txt"):
        assert helpers.read_file(src / rel) == b"synced " + rel.encode()
    assert len(res.stdout.splitlines()) == 3, res.stdout
    assert mount_status(m)["dirty_files"] == 0
    assert m.unmount() == 0


def test_sync_of_several_paths_fails_when_one_fails(mount, src):
    m = mount(src)
    helpers.write_file(m / "a.txt", b"A")
    res = cli("sync", m / "no-such", m / "a.txt")
    assert res.returncode == 1
    assert "no-such" in res.stderr
    assert helpers.read_file(src / "a.txt") == b"A"
    assert m.unmount() == 0


@pytest.mark.parametrize("command", ["status", "sync", "discard", "evict",
                                     "unmount"])
def test_every_command_has_help(command):
    res = cli(command, "--help")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"usage: h5memfs {command}"), res.stdout
    assert res.stderr == ""


def test_an_unknown_command_is_refused_not_mounted(tmp_path):
    (tmp_path / "mnt").mkdir()
    res = cli("stats", tmp_path / "mnt")
    assert res.returncode == 1
    assert "unknown command 'stats'" in res.stderr, res.stderr
    assert not os.path.ismount(tmp_path / "mnt")
    res = cli("status", "--bogus", tmp_path / "mnt")
    assert res.returncode == 1 and "unknown option '--bogus'" in res.stderr


def test_option_limits_are_named_in_the_message(tmp_path):
    (tmp_path / "mnt").mkdir()
    for opt, limit in (("commit=99999999999", "at most 31536000 seconds"),
                       ("source_timeout=100000", "at most 86400 seconds"),
                       ("commit=-1", "from 0 to 31536000"),
                       ("log_level=loud", "error, warn, info or debug")):
        res = cli("-f", "-o", opt, tmp_path, tmp_path / "mnt")
        assert res.returncode == 1, (opt, res.stderr)
        assert limit in res.stderr, (opt, res.stderr)
        assert not os.path.ismount(tmp_path / "mnt")


def test_version_names_the_libraries():
    res = cli("-V")
    assert res.returncode == 0
    lines = res.stdout.splitlines()
    assert [ln.split()[0] for ln in lines] == ["h5memfs", "libfuse",
                                               "libhdf5"], res.stdout
    assert all(ln.split()[1] == "version" and ln.split()[2][0].isdigit()
               for ln in lines), res.stdout


def test_status_lists_only_the_files_in_memory_unless_all(mount, src):
    m = mount(src)
    helpers.write_file(m / "a.txt", b"dirty")
    helpers.read_file(m / "sub/deep/b.bin")
    doc = json.loads(cli("status", m.path, "--json").stdout)
    assert doc["mount"]["pid"] == m.proc.pid
    got = {f["path"]: f["state"] for f in doc["files"]}
    assert got == {"a.txt": "dirty", "sub/deep/b.bin": "clean"}, got
    assert all("hdf5" not in f for f in doc["files"])
    res = cli("status", m.path)
    assert f"daemon PID {m.proc.pid}" in res.stdout, res.stdout
    assert str(m / "sub/c.h5") not in res.stdout
    doc = json.loads(cli("status", m.path, "--json", "--all").stdout)
    assert {f["path"] for f in doc["files"]} == {"a.txt", "sub/deep/b.bin",
                                                 "sub/c.h5"}
    assert m.unmount() == 0


def test_status_hdf5_reports_what_libhdf5_sees_in_memory(mount, src):
    m = mount(src)
    helpers.read_file(m / "sub/c.h5")
    helpers.read_file(m / "a.txt")
    doc = json.loads(cli("status", m.path, "--json", "--hdf5").stdout)
    files = {f["path"]: f for f in doc["files"]}
    h5 = files["sub/c.h5"]["hdf5"]
    assert h5["opens"] is True and h5["superblock_version"] >= 0, h5
    assert h5["writer_open"] is False
    assert files["a.txt"]["hdf5"] is None
    res = cli("status", m.path, "--hdf5")
    assert "HDF5 superblock v" in res.stdout and "opens" in res.stdout
    assert m.unmount() == 0


def test_status_pages_through_many_files_in_memory(mount, empty_source):
    """More file documents than one xattr can carry (64 KiB)."""
    names = [f"{i:04d}-" + "n" * 150 for i in range(500)]
    for n in names:
        helpers.write_file(empty_source / n, b"x")
    m = mount(empty_source)
    for n in names:
        helpers.read_file(m / n)
    doc = json.loads(cli("status", m.path, "--json").stdout)
    assert sorted(f["path"] for f in doc["files"]) == names
    res = cli("status", m.path)
    assert sum(1 for ln in res.stdout.splitlines()
               if ln.startswith("clean")) == 500
    assert m.unmount() == 0


def test_status_never_truncates_paths_and_json_is_valid_for_any_name(
        mount, tmp_path):
    """Long SOURCE and file paths in full; names that are not UTF-8, and a
    mount point with a quote, give valid JSON that decodes to the bytes."""
    src = tmp_path / ("source-" + "s" * 120)
    deep = src / ("d" * 200) / ("e" * 200)
    os.makedirs(deep)
    helpers.write_file(deep / "long.txt", b"L")
    odd = os.fsencode(str(src)) + b"/caf\xe9-\"q\"\\\x01.bin"
    with open(odd, "wb") as f:
        f.write(b"odd")
    mp = tmp_path / 'm"nt'
    mp.mkdir()
    m = mount(src, mountpoint=mp)
    helpers.read_file(m / ("d" * 200) / ("e" * 200) / "long.txt")
    with open(os.fsencode(str(mp)) + b"/caf\xe9-\"q\"\\\x01.bin", "rb") as f:
        assert f.read() == b"odd"
    res = subprocess.run([str(DAEMON), "status", str(m.path)],
                         capture_output=True, timeout=60)
    table = res.stdout.decode(errors="surrogateescape")
    assert f"(source {src})" in table, table
    assert str(m / ("d" * 200) / ("e" * 200) / "long.txt") in table
    assert os.fsencode(str(mp)) + b"/caf\xe9-" in res.stdout
    for extra in ([], ["--all"]):
        out = subprocess.run([str(DAEMON), "status", str(m.path), "--json",
                              *extra], capture_output=True, timeout=60)
        assert out.returncode == 0, out.stderr
        doc = json.loads(out.stdout)   # raises on invalid JSON
        assert doc["mountpoint"] == str(mp)
        paths = {os.fsencode(f["path"]) for f in doc["files"]}
        assert b"caf\xe9-\"q\"\\\x01.bin" in paths, paths
    assert m.unmount() == 0


def test_evict_and_discard_say_the_real_cause(mount, src):
    m = mount(src)
    helpers.write_file(m / "new.txt", b"never written back")
    msg = one_message(cli("discard", m / "new.txt"))
    assert "no version in SOURCE" in msg, msg
    msg = one_message(cli("evict", m / "sub"))
    assert "directory" in msg, msg
    assert m.unmount() == 0


def test_sync_of_a_mount_on_a_terminal_shows_the_daemons_progress(mount,
                                                                  src):
    """The whole-mount bar counts the files the daemon writes back (its
    progress reports), not the paths given."""
    m = mount(src)
    for rel in ("a.txt", "sub/deep/b.bin", "sub/new.txt"):
        helpers.write_file(m / rel, b"x" * 50000)
    rc, out, shown = helpers.run_on_terminal([DAEMON, "sync", str(m.path)])
    assert rc == 0 and out == b""
    assert b"3/3 files" in shown and b"/s" in shown, shown
    assert mount_status(m)["dirty_files"] == 0
    assert m.unmount() == 0


def test_discard_of_an_open_file_that_changed_size_says_close_it(mount,
                                                                   src):
    """The daemon path only: the kernel keeps the size it knows of an
    open file, so discard refuses (EBUSY) and says why."""
    m = mount(src)
    if mount_status(m)["data_path"] != "daemon":
        assert m.unmount() == 0
        pytest.skip("the kernel's size only matters on the daemon path")
    fd = os.open(m / "a.txt", os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, b"more")
        msg = one_message(cli("discard", m / "a.txt"))
        assert "open and its size differs" in msg and "close it" in msg, msg
    finally:
        os.close(fd)
    assert m.unmount() == 0
