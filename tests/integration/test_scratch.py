"""h5memfs-scratch: a throw-away volatile workspace around one command.

Each test runs the real tool (build/src/scratch/h5memfs-scratch) with the
daemon of the build ($H5MEMFS), with its own TMPDIR, and checks afterwards
that nothing is left: no mount point directory, no mount, no daemon. The
tool's exit status must be COMMAND's (128+N for a signal N), 125 for its
own failures, 126/127 when COMMAND cannot be run or found.

Every subprocess has a timeout. Processes a test starts on purpose (a
background sleep left in the workspace) are killed by the PID they wrote.
"""

import os
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
SCRATCH = BUILD / "src" / "scratch" / "h5memfs-scratch"
PY = "/usr/bin/python3"
RUN_TIMEOUT = 60


@pytest.fixture(autouse=True)
def _built():
    for exe in (SCRATCH, DAEMON):
        if not exe.exists():
            pytest.fail(f"{exe} missing: build with ninja -C {BUILD}")


# --- what must be gone after every run ------------------------------------

def daemon_pids(fragment):
    """PIDs of h5memfs processes whose command line contains fragment."""
    pids = []
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
        if state == "Z" or not argv or not argv[0]:
            continue
        if os.path.basename(argv[0]) == b"h5memfs" and \
                any(fragment.encode() in a for a in argv):
            pids.append(int(entry))
    return pids


def mounts_under(prefix):
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            if mp == str(prefix) or mp.startswith(str(prefix) + "/"):
                out.append(mp)
    return out


def force_clean(prefix):
    """Take down what a failed run left under prefix: mounts lazily, then
    the daemons serving them (they were started by this test's tool)."""
    for mp in mounts_under(prefix):
        helpers.run(["fusermount3", "-u", "-z", mp], timeout=10,
                    check=False)
    for pid in daemon_pids(str(prefix)):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def leftovers(tmpdir, prefix):
    found = [str(p) for p in Path(tmpdir).glob("h5memfs-scratch.*")]
    found += [f"mount {m}" for m in mounts_under(prefix)]
    found += [f"daemon pid {p}" for p in daemon_pids(str(prefix))]
    return found


@pytest.fixture
def env(tmp_path):
    """The tool's environment: this build's daemon, a private TMPDIR. After
    the test, nothing of any run may be left."""
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    e = dict(os.environ, H5MEMFS=str(DAEMON), TMPDIR=str(tmpdir))
    yield e
    left = leftovers(tmpdir, tmp_path)
    if left:
        force_clean(tmp_path)
        pytest.fail(f"left behind: {left}", pytrace=False)


def scratch(env, *args, timeout=RUN_TIMEOUT, **kw):
    """Run h5memfs-scratch ARGS; the CompletedProcess (text output)."""
    return helpers.run([str(SCRATCH), *map(str, args)], timeout=timeout,
                       check=False, env=env, **kw)


def sh(script):
    return ["--", "sh", "-c", script]


def one_line(stderr):
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line of error, got: {stderr!r}"
    return lines[0]


# --- the workspace ----------------------------------------------------------

def test_command_runs_in_a_fresh_volatile_mount(env):
    res = scratch(env, *sh(
        'echo "$H5MEMFS_SCRATCH"; pwd -P; echo "$PWD"; '
        'ls -A | wc -l; echo data > f && cat f'))
    assert res.returncode == 0, res.stderr
    ws, cwd, pwd, count, data = res.stdout.splitlines()
    assert ws == cwd == pwd
    assert Path(ws).parent == Path(env["TMPDIR"])
    assert Path(ws).name.startswith("h5memfs-scratch.")
    assert count == "0" and data == "data"
    assert res.stderr == ""


def test_workspace_is_an_h5memfs_mount_while_the_command_runs(env):
    res = scratch(env, *sh('grep " $H5MEMFS_SCRATCH " /proc/mounts'))
    assert res.returncode == 0, res.stderr
    fields = res.stdout.split()
    assert fields[2] == "fuse.h5memfs"


@pytest.mark.parametrize("status", [0, 1, 3, 42, 255])
def test_exit_status_is_the_commands(env, status):
    res = scratch(env, *sh(f"exit {status}"))
    assert res.returncode == status
    assert res.stderr == ""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT,
                                 signal.SIGTERM, signal.SIGSEGV])
def test_command_killed_by_a_signal_gives_128_plus_signal(env, sig):
    res = scratch(env, *sh(f"kill -s {sig.name[3:]} $$"))
    assert res.returncode == 128 + sig


def test_command_not_found_gives_127(env):
    res = scratch(env, "--", "no-such-command-h5memfs")
    assert res.returncode == 127
    assert "no-such-command-h5memfs" in one_line(res.stderr)


def test_command_not_executable_gives_126(env, tmp_path):
    script = tmp_path / "not-executable"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o644)
    res = scratch(env, "--", script)
    assert res.returncode == 126
    assert str(script) in one_line(res.stderr)


def test_missing_command_is_a_usage_error(env):
    res = scratch(env)
    assert res.returncode == 125
    assert "COMMAND" in one_line(res.stderr)


def test_command_options_are_not_the_tools(env):
    res = scratch(env, "sh", "-c", "echo $0 $1", "-o", "--keep")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "-o --keep"


def test_help_and_version(env):
    res = scratch(env, "--help")
    assert res.returncode == 0 and "--from" in res.stdout
    res = scratch(env, "--version")
    assert res.returncode == 0 and "h5memfs-scratch" in res.stdout


def test_mount_options_reach_the_daemon(env):
    res = scratch(env, "-o", "ro", *sh("touch x"))
    assert res.returncode != 0
    assert "Read-only file system" in res.stderr


def test_workspace_holds_hdf5_files_written_by_h5py(env):
    code = ("import h5py, numpy as np\n"
            "with h5py.File('w.h5', 'w') as f:\n"
            "    f['x'] = np.arange(1000)\n"
            "with h5py.File('w.h5', 'r') as f:\n"
            "    print(int(f['x'][:].sum()))\n")
    res = scratch(env, "--", PY, "-c", code)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(sum(range(1000)))


# --- failures to mount: one sentence, nothing left ------------------------

def test_missing_from_is_refused_before_anything_is_made(env, tmp_path):
    marker = tmp_path / "ran"
    res = scratch(env, "--from", tmp_path / "missing",
                  *sh(f"touch {marker}"))
    assert res.returncode == 125
    line = one_line(res.stderr)
    assert str(tmp_path / "missing") in line
    assert "No such file or directory" in line
    assert not marker.exists()


def test_from_that_is_a_file_is_refused(env, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    res = scratch(env, "--from", f, "--", "true")
    assert res.returncode == 125
    assert "not a directory" in one_line(res.stderr)


def test_option_the_daemon_refuses_leaves_nothing(env, tmp_path):
    marker = tmp_path / "ran"
    res = scratch(env, "-o", "no_such_option", *sh(f"touch {marker}"))
    assert res.returncode == 125
    assert "no_such_option" in res.stderr
    assert "could not be mounted" in res.stderr
    assert not marker.exists()


def test_missing_daemon_is_a_clear_error(env):
    env = dict(env, H5MEMFS="/nonexistent/h5memfs")
    res = scratch(env, "--", "true")
    assert res.returncode == 125
    assert "/nonexistent/h5memfs" in one_line(res.stderr)


def test_unusable_tmpdir_is_a_clear_error(env, tmp_path):
    env = dict(env, TMPDIR=str(tmp_path / "no-such-tmpdir"))
    res = scratch(env, "--", "true")
    assert res.returncode == 125
    assert "no-such-tmpdir" in one_line(res.stderr)


# --- --from ------------------------------------------------------------------

def test_from_content_is_visible_and_from_is_never_modified(env, source):
    before = helpers.snapshot(source)
    res = scratch(env, "--from", source, *sh(
        "cat hello.txt; cat sub/deeper/deepest/leaf.txt; "
        "echo changed > hello.txt; rm -r sub; mkdir new; echo n > new/f; "
        "chmod 600 random.bin; mv data moved; ln -s x newlink; "
        "sync; exit 0"))
    assert res.returncode == 0, res.stderr
    assert res.stdout == "hello, world\nleaf\n"
    helpers.assert_same_tree(before, helpers.snapshot(source),
                             "before", "after")


def test_from_is_never_modified_even_with_fsync(env, source):
    before = helpers.snapshot(source)
    code = ("import os\n"
            "fd = os.open('hello.txt', os.O_WRONLY | os.O_TRUNC)\n"
            "os.write(fd, b'fsynced')\nos.fsync(fd)\nos.close(fd)\n"
            "os.sync()\n")
    res = scratch(env, "--from", source, "--", PY, "-c", code)
    assert res.returncode == 0, res.stderr
    helpers.assert_same_tree(before, helpers.snapshot(source),
                             "before", "after")


def test_from_containing_tmpdir_mounts_elsewhere(env, tmp_path):
    src = tmp_path / "src"
    (src / "tmp").mkdir(parents=True)
    (src / "f").write_text("content\n")
    env = dict(env, TMPDIR=str(src / "tmp"))
    res = scratch(env, "--from", src, *sh('echo "$H5MEMFS_SCRATCH"; cat f'))
    assert res.returncode == 0, res.stderr
    ws, content = res.stdout.splitlines()
    assert not ws.startswith(str(src) + "/")
    assert content == "content"
    assert not os.path.exists(ws)
    assert sorted(os.listdir(src)) == ["f", "tmp"]
    assert os.listdir(src / "tmp") == []


# --- --keep ------------------------------------------------------------------

def _without_times(snap):
    return {rel: {k: v for k, v in e.items() if k != "mtime_ns"}
            for rel, e in snap.items()}


def test_keep_receives_the_workspace(env, tmp_path):
    keep = tmp_path / "kept"
    res = scratch(env, "--keep", keep, *sh(
        "mkdir -p a/b && echo one > a/b/f && chmod 640 a/b/f && "
        "ln -s a/b/f link && printf x > top && "
        "head -c 100000 /dev/urandom > big"))
    assert res.returncode == 0, res.stderr
    assert (keep / "a" / "b" / "f").read_text() == "one\n"
    assert stat.S_IMODE((keep / "a" / "b" / "f").stat().st_mode) == 0o640
    assert os.readlink(keep / "link") == "a/b/f"
    assert (keep / "top").read_text() == "x"
    assert (keep / "big").stat().st_size == 100000
    assert not [p for p in tmp_path.iterdir()
                if p.name.startswith(".h5memfs-scratch")]


def test_keep_from_another_directory_leaves_from_alone(env, source,
                                                       tmp_path):
    before = helpers.snapshot(source)
    keep = tmp_path / "result"
    # Every file is opened once first: this test is about what --keep
    # copies; renames of files never opened are the next test's business.
    code = ("import os, sys; sys.path.insert(0, sys.argv[1]); import helpers\n"
            "for d, _, files in os.walk('.'):\n"
            "    for f in files:\n"
            "        p = os.path.join(d, f)\n"
            "        if not os.path.islink(p):\n"
            "            open(p, 'rb').close()\n"
            "helpers.change_everything('.')\n")
    res = scratch(env, "--from", source, "--keep", keep, "--", PY, "-c",
                  code, Path(helpers.__file__).parent)
    assert res.returncode == 0, res.stderr
    helpers.assert_same_tree(before, helpers.snapshot(source),
                             "before", "after")
    # The same changes, made on a plain copy, give the same tree.
    ref = tmp_path / "reference"
    helpers.run(["cp", "-a", "-T", str(source), str(ref)])
    helpers.change_everything(str(ref))
    helpers.assert_same_tree(
        _without_times(helpers.snapshot(ref, xattrs=False)),
        _without_times(helpers.snapshot(keep, xattrs=False)),
        "reference", "kept")


def test_from_files_renamed_or_linked_before_any_open_keep_content(env,
                                                                   tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("content of a\n")
    (src / "b").write_text("content of b\n")
    res = scratch(env, "--from", src, *sh(
        "mv a a2 && ln b b2 && rm b && cat a2 b2"))
    assert res.returncode == 0, res.stderr
    assert res.stdout == "content of a\ncontent of b\n"
    assert sorted(os.listdir(src)) == ["a", "b"]


def test_keep_fills_an_empty_directory(env, tmp_path):
    keep = tmp_path / "empty"
    keep.mkdir()
    res = scratch(env, "--keep", keep, *sh("echo r > result"))
    assert res.returncode == 0, res.stderr
    assert os.listdir(keep) == ["result"]


def test_keep_equal_to_from_replaces_from(env, tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    (d / "old").write_text("old\n")
    (d / "stays").write_text("stays\n")
    res = scratch(env, "--from", d, "--keep", d,
                  *sh("rm old; echo new > new; echo more >> stays"))
    assert res.returncode == 0, res.stderr
    assert sorted(os.listdir(d)) == ["new", "stays"]
    assert (d / "stays").read_text() == "stays\nmore\n"
    assert sorted(os.listdir(tmp_path)) == ["data", "tmpdir"]


def test_keep_happens_after_a_failing_command_too(env, tmp_path):
    keep = tmp_path / "kept"
    res = scratch(env, "--keep", keep, *sh("echo partial > p; exit 3"))
    assert res.returncode == 3
    assert (keep / "p").read_text() == "partial\n"


def test_nothing_is_kept_from_a_command_killed_by_a_signal(env, tmp_path):
    keep = tmp_path / "kept"
    res = scratch(env, "--keep", keep, *sh("echo x > x; kill -KILL $$"))
    assert res.returncode == 137
    assert not keep.exists()
    assert "nothing was kept" in one_line(res.stderr)


def test_non_empty_keep_is_refused_before_running(env, tmp_path):
    keep = tmp_path / "full"
    keep.mkdir()
    (keep / "precious").write_text("mine\n")
    marker = tmp_path / "ran"
    res = scratch(env, "--keep", keep, *sh(f"touch {marker}"))
    assert res.returncode == 125
    assert "not empty" in one_line(res.stderr)
    assert not marker.exists()
    assert os.listdir(keep) == ["precious"]


def test_keep_inside_from_is_refused(env, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("f")
    res = scratch(env, "--from", src, "--keep", src / "out", "--", "true")
    assert res.returncode == 125
    assert "inside --from" in one_line(res.stderr)
    assert os.listdir(src) == ["f"]


def test_keep_in_a_missing_directory_is_refused(env, tmp_path):
    res = scratch(env, "--keep", tmp_path / "no" / "such" / "dir",
                  "--", "true")
    assert res.returncode == 125
    assert "No such file or directory" in one_line(res.stderr)


def test_keep_of_hdf5_results(env, source, tmp_path):
    keep = tmp_path / "kept"
    code = ("import h5py\n"
            "with h5py.File('data/sample.h5', 'r+') as f:\n"
            "    f.attrs['touched'] = 1\n"
            "    f['added'] = [1, 2, 3]\n")
    res = scratch(env, "--from", source, "--keep", keep, "--", PY, "-c",
                  code)
    assert res.returncode == 0, res.stderr
    check = ("import h5py, sys\n"
             "with h5py.File(sys.argv[1], 'r') as f:\n"
             "    print(f.attrs['touched'], list(f['added'][:]))\n")
    out = helpers.run_python(check, keep / "data" / "sample.h5").stdout
    assert out.strip() == "1 [1, 2, 3]"
    out = helpers.run_python(
        "import h5py, sys\nprint('added' in h5py.File(sys.argv[1], 'r'))",
        source / "data" / "sample.h5").stdout
    assert out.strip() == "False"


# --- signals to the tool ---------------------------------------------------

def _start(env, *args):
    """Start the tool with stdout piped; wait for COMMAND's first line."""
    p = subprocess.Popen([str(SCRATCH), *map(str, args)], env=env,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        first = _readline(p, 20 * SLOWDOWN)
    except BaseException:
        p.kill()
        p.wait(10 * SLOWDOWN)
        raise
    return p, first


def _readline(p, timeout):
    import select
    poller = select.poll()
    poller.register(p.stdout, select.POLLIN)
    if not poller.poll(timeout * 1000):
        raise AssertionError("no output from the command in time")
    return p.stdout.readline().strip()


def _finish(p, timeout=20):
    try:
        out, err = p.communicate(timeout=timeout * SLOWDOWN)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate(timeout=10 * SLOWDOWN)
        raise AssertionError("h5memfs-scratch did not end in time")
    return p.returncode, out, err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT,
                                 signal.SIGHUP])
def test_signal_to_the_tool_reaches_the_command_then_cleans_up(env, sig):
    p, first = _start(env, *sh('echo "$H5MEMFS_SCRATCH"; exec sleep 60'))
    assert os.path.ismount(first)
    p.send_signal(sig)
    rc, _, err = _finish(p)
    assert rc == 128 + sig, err
    assert not os.path.exists(first)


def test_command_can_clean_up_in_the_workspace_after_a_signal(env,
                                                              tmp_path):
    log = tmp_path / "log"
    p, first = _start(env, *sh(
        f'sleep 60 & trap "cat note > {log}; kill $!; exit 7" TERM; '
        f'echo hi > note; echo started; wait'))
    assert first == "started"
    p.send_signal(signal.SIGTERM)
    rc, _, err = _finish(p)
    assert rc == 7, err
    assert log.read_text() == "hi\n"


def test_a_signal_during_the_command_skips_keep(env, tmp_path):
    keep = tmp_path / "kept"
    p, first = _start(env, "--keep", keep, *sh(
        'sleep 60 & trap "kill $!; exit 0" TERM; echo x > x; '
        'echo started; wait'))
    p.send_signal(signal.SIGTERM)
    rc, _, err = _finish(p)
    # The command exited 0, but nothing was kept: not a success.
    assert rc == 128 + signal.SIGTERM
    assert not keep.exists()
    assert "nothing was kept" in err


def test_ctrl_c_at_a_terminal_reaches_the_command_once(env, tmp_path):
    """Ctrl-C goes to the whole foreground process group: the command gets
    it from the terminal, and the tool must not send it a second one."""
    import pty
    import select
    log = tmp_path / "ints"
    master, slave = pty.openpty()
    script = (f"trap 'echo INT >> {log}' INT; echo ready; "
              f"while [ ! -s {log} ]; do sleep 0.1; done; sleep 1; "
              f"echo in-workspace > after-int && exit 5")
    p = subprocess.Popen(["setsid", "-c", str(SCRATCH), *sh(script)],
                         env=env, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    try:
        buf = b""
        deadline = time.monotonic() + 20 * SLOWDOWN
        while b"ready" not in buf and time.monotonic() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                buf += os.read(master, 1024)
        assert b"ready" in buf, buf
        os.write(master, b"\x03")
        deadline = time.monotonic() + 20 * SLOWDOWN
        while p.poll() is None and time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    buf += os.read(master, 1024)
                except OSError:
                    break
        rc = p.wait(20 * SLOWDOWN)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10 * SLOWDOWN)
        os.close(master)
    assert rc == 5, buf
    assert log.read_text() == "INT\n"


def test_sigkill_of_the_tool_still_unmounts(env, tmp_path):
    """The daemon dies with its parent (PR_SET_PDEATHSIG): no mount is
    left, only the empty mount point directory (documented)."""
    pidfile = tmp_path / "cmd.pid"
    p, ws = _start(env, *sh(f'echo $$ > {pidfile}; '
                            f'echo "$H5MEMFS_SCRATCH"; exec sleep 60'))
    cmd_pid = int(pidfile.read_text())
    try:
        p.kill()
        p.wait(10 * SLOWDOWN)
        deadline = time.monotonic() + 20 * SLOWDOWN
        while mounts_under(ws) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not mounts_under(ws)
        assert os.listdir(ws) == []
        assert stat.S_IMODE(os.stat(ws).st_mode) == 0o700
    finally:
        try:
            os.kill(cmd_pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.communicate(timeout=10 * SLOWDOWN)
        if not mounts_under(ws) and os.path.isdir(ws):
            os.rmdir(ws)


def test_process_left_in_the_workspace_does_not_block_cleanup(env,
                                                              tmp_path):
    pidfile = tmp_path / "bg.pid"
    try:
        start = time.monotonic()
        res = scratch(env, *sh(
            f"sleep 600 > /dev/null 2>&1 & echo $! > {pidfile}; exit 0"),
            timeout=40)
        assert res.returncode == 0, res.stderr
        # Far less than the background sleep: the tool did not wait for it.
        assert time.monotonic() - start < 30 * SLOWDOWN
    finally:
        if pidfile.exists():
            try:
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_signal_while_mounting_stops_and_cleans_up(env, tmp_path):
    """A daemon slow to start (here: a wrapper that waits before it runs
    h5memfs) is stopped by a signal to the tool; COMMAND never runs."""
    wrapper = tmp_path / "slow-h5memfs"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"exec {PY} -c 'import os, sys, time; time.sleep({30 * SLOWDOWN}); "
        f"os.execv(sys.argv[1], sys.argv[1:])' {DAEMON} \"$@\"\n")
    wrapper.chmod(0o755)
    marker = tmp_path / "ran"
    env2 = dict(env, H5MEMFS=str(wrapper))
    p = subprocess.Popen([str(SCRATCH), *sh(f"touch {marker}")], env=env2,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20 * SLOWDOWN
    while not list(Path(env["TMPDIR"]).glob("h5memfs-scratch.*")) and \
            time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    p.send_signal(signal.SIGTERM)
    rc, _, err = _finish(p)
    assert rc == 128 + signal.SIGTERM, err
    assert not marker.exists()


def test_daemon_dying_under_the_command_is_reported(env):
    # The daemon is the tool's child, so the command's sibling.
    res = scratch(env, *sh(
        "d=$(pgrep -P $PPID -x h5memfs); echo x > f; kill -KILL $d; "
        # The command goes on until the daemon is dead (a zombie with no
        # thread left), so that the tool sees it die while the command runs.
        "while [ -d /proc/$d ] && { ! grep -q '^State:.Z' /proc/$d/status "
        "|| [ $(ls /proc/$d/task | wc -l) -gt 1 ]; }; do sleep 0.05; done; "
        "cat f 2>/dev/null; exit 0"))
    assert res.returncode == 125
    assert "h5memfs was killed by signal 9 while the command ran" in \
        res.stderr


# --- an ordinary user -------------------------------------------------------

def _unprivileged_wrapper(tmp_path):
    """argv prefix that runs a shell script as nobody, in a private mount
    namespace where /dev/fuse is usable by everyone when the machine's is
    root-only (FUSE needs it open; fusermount3 does the mounting)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to an ordinary user")
    mode = os.stat("/dev/fuse").st_mode
    if mode & 0o006 == 0o006:
        return [], ""
    dev = tmp_path / "fuse"
    return (["unshare", "-m", "--propagation", "private"],
            f"mknod {dev} c 10 229 && chmod 666 {dev} && "
            f"mount --bind {dev} /dev/fuse && ")


def test_an_ordinary_user_gets_a_workspace_too(env, tmp_path):
    import shutil
    import tempfile
    prefix, setup = _unprivileged_wrapper(tmp_path)
    # Somewhere nobody can reach (pytest's own tmp_path is root-only).
    tmpdir = Path(tempfile.mkdtemp(prefix="h5memfs-user-tmp.", dir="/tmp"))
    try:
        os.chown(tmpdir, 65534, 65534)
        # Copies nobody can run wherever the build tree is (a clone in
        # /root is out of nobody's reach).
        bindir = tmpdir / "bin"
        bindir.mkdir(mode=0o755)
        daemon = shutil.copy(DAEMON, bindir / "h5memfs")
        tool = shutil.copy(SCRATCH, bindir / "h5memfs-scratch")
        inner = (f"H5MEMFS={daemon} TMPDIR={tmpdir} {tool} -- sh -c "
                 f"'id -u; echo x > f && cat f; exit 4'")
        script = setup + f"su -s /bin/sh nobody -c \"{inner}\"; echo rc=$?"
        res = helpers.run(prefix + ["sh", "-c", script],
                          timeout=RUN_TIMEOUT, check=False)
        assert res.stdout.split() == ["65534", "x", "rc=4"], res.stderr
        assert leftovers(tmpdir, tmpdir) == []
    finally:
        force_clean(tmpdir)
        shutil.rmtree(tmpdir, ignore_errors=True)
