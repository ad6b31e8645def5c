"""The mount helpers (mount.h5memfs, mount.fuse.h5memfs), the example
systemd units, the helpers' manual pages and their installation.

The helper is called the way mount(8) calls it ("mount.fuse.h5memfs SOURCE
DIR -n -o OPTS"), and once through mount(8) itself, with a link in /sbin
made for the test and removed in every outcome. The daemon it starts
detaches (no -f), so it is not a child of the test: it is found by its
command line, which names the test's own mount point, and waited for (or
killed) by that PID only.

Every mount is unmounted at teardown whatever happened: fusermount3 -u,
then -u -z; every subprocess has a timeout.
"""

import os
import re
import select
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

import helpers
from h5mount import SLOWDOWN

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("H5MEMFS_BUILD", REPO / "build"))
DAEMON = Path(os.environ["H5MEMFS"]) if os.environ.get("H5MEMFS") \
    else BUILD / "src" / "h5memfs"
HELPER = BUILD / "mount-helpers" / "mount.h5memfs"
SBIN_LINK = Path("/sbin/mount.fuse.h5memfs")
EXIT_TIMEOUT = 30 * SLOWDOWN


@pytest.fixture(autouse=True)
def _built():
    for exe in (HELPER, DAEMON):
        if not exe.exists():
            pytest.fail(f"{exe} missing: build with ninja -C {BUILD}")


def daemon_pids(mountpoint):
    """PIDs of live h5memfs daemons whose arguments name mountpoint."""
    pids = []
    want = str(mountpoint).encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and argv and \
                os.path.basename(argv[0]) == b"h5memfs" and want in argv:
            pids.append(int(entry))
    return pids


def wait_gone(pids, timeout=EXIT_TIMEOUT):
    """Wait until none of pids runs; True if they all ended in time."""
    fds = []
    for pid in pids:
        try:
            fds.append(os.pidfd_open(pid))
        except ProcessLookupError:
            pass
    try:
        deadline = time.monotonic() + timeout
        for fd in fds:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return False
        return True
    finally:
        for fd in fds:
            os.close(fd)


class HelperMounts:
    """Mounts made through the helper in one test, and their daemons."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.bin = tmp_path / "sbin"
        self.bin.mkdir()
        # The name mount(8) calls for the type fuse.h5memfs.
        self.fuse_helper = self.bin / "mount.fuse.h5memfs"
        self.fuse_helper.symlink_to(HELPER)
        self.env = dict(os.environ, H5MEMFS=str(DAEMON))
        self.mountpoints = []
        self.pids = {}

    def mountpoint(self, name="mnt"):
        mp = self.tmp / name
        mp.mkdir()
        self.mountpoints.append(mp)
        return mp

    def call(self, *args, helper=None, timeout=30):
        """Run the helper as mount(8) would; note the daemon it started."""
        res = helpers.run([str(helper or self.fuse_helper),
                           *map(str, args)], timeout=timeout, check=False,
                          env=self.env)
        for mp in self.mountpoints:
            for pid in daemon_pids(mp):
                self.pids.setdefault(pid, mp)
        return res

    def umount(self, mp):
        """umount(8) it; wait for its daemon, which writes back, to end."""
        pids = [p for p, m in self.pids.items() if m == mp]
        assert pids, f"no daemon found serving {mp}"
        helpers.run(["umount", str(mp)], timeout=30)
        assert wait_gone(pids), f"daemon {pids} still runs after umount"

    def cleanup(self):
        problems = []
        for mp in self.mountpoints:
            if helpers.mounts_at(mp):
                problems.append(f"{mp} still mounted at teardown")
                r = helpers.run(["fusermount3", "-u", str(mp)], timeout=10,
                                check=False)
                if r.returncode != 0:
                    helpers.run(["fusermount3", "-u", "-z", str(mp)],
                                timeout=10, check=False)
        live = [p for p in self.pids if not wait_gone([p], 10 * SLOWDOWN)]
        for pid in live:
            problems.append(f"daemon {pid} still ran at teardown")
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    break
                if wait_gone([pid], 5):
                    break
        return problems


@pytest.fixture
def hm(tmp_path):
    h = HelperMounts(tmp_path)
    yield h
    problems = h.cleanup()
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


@pytest.fixture
def src(tmp_path):
    s = tmp_path / "src"
    s.mkdir()
    (s / "old.txt").write_text("old content\n")
    (s / "dir").mkdir()
    (s / "dir" / "inner").write_text("inner\n")
    return s


def mount_line(mp):
    lines = helpers.mounts_at(mp)
    assert len(lines) == 1, lines
    return lines[0]


# --- the helper called as mount(8) calls it ---------------------------------

def test_helper_mounts_with_fstab_words_dropped(hm, src):
    mp = hm.mountpoint()
    before = helpers.snapshot(src)
    res = hm.call(src, mp, "-o", "rw,noauto,user,x-foo,volatile,nofail,"
                  "_netdev,comment=test,defaults,users,nouser,owner,group,"
                  "user=alice,x-systemd.automount")
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    fields = mount_line(mp)
    assert fields[0] == str(src)
    assert fields[2] == "fuse.h5memfs"
    assert (mp / "old.txt").read_text() == "old content\n"
    (mp / "new.txt").write_text("new\n")
    (mp / "old.txt").write_text("changed\n")
    hm.umount(mp)
    assert not helpers.mounts_at(mp)
    helpers.assert_same_tree(before, helpers.snapshot(src), "before",
                             "after (volatile)")


def test_umount_makes_the_daemon_write_back(hm, src):
    mp = hm.mountpoint()
    res = hm.call(src, mp, "-n", "-s", "-v", "-o", "defaults,nofail")
    assert res.returncode == 0, res.stderr
    # -v shows the command: the fstab words are gone.
    assert f"{DAEMON} {src} {mp} -o dev,suid" in res.stderr
    (mp / "new.txt").write_text("written through the mount\n")
    with open(mp / "dir" / "inner", "a") as f:
        f.write("appended\n")
    (mp / "old.txt").unlink()
    hm.umount(mp)
    assert (src / "new.txt").read_text() == "written through the mount\n"
    assert (src / "dir" / "inner").read_text() == "inner\nappended\n"
    assert not (src / "old.txt").exists()


def test_flags_are_mount8_flags_not_daemon_flags(hm, src):
    # -f is mount(8)'s "fake", -s its "sloppy": not foreground, not
    # single-threaded. The helper returns at once and mounts nothing.
    mp = hm.mountpoint()
    res = hm.call(src, mp, "-fsnv", "-o", "volatile")
    assert res.returncode == 0, res.stderr
    assert not helpers.mounts_at(mp)
    assert not daemon_pids(mp)
    assert "volatile" in res.stderr


def test_none_source_with_volatile_is_an_empty_workspace(hm):
    mp = hm.mountpoint()
    res = hm.call("none", mp, "-o", "volatile,x-systemd.automount")
    assert res.returncode == 0, res.stderr
    assert os.listdir(mp) == []
    (mp / "scratch").write_text("x")
    hm.umount(mp)
    assert os.listdir(mp) == []


def test_read_only_flag(hm, src):
    mp = hm.mountpoint()
    res = hm.call(src, mp, "-r")
    assert res.returncode == 0, res.stderr
    assert "ro" in mount_line(mp)[3].split(",")
    assert helpers.errno_of(open, mp / "x", "w") == 30  # EROFS
    hm.umount(mp)


def test_nosuid_nodev_are_kept(hm, src):
    mp = hm.mountpoint()
    res = hm.call(src, mp, "-o", "nosuid,nodev,volatile")
    assert res.returncode == 0, res.stderr
    opts = mount_line(mp)[3].split(",")
    assert "nosuid" in opts and "nodev" in opts
    hm.umount(mp)


def test_mount_h5memfs_name_and_type_option(hm, src):
    mp = hm.mountpoint()
    res = hm.call(src, mp, "-t", "h5memfs", "-o", "volatile",
                  helper=HELPER)
    assert res.returncode == 0, res.stderr
    hm.umount(mp)


def test_unknown_option_is_refused_and_nothing_mounted(hm, src):
    mp = hm.mountpoint()
    res = hm.call(src, mp, "-o", "volatile,no_such_option")
    assert res.returncode != 0
    assert "no_such_option" in res.stderr
    assert not helpers.mounts_at(mp)
    assert not daemon_pids(mp)


def test_wrong_type_is_refused(hm, src):
    mp = hm.mountpoint()
    res = hm.call(src, mp, "-t", "fuse.sshfs")
    assert res.returncode == 1
    assert "fuse.sshfs" in res.stderr
    assert not helpers.mounts_at(mp)


def test_bad_calls_print_usage(hm, src):
    for args in [(), (src,), (src, "a", "b"), (src, "mnt", "-o")]:
        res = hm.call(*args)
        assert res.returncode == 1, args
        assert "usage:" in res.stderr, args


def test_missing_source_is_the_daemons_clear_error(hm, tmp_path):
    mp = hm.mountpoint()
    res = hm.call(tmp_path / "missing", mp)
    assert res.returncode != 0
    assert "missing" in res.stderr
    assert not helpers.mounts_at(mp)


def test_setuid_runs_the_daemon_as_that_user(hm, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("setuid= needs root")
    import tempfile
    # nobody must reach the mount point: pytest's tmp_path is root-only.
    top = Path(tempfile.mkdtemp(prefix="h5memfs-setuid.", dir="/tmp"))
    top.chmod(0o755)
    mp = top / "mnt"
    mp.mkdir()
    os.chown(mp, 65534, 65534)
    dev = tmp_path / "fuse"
    setup = ""
    if os.stat("/dev/fuse").st_mode & 0o006 != 0o006:
        # FUSE needs /dev/fuse open for the user: give it in a private
        # mount namespace rather than change the machine's.
        setup = (f"mknod {dev} c 10 229 && chmod 666 {dev} && "
                 f"mount --bind {dev} /dev/fuse && ")
    # Without allow_other only nobody may look into the mount, not root.
    script = (setup +
              f"H5MEMFS={DAEMON} {hm.fuse_helper} none {mp} "
              f"-o volatile,setuid=nobody && "
              f"su -s /bin/sh nobody -c 'stat -c %U {mp}' && "
              f"for p in $(pgrep -x h5memfs); do "
              f"  if tr '\\0' ' ' < /proc/$p/cmdline | grep -q ' {mp}'; "
              f"  then ps -o user= -p $p; fi; done; "
              f"rc=$?; umount {mp}; exit $rc")
    try:
        res = helpers.run(["unshare", "-m", "--propagation", "private",
                           "sh", "-c", script], timeout=60, check=False)
        assert res.returncode == 0, res.stderr
        assert res.stdout.split() == ["nobody", "nobody"], res.stdout
    finally:
        hm.mountpoints.append(mp)
        for pid in daemon_pids(mp):
            hm.pids.setdefault(pid, mp)
        problems = hm.cleanup()
        hm.mountpoints.remove(mp)
        shutil.rmtree(top, ignore_errors=True)
        assert not problems, problems


def test_namespace_flag_mounts_in_that_namespace(hm):
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare")
    mp = hm.mountpoint()
    holder = subprocess.Popen(["unshare", "-m", "--propagation", "private",
                               "sleep", "60"])
    try:
        ns = f"/proc/{holder.pid}/ns/mnt"
        deadline = time.monotonic() + 10 * SLOWDOWN
        while os.readlink(ns) == os.readlink("/proc/self/ns/mnt") and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        res = hm.call("none", mp, "-N", holder.pid, "-o", "volatile")
        assert res.returncode == 0, res.stderr
        with open(f"/proc/{holder.pid}/mountinfo") as f:
            assert f" {mp} " in f.read()
        assert not helpers.mounts_at(mp)  # not in the test's namespace
        pids = [p for p, m in hm.pids.items() if m == mp]
        assert pids
        helpers.run(["nsenter", f"--mount={ns}", "umount", str(mp)],
                    timeout=30)
        assert wait_gone(pids)
    finally:
        holder.kill()
        holder.wait(10 * SLOWDOWN)


# --- mount(8) and /etc/fstab ---------------------------------------------------

@pytest.fixture
def sbin_helper():
    """/sbin/mount.fuse.h5memfs -> the build's helper, for this test only."""
    if os.geteuid() != 0:
        pytest.skip("needs root to link the helper into /sbin")
    if os.path.lexists(SBIN_LINK):
        pytest.skip(f"{SBIN_LINK} exists already (h5memfs installed?)")
    SBIN_LINK.symlink_to(HELPER)
    try:
        yield SBIN_LINK
    finally:
        if SBIN_LINK.is_symlink() and os.readlink(SBIN_LINK) == str(HELPER):
            SBIN_LINK.unlink()


def test_mount_t_fuse_h5memfs_and_umount(hm, src, sbin_helper):
    mp = hm.mountpoint()
    res = helpers.run(["mount", "-t", "fuse.h5memfs", str(src), str(mp),
                       "-o", "x-test=1,nofail"], timeout=30, check=False,
                      env=hm.env)
    assert res.returncode == 0, res.stderr
    for pid in daemon_pids(mp):
        hm.pids.setdefault(pid, mp)
    fields = mount_line(mp)
    assert fields[0] == str(src) and fields[2] == "fuse.h5memfs"
    (mp / "via-mount8.txt").write_text("kept\n")
    hm.umount(mp)
    assert (src / "via-mount8.txt").read_text() == "kept\n"


def test_fstab_line(hm, src, sbin_helper, tmp_path):
    mp = hm.mountpoint()
    fstab = tmp_path / "fstab"
    fstab.write_text(
        f"# a test fstab\n"
        f"{src} {mp} fuse.h5memfs "
        f"noauto,user,volatile,x-systemd.automount,_netdev 0 0\n")
    res = helpers.run(["mount", "--fstab", str(fstab), str(mp)],
                      timeout=30, check=False, env=hm.env)
    assert res.returncode == 0, res.stderr
    for pid in daemon_pids(mp):
        hm.pids.setdefault(pid, mp)
    opts = mount_line(mp)[3].split(",")
    # "user" implies nosuid,nodev,noexec for mount(8).
    assert {"nosuid", "nodev", "noexec"} <= set(opts)
    assert (mp / "old.txt").read_text() == "old content\n"
    hm.umount(mp)


# --- units, manual pages, installation ------------------------------------------

def test_example_units_verify(tmp_path):
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze not installed")
    units = tmp_path / "units"
    units.mkdir()
    shutil.copy(REPO / "mount-helpers" / "h5memfs-example.mount",
                units / "data-mem.mount")
    service = (BUILD / "mount-helpers" / "h5memfs@.service").read_text()
    assert "@BINDIR@" not in service
    # verify wants the daemon where the unit says: use this build's.
    service = re.sub(r"ExecStart=\S+/h5memfs ", f"ExecStart={DAEMON} ",
                     service)
    (units / "h5memfs@.service").write_text(service)
    (units / "h5memfs@runs.service").symlink_to("h5memfs@.service")
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = dict(os.environ, XDG_RUNTIME_DIR=str(runtime))
    for unit, extra in [("data-mem.mount", []),
                        ("h5memfs@runs.service", ["--user"])]:
        res = helpers.run(["systemd-analyze", "verify", "--man=no", *extra,
                           str(units / unit)], timeout=60, check=False,
                          env=env, cwd=units)
        assert res.returncode == 0 and res.stderr == "", \
            f"{unit}: {res.stderr}"


@pytest.mark.parametrize("page", ["mount.h5memfs.8", "h5memfs-scratch.1"])
def test_man_page_renders_without_warnings(page, tmp_path):
    rst2man = shutil.which("rst2man") or shutil.which("rst2man.py")
    if not rst2man or not shutil.which("man"):
        pytest.skip("rst2man or man not installed")
    out = tmp_path / page
    res = helpers.run([rst2man, str(REPO / "docs" / (page + ".rst")),
                       str(out)], timeout=60, check=False)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    res = helpers.run(["man", "--warnings", "-l", str(out)], timeout=60,
                      check=False, env=dict(os.environ, MANPAGER="cat",
                                            PAGER="cat"))
    assert res.returncode == 0
    assert res.stderr == ""


def test_destdir_install_has_the_helpers(tmp_path):
    if not (BUILD / "build.ninja").exists():
        pytest.skip("no meson build directory")
    dest = tmp_path / "dest"
    res = helpers.run(["meson", "install", "-C", str(BUILD), "--no-rebuild",
                       "--destdir", str(dest)], timeout=120, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    info = helpers.run(["meson", "introspect", str(BUILD),
                        "--buildoptions"], timeout=60).stdout
    import json
    opts = {o["name"]: o["value"] for o in json.loads(info)}
    prefix = Path(str(dest) + opts["prefix"])
    sbin = prefix / opts["sbindir"]
    helper = sbin / "mount.h5memfs"
    assert helper.stat().st_mode & stat.S_IXUSR
    assert os.readlink(sbin / "mount.fuse.h5memfs") == "mount.h5memfs"
    text = helper.read_text()
    assert "@BINDIR@" not in text
    assert f"{opts['prefix']}/{opts['bindir']}/h5memfs" in text
    assert (prefix / opts["bindir"] / "h5memfs-scratch").stat().st_mode \
        & stat.S_IXUSR
    examples = prefix / opts["datadir"] / "doc" / "h5memfs" / "examples"
    assert (examples / "data-mem.mount").exists()
    assert "@BINDIR@" not in (examples / "h5memfs@.service").read_text()
    if shutil.which("rst2man") or shutil.which("rst2man.py"):
        man = prefix / opts["mandir"]
        assert (man / "man8" / "mount.h5memfs.8").exists()
        assert os.readlink(man / "man8" / "mount.fuse.h5memfs.8") == \
            "mount.h5memfs.8"
        assert (man / "man1" / "h5memfs-scratch.1").exists()
