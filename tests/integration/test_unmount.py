"""`h5memfs unmount MNT...` and umount(8) through the installed helper:
both return only after the daemon has written everything back and
exited, with its status (0 all durable, 2 some files rescued, 1 other
errors); --lazy, --timeout, busy and dead mounts."""

import os
import shutil
import subprocess
import threading

import pytest

import helpers
from acceptance import (DAEMON, SLOWDOWN, cli, remount,  # noqa: F401
                        rescue_dir, small_tmpfs)
from test_install import _meson, _options

OLD = b"old content\n" * 1000
NEW = bytes(range(256)) * 2400


@pytest.fixture
def fs(small_tmpfs):
    src = small_tmpfs / "src"
    helpers.write_file(src / "f.bin", OLD)
    return small_tmpfs, src


def test_unmount_returns_after_the_daemon_exited_with_status_0(mount, fs):
    top, src = fs
    m = mount(src)
    helpers.write_file(m / "f.bin", NEW)
    helpers.write_file(m / "new.txt", b"made in the mount")
    res = cli("unmount", m.path)
    # the daemon is gone when the command returns, not a moment later
    assert m.proc.poll() == 0, (res, m.stderr())
    assert res.returncode == 0, res.stderr
    assert res.stdout == "" and res.stderr == ""
    assert not os.path.ismount(m.path)
    assert helpers.read_file(src / "f.bin") == NEW
    assert helpers.read_file(src / "new.txt") == b"made in the mount"


def test_unmount_exits_2_and_says_where_the_files_were_saved(
        mount, fs, rescue_dir):
    top, src = fs
    m = mount(src, options=[f"rescue={rescue_dir}"], allow_stderr=True,
              expect_exit=2)
    helpers.write_file(m / "f.bin", NEW)
    remount(top, "ro")
    try:
        res = cli("unmount", m.path)
    finally:
        remount(top, "rw")
    assert m.proc.poll() == 2, (res, m.stderr())
    assert res.returncode == 2, res.stderr
    assert str(rescue_dir) in res.stderr, res.stderr
    assert helpers.read_file(rescue_dir / "f.bin") == NEW
    assert helpers.read_file(src / "f.bin") == OLD


def test_several_mount_points_give_the_worst_status(mount, fs, tmp_path,
                                                    rescue_dir):
    top, src = fs
    other = tmp_path / "other"
    other.mkdir()
    good = mount(other)
    bad = mount(src, options=[f"rescue={rescue_dir}"], allow_stderr=True,
                expect_exit=2)
    helpers.write_file(good / "g.txt", b"fine")
    helpers.write_file(bad / "f.bin", NEW)
    remount(top, "ro")
    try:
        res = cli("unmount", good.path, bad.path)
    finally:
        remount(top, "rw")
    assert res.returncode == 2, res.stderr
    assert good.proc.poll() == 0 and bad.proc.poll() == 2
    assert helpers.read_file(other / "g.txt") == b"fine"


def test_a_busy_mount_is_refused_and_lazy_waits_for_the_last_user(
        mount, fs):
    top, src = fs
    m = mount(src)
    fd = os.open(m / "f.bin", os.O_RDWR)
    try:
        os.pwrite(fd, b"busy", 0)
        res = cli("unmount", m.path)
        assert res.returncode == 1
        assert "busy" in res.stderr and "--lazy" in res.stderr, res.stderr
        assert os.path.ismount(m.path) and m.running()
        # --lazy detaches at once; the daemon ends when fd closes: the
        # command waits for that, or says it stopped waiting
        res = cli("unmount", "--lazy", "--timeout", "0.5", m.path)
        assert res.returncode == 1
        assert "still writing back" in res.stderr, res.stderr
        assert not os.path.ismount(m.path) and m.running()
    finally:
        closer = threading.Timer(0.3, os.close, [fd])
        closer.start()
    # a second unmount of a detached mount finds no mount point
    res = cli("unmount", m.path)
    closer.join()
    assert res.returncode == 1 and "not an h5memfs mount" in res.stderr
    assert m.wait() == 0
    assert helpers.read_file(src / "f.bin")[:4] == b"busy"


def test_lazy_unmount_waits_until_the_daemon_has_exited(mount, fs):
    top, src = fs
    m = mount(src)
    fd = os.open(m / "f.bin", os.O_RDWR)
    os.pwrite(fd, b"LAZY", 0)
    closer = threading.Timer(0.5, os.close, [fd])
    closer.start()
    try:
        res = cli("unmount", "--lazy", m.path)
    finally:
        closer.join()
    assert res.returncode == 0, res.stderr
    assert m.proc.poll() == 0
    assert helpers.read_file(src / "f.bin")[:4] == b"LAZY"


def test_a_dead_mount_is_detached_and_reported(mount, fs):
    top, src = fs
    m = mount(src, expect_exit=-9, allow_stderr=True)
    helpers.write_file(m / "f.bin", NEW)
    m.proc.kill()
    m.proc.wait(30)
    res = cli("status", m.path)
    assert res.returncode == 1 and "daemon of this mount is gone" in \
        res.stderr, res.stderr
    res = cli("unmount", m.path)
    assert res.returncode == 1
    assert "daemon was gone" in res.stderr, res.stderr
    assert not os.path.ismount(m.path)


def test_a_path_that_is_not_a_mount_point_is_refused(mount, fs, tmp_path):
    top, src = fs
    m = mount(src)
    os.mkdir(m / "sub")
    res = cli("unmount", m / "sub")
    assert res.returncode == 1
    assert f"inside the h5memfs mount {m.path}" in res.stderr, res.stderr
    res = cli("unmount", tmp_path)
    assert res.returncode == 1 and "not an h5memfs mount" in res.stderr
    res = cli("unmount", "--timeout", "soon", m.path)
    assert res.returncode == 1 and "invalid timeout" in res.stderr
    assert m.running()


def test_progress_shows_on_a_terminal_only(mount, fs):
    top, src = fs
    m = mount(src)
    helpers.write_file(m / "f.bin", NEW)
    rc, out, shown = helpers.run_on_terminal(
        [DAEMON, "unmount", str(m.path)])
    assert rc == 0
    assert b"files" in shown and b"/s" in shown, shown
    assert m.proc.poll() == 0


# --- umount(8) through the installed helper --------------------------------

@pytest.fixture(scope="module")
def installed_sbin(tmp_path_factory):
    """meson install into a DESTDIR; the installed sbindir."""
    from test_install import BUILD
    dest = tmp_path_factory.mktemp("destdir")
    r = subprocess.run([_meson(), "install", "-C", str(BUILD), "--destdir",
                        str(dest)], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    o = _options()
    sbin = o["sbindir"]
    if not os.path.isabs(sbin):
        sbin = os.path.join(o["prefix"], sbin)
    return dest / sbin.lstrip("/")


# Run in a private mount namespace where /usr/sbin (= /sbin) also holds
# the installed helpers (an overlay), so that umount(8) finds them by its
# own lookup rules and nothing changes for the rest of the machine.
SCRIPT = r"""
set -u
mount --make-rprivate /
mount -t overlay overlay -o "lowerdir=$SBIN:/usr/sbin" /usr/sbin || exit 77
[ -x /sbin/umount.fuse.h5memfs ] && [ -e /sbin/umount.fuse ] || exit 78
mount -t tmpfs -o size=4m tmpfs "$TOP"
mkdir "$TOP/src" "$MNT" 2>/dev/null
printf old > "$TOP/src/f.txt"
out() { echo "$1=$2" >> "$RESULT"; }
one() {   # $1: label; $2: how to unmount; $3: ro to make SOURCE read-only
	mount -t fuse.h5memfs -o "rescue=$RESCUE/$1" "$TOP/src" "$MNT" ||
		{ out "$1-mount" fail; return; }
	pid=$("$H5MEMFS" status --json "$MNT" |
	      sed -n 's/.*"pid": \([0-9]*\).*/\1/p' | head -n 1)
	printf "%s" "$1" > "$MNT/f.txt"
	[ "$3" = ro ] && mount -o remount,ro "$TOP"
	$2 "$MNT" 2>>"$RESULT.$1"
	out "$1-rc" $?
	# gone, or a zombie its new parent has not reaped yet
	st=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)
	[ -n "$st" ] && [ "$st" != Z ] && out "$1-alive" "$st"
	out "$1-data" "$(cat "$TOP/src/f.txt")"
	[ "$3" = ro ] && mount -o remount,rw "$TOP"
	mountpoint -q "$MNT" && umount -l "$MNT"
	kill -9 "$pid" 2>/dev/null
}
one plain umount rw
one systemd "umount -c" rw
one failing umount ro
# another FUSE filesystem: umount.fuse hands it back to umount -i
if [ -x "$SLOWFS" ]; then
	mkdir -p "$TOP/other" "$TOP/otherdir"
	"$SLOWFS" -o delay_us=0 "$TOP/otherdir" "$TOP/other" &&
		out other-type "$(findmnt -rn -o FSTYPE --mountpoint "$TOP/other")"
	umount "$TOP/other" 2>>"$RESULT.other"
	out other-rc $?
	mountpoint -q "$TOP/other" && { out other-left yes; umount -l "$TOP/other"; }
fi
exit 0
"""


def test_umount_waits_and_reports_through_the_installed_helper(
        installed_sbin, tmp_path):
    from test_install import BUILD
    if not shutil.which("unshare"):
        pytest.skip("unshare not installed")
    result = tmp_path / "result"
    env = dict(os.environ, SBIN=str(installed_sbin), TOP=str(tmp_path / "t"),
               MNT=str(tmp_path / "mnt"), RESCUE=str(tmp_path / "rescue"),
               RESULT=str(result), H5MEMFS=str(DAEMON),
               SLOWFS=str(BUILD / "bench" / "slowfs"))
    os.mkdir(tmp_path / "t")
    r = subprocess.run(["unshare", "--mount", "--propagation", "private",
                        "sh", "-c", SCRIPT], env=env, capture_output=True,
                       text=True, timeout=120 * SLOWDOWN)
    if r.returncode == 77:
        pytest.skip("no overlayfs here")
    assert r.returncode == 0, r.stdout + r.stderr
    got = dict(ln.split("=", 1) for ln in result.read_text().splitlines())

    def err(label):
        p = tmp_path / f"result.{label}"
        return p.read_text() if p.exists() else ""

    # plain umount (libmount's statfs lookup finds umount.fuse) and
    # umount -c (systemd's way, mountinfo: umount.fuse.h5memfs) return
    # once the daemon has exited, everything written back
    for label in ("plain", "systemd"):
        assert got[f"{label}-rc"] == "0", (got, err(label))
        assert f"{label}-alive" not in got, got
        assert got[f"{label}-data"] == label, got
    # a read-only SOURCE: umount exits 2 and says where the data went
    assert got["failing-rc"] == "2", (got, err("failing"))
    assert "failing-alive" not in got, got
    assert got["failing-data"] == "systemd"
    saved = tmp_path / "rescue" / "failing"
    assert (saved / "f.txt").read_bytes() == b"failing"
    assert str(saved) in err("failing"), err("failing")
    # another FUSE filesystem goes through umount.fuse untouched
    if "other-type" in got:
        assert got["other-type"] != "fuse.h5memfs"
        assert got["other-rc"] == "0", (got, err("other"))
        assert "other-left" not in got


def test_many_refused_unmounts_do_not_use_up_the_reports(mount, fs):
    """Each unmount gives the daemon a socket for the outcome; those of
    commands that ended (a busy mount) are forgotten when room is needed."""
    top, src = fs
    m = mount(src)
    fd = os.open(m / "f.bin", os.O_RDONLY)
    try:
        for _ in range(20):
            res = cli("unmount", m.path)
            assert res.returncode == 1 and "busy" in res.stderr
    finally:
        os.close(fd)
    res = cli("unmount", m.path)
    assert res.returncode == 0, res.stderr
    assert res.stderr == "" and m.proc.poll() == 0


def test_a_stopped_daemon_is_given_up_on_after_the_timeout(mount, fs):
    """--timeout also bounds the questions asked before the unmount: a
    stopped daemon answers nothing; the mount is left as it was."""
    import signal
    top, src = fs
    m = mount(src)
    helpers.write_file(m / "f.bin", NEW)
    os.kill(m.proc.pid, signal.SIGSTOP)
    try:
        res = cli("unmount", "--timeout", "1", m.path)
    finally:
        os.kill(m.proc.pid, signal.SIGCONT)
    assert res.returncode == 1
    assert "did not answer within 1 s" in res.stderr, res.stderr
    assert os.path.ismount(m.path) and m.running()
    res = cli("unmount", m.path)
    assert res.returncode == 0, res.stderr
    assert helpers.read_file(src / "f.bin") == NEW
