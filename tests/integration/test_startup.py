"""Start-up: good options mount, bad input is refused with a non-zero exit,
one stderr line naming the culprit, and no mount left behind."""

import os
import subprocess
import time

import pytest

import h5mount
import helpers


def run_failing(argv, watch=(), timeout=15):
    """Run a daemon command line that must fail. Returns (status, stderr).
    If a path in watch becomes a mount point the command wrongly succeeded:
    clean up and fail."""
    with open(os.devnull, "rb") as devnull:
        proc = subprocess.Popen(argv, stdin=devnull, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout * h5mount.SLOWDOWN
    wrongly_mounted = []
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            wrongly_mounted = [w for w in watch if helpers.mounts_at(w)]
            if wrongly_mounted:
                break
            time.sleep(0.05)
    finally:
        for w in watch:
            if helpers.mounts_at(w):
                wrongly_mounted.append(w)
                helpers.run(["fusermount3", "-u", "-z", str(w)], timeout=10,
                            check=False)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5 * h5mount.SLOWDOWN)
            except subprocess.TimeoutExpired:
                proc.kill()
        _, err = proc.communicate(timeout=10 * h5mount.SLOWDOWN)
    assert not wrongly_mounted, f"{argv} mounted {wrongly_mounted}"
    assert proc.returncode is not None and proc.returncode != 0, \
        f"{argv} exited {proc.returncode}; stderr: {err!r}"
    return proc.returncode, err.decode(errors="replace")


def daemon(*args):
    return [str(h5mount.DAEMON), *map(str, args)]


def assert_one_line_naming(stderr, *names):
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"want one stderr line, got: {stderr!r}"
    assert any(str(n) in lines[0] for n in names), \
        f"stderr {lines[0]!r} names none of {names}"


@pytest.fixture
def dirs(tmp_path):
    src = tmp_path / "src"
    mp = tmp_path / "mp"
    src.mkdir()
    mp.mkdir()
    helpers.write_file(src / "f", b"x")
    return src, mp


@pytest.fixture(autouse=True)
def _need_daemon():
    if not h5mount.DAEMON.exists():
        pytest.fail(f"daemon not built: {h5mount.DAEMON}")


@pytest.mark.parametrize("opt,culprit", [
    ("nosuchoption", "nosuchoption"),
    ("nosuch=value", "nosuch"),
    ("increment=abc", "increment"),
    ("page_size=abc", "page_size"),
    ("increment=12Q", "increment"),
    ("validate=sometimes", "validate"),
])
@pytest.mark.parametrize("fg", [True, False], ids=["foreground",
                                                   "background"])
def test_a_wrong_option_is_refused_with_its_name_on_stderr(
        dirs, opt, culprit, fg):
    src, mp = dirs
    argv = daemon(*(["-f"] if fg else []), "-o", opt, src, mp)
    _, err = run_failing(argv, watch=[mp])
    assert_one_line_naming(err, culprit)


def test_a_missing_source_directory_is_refused_by_name(dirs, tmp_path):
    _, mp = dirs
    missing = tmp_path / "no-such-source"
    _, err = run_failing(daemon("-f", missing, mp), watch=[mp])
    assert_one_line_naming(err, missing)


def test_a_missing_mountpoint_is_refused_by_name(dirs, tmp_path):
    src, _ = dirs
    missing = tmp_path / "no-such-mountpoint"
    _, err = run_failing(daemon("-f", src, missing), watch=[])
    assert_one_line_naming(err, missing)
    assert not missing.exists()


def test_a_regular_file_as_source_is_refused_by_name(dirs):
    src, mp = dirs
    _, err = run_failing(daemon("-f", src / "f", mp), watch=[mp])
    assert_one_line_naming(err, src / "f")


def test_a_source_inside_the_mountpoint_is_refused(tmp_path):
    mp = tmp_path / "mp"
    src = mp / "inner-src"
    src.mkdir(parents=True)
    _, err = run_failing(daemon("-f", src, mp), watch=[mp])
    assert_one_line_naming(err, src, mp)


def test_a_mountpoint_inside_the_source_is_refused(tmp_path):
    src = tmp_path / "src"
    mp = src / "inner-mp"
    mp.mkdir(parents=True)
    _, err = run_failing(daemon("-f", src, mp), watch=[mp])
    assert_one_line_naming(err, src, mp)


def test_a_mountpoint_inside_the_source_through_a_symlink_is_refused(
        tmp_path):
    src = tmp_path / "src"
    (src / "inner-mp").mkdir(parents=True)
    alias = tmp_path / "alias"
    os.symlink(src / "inner-mp", alias)
    _, err = run_failing(daemon("-f", src, alias), watch=[src / "inner-mp"])
    assert_one_line_naming(err, src, alias, src / "inner-mp")


def test_a_missing_source_argument_without_volatile_is_refused(dirs):
    _, mp = dirs
    _, err = run_failing(daemon("-f", mp), watch=[mp])
    assert err.strip(), "no message on stderr"


def test_no_arguments_is_refused(dirs):
    _, err = run_failing(daemon(), watch=[])
    assert err.strip(), "no message on stderr"


def test_an_extra_argument_is_refused(dirs, tmp_path):
    src, mp = dirs
    _, err = run_failing(daemon("-f", src, mp, tmp_path / "third"),
                         watch=[mp])
    assert err.strip(), "no message on stderr"


def test_a_refused_start_leaves_source_untouched(dirs):
    src, mp = dirs
    before = helpers.snapshot(src, ctime=True, ino=True)
    run_failing(daemon("-f", "-o", "increment=abc", src, mp), watch=[mp])
    helpers.assert_same_tree(before, helpers.snapshot(src, ctime=True,
                                                      ino=True))


# --- options that must be accepted -------------------------------------------

@pytest.mark.parametrize("opts", [
    ["noauto", "user", "nofail", "_netdev", "x-systemd.automount"],
    ["default_permissions"],
    ["allow_other"],
    ["increment=4K", "page_size=4096"],
    ["increment=1M", "page_size=1M"],
])
def test_accepted_options_mount_and_unmount_cleanly(mount, source, opts):
    m = mount(source, options=opts)
    assert helpers.read_file(m / "hello.txt") == b"hello, world\n"
    helpers.write_file(m / "new", b"new")
    assert m.unmount() == 0
    assert helpers.read_file(source / "new") == b"new"


def test_ro_refuses_writes_with_erofs_and_leaves_source_as_it_was(
        mount, source):
    before = helpers.snapshot(source, ctime=True, ino=True)
    m = mount(source, options=["ro"])
    assert helpers.read_file(m / "hello.txt") == b"hello, world\n"
    for op in (lambda: os.open(m / "hello.txt", os.O_WRONLY),
               lambda: os.open(m / "new", os.O_CREAT | os.O_WRONLY),
               lambda: os.mkdir(m / "d"),
               lambda: os.unlink(m / "hello.txt"),
               lambda: os.chmod(m / "hello.txt", 0o777)):
        assert helpers.errname(helpers.errno_of(op)) == "EROFS"
    assert m.unmount() == 0
    helpers.assert_same_tree(before, helpers.snapshot(source, ctime=True,
                                                      ino=True))


def test_the_daemon_runs_in_the_background_without_f(tmp_path, source):
    mp = tmp_path / "bg"
    mp.mkdir()
    try:
        res = helpers.run(daemon("-o", "volatile", source, mp), timeout=15,
                          check=False)
        assert res.returncode == 0, res.stderr
        assert res.stderr == ""
        assert helpers.mounts_at(mp)
        assert helpers.read_file(mp / "hello.txt") == b"hello, world\n"
    finally:
        if helpers.mounts_at(mp):
            helpers.run(["fusermount3", "-u", str(mp)], timeout=30,
                        check=False)
        if helpers.mounts_at(mp):
            helpers.run(["fusermount3", "-u", "-z", str(mp)], timeout=10,
                        check=False)
    assert not helpers.mounts_at(mp)
