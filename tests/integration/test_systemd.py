"""systemd integration: the daemon's notify protocol (checked with a
NOTIFY_SOCKET of the test's own), the installed unit templates
(Type=notify, verified by systemd-analyze) and the log (log_level=, one
line naming the mount point at the start and end of the final
write-back)."""

import os
import shutil
import socket
import subprocess
import time

import pytest

import helpers
from acceptance import DAEMON, SLOWDOWN, cli
from test_install import BUILD, _meson, _options


class NotifySocket:
    """An AF_UNIX datagram socket standing in for systemd's."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages = []

    def read(self, until, timeout=20):
        """Collect messages until one satisfies until(msg); return it."""
        deadline = time.monotonic() + timeout * SLOWDOWN
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                msg = self.sock.recv(4096).decode()
            except socket.timeout:
                break
            self.messages.append(msg)
            if until(msg):
                return msg
        raise AssertionError(f"no such message; got {self.messages}")

    def drain(self):
        self.sock.setblocking(False)
        try:
            while True:
                self.messages.append(self.sock.recv(4096).decode())
        except BlockingIOError:
            pass
        finally:
            self.sock.setblocking(True)

    def close(self):
        self.sock.close()


@pytest.fixture
def notify(tmp_path, monkeypatch):
    ns = NotifySocket(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", ns.path)
    yield ns
    ns.close()


def fields(msg):
    return dict(ln.split("=", 1) for ln in msg.splitlines() if "=" in ln)


def test_notify_messages_in_order(mount, empty_source, notify):
    for i in range(3):
        helpers.write_file(empty_source / f"f{i}.bin", os.urandom(100000))
    m = mount(empty_source, options=["preload"])
    ready = fields(notify.read(lambda s: "READY=1" in s))
    assert ready["MAINPID"] == str(m.proc.pid)
    assert str(m.path) in ready["STATUS"]
    pre = notify.read(lambda s: "preloaded" in s)
    assert "preloaded 3 files" in pre, pre
    helpers.write_file(m / "new.bin", os.urandom(300000))
    assert m.sigterm() == 0
    notify.drain()
    msgs = notify.messages
    stopping = [i for i, s in enumerate(msgs) if "STOPPING=1" in s]
    assert len(stopping) == 1, msgs
    after = msgs[stopping[0]:]
    extends = [fields(s) for s in after if "EXTEND_TIMEOUT_USEC=" in s]
    assert extends, msgs
    assert all(int(f["EXTEND_TIMEOUT_USEC"]) > 0 for f in extends)
    assert all(f["STATUS"].startswith("Writing back") for f in extends)
    # the last word on the write-back counts the file written
    last = [s for s in after if "Writing back:" in s][-1]
    assert "1/1 files" in last, last
    # nothing about the write-back before STOPPING
    assert not any("EXTEND_TIMEOUT_USEC" in s
                   for s in msgs[:stopping[0]]), msgs


def test_no_notify_socket_no_messages(mount, empty_source, tmp_path,
                                      monkeypatch):
    """A NOTIFY_SOCKET that is not a path nor abstract is ignored."""
    monkeypatch.setenv("NOTIFY_SOCKET", "relative/name")
    m = mount(empty_source)
    helpers.write_file(m / "a", b"a")
    assert m.unmount() == 0
    assert helpers.read_file(empty_source / "a") == b"a"


@pytest.fixture(scope="module")
def unit_dir(tmp_path_factory):
    dest = tmp_path_factory.mktemp("destdir")
    r = subprocess.run([_meson(), "install", "-C", str(BUILD), "--destdir",
                        str(dest)], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    o = _options()
    return dest / o["prefix"].lstrip("/") / "lib/systemd"


@pytest.mark.parametrize("kind", ["system", "user"])
def test_installed_unit_templates_are_type_notify_and_verify(
        unit_dir, kind, tmp_path):
    unit = unit_dir / kind / "h5memfs@.service"
    text = unit.read_text()
    assert "\nType=notify\n" in text and "\nNotifyAccess=main\n" in text
    assert " -f " in text  # foreground: systemd follows the daemon
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze not installed")
    o = _options()
    bindir = os.path.join(o["prefix"], o["bindir"])
    text = text.replace(f"{bindir}/h5memfs", str(DAEMON))
    text = text.replace("/usr/bin/fusermount3", shutil.which("fusermount3"))
    copy = tmp_path / "h5memfs@test.service"
    copy.write_text(text)
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(copy)],
                       capture_output=True, text=True, timeout=60,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


# --- the log ---------------------------------------------------------------

def test_log_levels_and_the_final_write_back_summary(mount, empty_source):
    m = mount(empty_source, options=["log_level=info"], allow_stderr=True)
    helpers.write_file(m / "a.bin", b"x" * 5000)
    assert cli("unmount", m.path).returncode == 0
    lines = m.stderr().splitlines()
    start = [ln for ln in lines if "final write-back" in ln
             and "dirty file(s)" in ln]
    end = [ln for ln in lines if "final write-back" in ln and "ended in" in ln]
    assert len(start) == 1 and len(end) == 1, lines
    assert start[0].startswith(f"h5memfs[{m.path}]: ")
    assert "1 dirty file(s), 5000 bytes" in start[0], start
    assert "1 file(s), 5000 bytes written, 0 failed" in end[0], end
    # the default (warn) says nothing when all goes well
    m2 = mount(empty_source)
    helpers.write_file(m2 / "b.bin", b"y")
    assert m2.unmount() == 0
    assert m2.stderr() == ""


def test_log_level_error_keeps_only_errors(mount, tmp_path):
    from acceptance import remount, tmpfs_mount
    with tmpfs_mount(tmp_path, "2M") as top:
        src = top / "src"
        src.mkdir()
        m = mount(src, options=["log_level=error",
                                f"rescue={tmp_path}/rescue"],
                  allow_stderr=True, expect_exit=2)
        helpers.write_file(m / "f", b"F")
        remount(top, "ro")
        try:
            assert m.unmount() == 2
        finally:
            remount(top, "rw")
    lines = m.stderr().splitlines()
    assert lines and all(ln.startswith(f"h5memfs[{m.path}]: ")
                         for ln in lines), lines
    assert not any("final write-back" in ln for ln in lines), lines
    assert any(f"{tmp_path}/rescue" in ln for ln in lines), lines
