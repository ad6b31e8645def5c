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


# A private mount namespace whose /dev has a /dev/log of the test's own
# (a datagram socket, as syslog(3) writes to), so that the detached
# daemon's syslog lines can be read without touching the machine's.
SYSLOG_SCRIPT = r"""
set -u
mount --make-rprivate /
mount -t tmpfs tmpfs "$D"
for n in fuse null zero random urandom; do
	touch "$D/$n" && mount --bind "/dev/$n" "$D/$n"
done
/usr/bin/python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1] + "/log")
open(sys.argv[1] + "/ready", "w").close()
with open(sys.argv[2], "ab", buffering=0) as out:
    while True:
        out.write(s.recv(8192) + b"\n")
' "$D" "$OUT" </dev/null >/dev/null 2>&1 &
listener=$!
trap 'kill $listener 2>/dev/null; mountpoint -q "$MNT" && umount -l "$MNT"' EXIT
i=0
while [ ! -e "$D/ready" ]; do
	[ $i -lt 600 ] || exit 4
	sleep 0.05; i=$((i + 1))
done
mount --rbind "$D" /dev
"$H5MEMFS" -o log_level=info "$SRC" "$MNT" || exit 3
printf hello > "$MNT/f.txt"
"$H5MEMFS" unmount "$MNT"
rc=$?
"$H5MEMFS" "$SRC" "$MNT" || exit 3     # default level: warn
printf quiet > "$MNT/g.txt"
"$H5MEMFS" unmount "$MNT" || rc=$?
i=0
while ! grep -q "ended in" "$OUT" 2>/dev/null && [ $i -lt 200 ]; do
	sleep 0.05; i=$((i + 1))
done
exit $rc
"""


def test_detached_daemon_logs_to_syslog_as_h5memfs(tmp_path, empty_source):
    if not shutil.which("unshare"):
        pytest.skip("unshare not installed")
    (tmp_path / "dev").mkdir()
    (tmp_path / "mnt").mkdir()
    out = tmp_path / "syslog"
    env = dict(os.environ, D=str(tmp_path / "dev"), OUT=str(out),
               SRC=str(empty_source), MNT=str(tmp_path / "mnt"),
               H5MEMFS=str(DAEMON))
    r = subprocess.run(["unshare", "--mount", "--propagation", "private",
                        "sh", "-c", SYSLOG_SCRIPT], env=env,
                       capture_output=True, text=True,
                       timeout=120 * SLOWDOWN)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = out.read_text(errors="replace").splitlines()
    ours = [ln for ln in lines if "h5memfs[" in ln]
    mnt = str(tmp_path / "mnt")
    ended = [ln for ln in ours if f"]: {mnt}: final write-back of {mnt} "
             "ended in" in ln]
    assert len(ended) == 1, lines   # the second mount logs at warn only
    # <30>: facility daemon, level info
    assert ended[0].startswith("<30>"), ended
    assert "1 file(s), 5 bytes written, 0 failed" in ended[0], ended
    assert (empty_source / "f.txt").read_text() == "hello"
    assert (empty_source / "g.txt").read_text() == "quiet"
