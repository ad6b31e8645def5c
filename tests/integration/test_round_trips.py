"""FUSE round trips the daemon spares: counted in the requests the daemon
logs with -o debug (libfuse prints each one's opcode)."""

import errno
import os

import pytest

import helpers
from acceptance import cli, mount_status


def opcodes(m, name):
    return m.stderr().count(f"opcode: {name} ")


def test_a_close_costs_no_flush_request(mount, empty_source):
    """Nothing happens at a close unless sync_on_close: the first FLUSH
    is answered ENOSYS and the kernel sends no more."""
    m = mount(empty_source, options=["debug"], allow_stderr=True)
    for i in range(20):
        helpers.write_file(m / f"f{i}", b"x" * i)
        assert helpers.read_file(m / f"f{i}") == b"x" * i
    assert m.unmount() == 0  # every RELEASE (sent after the close) in
    assert opcodes(m, "RELEASE") >= 40
    assert opcodes(m, "FLUSH") <= 1
    for i in range(20):
        assert helpers.read_file(empty_source / f"f{i}") == b"x" * i


def test_sync_on_close_still_gets_every_flush(mount, empty_source):
    m = mount(empty_source, options=["debug", "sync_on_close"],
              allow_stderr=True)
    for i in range(5):
        helpers.write_file(m / f"f{i}", b"data")
        # written back at the close itself, before the unmount
        assert helpers.read_file(empty_source / f"f{i}") == b"data"
    assert opcodes(m, "FLUSH") >= 5
    assert m.unmount() == 0


def test_status_counts_every_request_by_kind(mount, empty_source):
    """status's "requests" counts what the kernel sent, kind by kind, as
    libfuse's own debug log (one line per request) does."""
    m = mount(empty_source, options=["debug"], allow_stderr=True)
    before = mount_status(m)["requests"]
    for i in range(10):
        os.close(os.open(m / f"f{i}", os.O_CREAT | os.O_EXCL | os.O_WRONLY,
                         0o644))
    for i in range(3):
        os.mkdir(m / f"d{i}")
    for i in range(10):
        os.unlink(m / f"f{i}")
    after = mount_status(m)["requests"]

    def delta(kind):
        return after.get(kind, 0) - before.get(kind, 0)

    assert delta("create") == 10
    assert delta("mkdir") == 3
    assert delta("unlink") == 10
    assert after["init"] == 1
    logged = {k: opcodes(m, k.upper()) for k in ("create", "mkdir",
                                                  "unlink", "lookup")}
    assert logged["create"] == after["create"]
    assert logged["mkdir"] == after["mkdir"]
    assert logged["unlink"] == after["unlink"]
    assert logged["lookup"] == after.get("lookup", 0)
    assert m.unmount() == 0


def minor_faults(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[7])  # minflt


def test_reads_are_spliced_from_the_image_not_copied(mount, empty_source):
    """A READ that reaches the daemon is spliced from the image into
    /dev/fuse. The copy it replaced wrote each reply into a freshly
    mapped buffer: a page fault per 4 KiB, 32 per 128 KiB request."""
    data = os.urandom(32 << 20)
    helpers.write_file(empty_source / "big", data)
    m = mount(empty_source, options=["passthrough=off"])
    path = m / "big"
    assert helpers.read_file(path) == data  # loaded, cached
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        reads0 = mount_status(m)["requests"].get("read", 0)
        faults0 = minor_faults(m.pid)
        got = b"".join(iter(lambda: os.read(fd, 1 << 20), b""))
        faults = minor_faults(m.pid) - faults0
        reads = mount_status(m)["requests"]["read"] - reads0
    finally:
        os.close(fd)
    assert got == data
    assert reads >= 32  # the reads did come to the daemon
    assert faults < 4 * reads, (faults, reads)
    assert m.unmount() == 0


def test_the_status_command_asks_the_daemon_once(mount, empty_source):
    """`h5memfs status` reads each document (the mount's, its file list)
    with one GETXATTR: each one first drains the kernel's cached writes,
    so no size probe before it."""
    m = mount(empty_source, options=["debug"], allow_stderr=True)
    helpers.write_file(m / "f", b"x" * 1000)
    before = opcodes(m, "GETXATTR")
    out = cli("status", "--json", m.path, check=True).stdout
    assert '"dirty_files"' in out
    assert opcodes(m, "GETXATTR") - before == 2
    assert m.unmount() == 0


def test_the_unmount_asks_only_for_the_pid_before_detaching(
        mount, empty_source):
    """`h5memfs unmount` learns the daemon's PID from the root's
    user.h5memfs.pid, answered at once: no status document, whose read
    first drains the kernel's writes (a child that opens the mount, an
    OPENDIR), since the unmount flushes them anyway."""
    m = mount(empty_source, options=["debug"], allow_stderr=True)
    assert os.getxattr(m.path, "user.h5memfs.pid") == str(m.pid).encode()
    helpers.write_file(m / "f", b"x" * 1000)
    with pytest.raises(OSError) as e:
        os.getxattr(m / "f", "user.h5memfs.pid")
    assert e.value.errno == errno.ENODATA
    before = opcodes(m, "OPENDIR")
    res = cli("unmount", m.path)
    assert res.returncode == 0 and m.proc.poll() == 0, (res, m.stderr())
    assert opcodes(m, "OPENDIR") == before
    assert helpers.read_file(empty_source / "f") == b"x" * 1000
