"""The machinery of bench/run, shared by every workload (bench/workloads/):
running commands with timeouts and a watchdog, the targets (tmpfs, ext4 on a
loop device, an h5memfs mount per data path) and their cleanup, recording
figures (medians of rounds over the targets), and the report (the main
table of figures and ratios, and the tables a workload adds).

A workload is a module in bench/workloads/ with NAME (its --only name),
ORDER (where it runs and reports), ROWS (its lines of the main table) and
run(b), and optionally report(b, out, summary); see bench/README.md.
"""
import glob
import importlib.util
import json
import os
import platform
import re
import select
import shutil
import signal
import stat
import statistics
import subprocess
import sys
import threading
import time
import traceback

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
PY = "/usr/bin/python3"
BASE = "/var/tmp/h5memfs-bench"
MiB = 2**20
GiB = 2**30



def load_workloads():
    """The modules of bench/workloads/, in their ORDER. Adding a workload is
    adding a file there: NAME (its --only name), ORDER (where it runs and
    reports), ROWS (its lines of the main table: key, label, unit, higher
    is better, base target, target ratio for the daemon path and for
    passthrough), run(b) (records its figures with b.reps or b.record), and
    optionally report(b, out, summary) (tables of its own)."""
    mods = []
    for path in sorted(glob.glob(os.path.join(BENCH, "workloads", "*.py"))):
        name = os.path.splitext(os.path.basename(path))[0]
        if name.startswith("_"):
            continue
        spec = importlib.util.spec_from_file_location(
            f"h5memfs_bench_{name}", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        mods.append(mod)
    mods.sort(key=lambda m: (m.ORDER, m.NAME))
    names = [m.NAME for m in mods]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise SystemExit(f"bench/workloads: NAME used twice: {sorted(dup)}")
    return mods



class BenchError(Exception):
    pass


class Interrupted(BaseException):
    pass


def log(msg):
    if "WD" in globals():
        WD.touch()
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Watchdog(threading.Thread):
    """Unsticks the bench when a FUSE mount hangs a call that has no
    timeout of its own (stat, unlink, ... from this process): with no
    progress before the deadline, abort every FUSE connection the bench
    made, so that blocked calls fail with ENOTCONN and cleanup runs."""

    # seconds allowed between two signs of progress
    IDLE = int(os.environ.get("H5MEMFS_BENCH_IDLE", "180"))

    def __init__(self):
        super().__init__(daemon=True)
        self.deadline = time.monotonic() + self.IDLE

    def touch(self, seconds=None):
        self.deadline = time.monotonic() + (seconds or self.IDLE)

    def run(self):
        while True:
            time.sleep(2)
            if time.monotonic() < self.deadline:
                continue
            log("watchdog: no progress; aborting the bench's FUSE "
                "connections")
            for d in list(REG.daemons):
                d.aborted = True
                abort_conn(d.mnt)
            self.touch()


WD = Watchdog()


def abort_conn(mnt):
    """Abort the FUSE connection mounted at mnt (never touches the mount)."""
    minor = _fuse_conn(mnt)
    if minor is None:
        return
    try:
        with open(f"/sys/fs/fuse/connections/{minor}/abort", "w") as f:
            f.write("1")
    except OSError:
        pass


def sh(cmd, timeout, check=True, **kw):
    """Run a command (list) with a timeout; returns CompletedProcess."""
    WD.touch(timeout + 60)
    try:
        p = subprocess.run(cmd, timeout=timeout, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, **kw)
    except subprocess.TimeoutExpired:
        raise BenchError(f"timed out after {timeout}s: {' '.join(cmd)}")
    finally:
        WD.touch()
    if check and p.returncode != 0:
        tail = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
        raise BenchError(f"exit {p.returncode}: {' '.join(cmd)}: "
                         f"{' | '.join(tail[-3:])[-600:]}")
    return p


def timed(cmd, timeout, **kw):
    t0 = time.perf_counter()
    sh(cmd, timeout, **kw)
    return time.perf_counter() - t0


def pyjson(args, timeout):
    p = sh([PY] + args, timeout)
    return json.loads(p.stdout.strip().splitlines()[-1])


def mounted(path):
    # abspath, not realpath: realpath would stat a possibly hung mount
    path = os.path.abspath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].encode().decode("unicode_escape")
            if mp == path:
                return True
    return False


def mounts_under(prefix):
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            mp = parts[4].encode().decode("unicode_escape")
            fstype = parts[parts.index("-") + 1]
            if mp == prefix or mp.startswith(prefix + "/"):
                out.append((mp, fstype))
    return out


def drop_caches(ext4=None):
    if ext4:
        sh(["sync", "-f", ext4], 300)
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def meminfo():
    r = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, v = line.split(":")
            r[k] = int(v.split()[0]) * 1024
    return r


def median(xs):
    return statistics.median(xs) if xs else None


# ---------------------------------------------------------------- mounts

class FuseDaemon:
    """A FUSE daemon we started (h5memfs or slowfs), mounted at mnt."""

    def __init__(self, name, argv, mnt, logdir, notify=None, uid=None):
        self.name, self.argv, self.mnt = name, argv, mnt
        self.uid = uid  # the daemon's user, when not root
        self.logpath = os.path.join(logdir, f"{name}.log")
        self.notify = notify
        self.proc = None
        self.aborted = False  # connection aborted: do not wait long

    def start(self, timeout=60):
        if mounted(self.mnt):
            raise BenchError(f"{self.mnt} is already a mount point")
        os.makedirs(self.mnt, exist_ok=True)
        logf = open(self.logpath, "ab")
        fifo_fd = None
        argv = list(self.argv)
        t0 = time.perf_counter()
        if self.notify:
            if os.path.exists(self.notify):
                os.unlink(self.notify)
            os.mkfifo(self.notify, 0o600)
            if self.uid is not None:
                os.chown(self.notify, self.uid, self.uid)
            fifo_fd = os.open(self.notify, os.O_RDONLY | os.O_NONBLOCK)
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=logf, stderr=logf,
                                     start_new_session=True)
        logf.close()
        REG.daemons.append(self)
        try:
            self._wait_ready(fifo_fd, t0 + timeout)
        finally:
            if fifo_fd is not None:
                os.close(fifo_fd)
                os.unlink(self.notify)
        self.mount_seconds = time.perf_counter() - t0
        return self.mount_seconds

    def _wait_ready(self, fifo_fd, deadline):
        buf = b""
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited {self.proc.returncode}"
                                 f" before serving: {self.log_tail()}")
            if fifo_fd is not None:
                r, _, _ = select.select([fifo_fd], [], [], 0.05)
                if r:
                    try:
                        chunk = os.read(fifo_fd, 64)
                    except BlockingIOError:
                        chunk = b""
                    buf += chunk
                    if b"ready" in buf:
                        return
                    if b"fail" in buf:
                        raise BenchError(f"{self.name} failed to start: "
                                         f"{self.log_tail()}")
                    if not chunk:
                        time.sleep(0.02)
            else:
                if mounted(self.mnt):
                    return
                time.sleep(0.02)
        raise BenchError(f"{self.name} not ready after timeout: "
                         f"{self.log_tail()}")

    def log_tail(self, n=1500):
        try:
            with open(self.logpath, "rb") as f:
                return f.read()[-n:].decode(errors="replace").strip()
        except OSError:
            return ""

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def unmount(self, timeout=600):
        """fusermount3 -u, then wait for the daemon to exit (its write-back).

        Returns (seconds, exit status). On a timeout the mount is torn down
        by force and BenchError raised."""
        t0 = time.perf_counter()
        if mounted(self.mnt):
            ok = False
            for _ in range(50):
                p = sh(["fusermount3", "-u", self.mnt], 30, check=False)
                if p.returncode == 0 or not mounted(self.mnt):
                    ok = True
                    break
                time.sleep(0.1)
            if not ok:
                self.force()
                raise BenchError(f"could not unmount {self.mnt}: "
                                 f"{p.stderr.strip()}")
        if self.aborted:
            timeout = min(timeout, 15)
        WD.touch(timeout + 60)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.force()
            raise BenchError(f"{self.name} did not exit {timeout}s after "
                             f"unmount: {self.log_tail()}")
        secs = time.perf_counter() - t0
        if self in REG.daemons:
            REG.daemons.remove(self)
        return secs, rc

    def force(self):
        """Tear down without the daemon's help: abort, lazy unmount, kill."""
        if mounted(self.mnt):
            self.aborted = True
            abort_conn(self.mnt)
            sh(["fusermount3", "-uz", self.mnt], 30, check=False)
            if mounted(self.mnt):
                sh(["umount", "-l", self.mnt], 30, check=False)
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            self.proc.send_signal(signal.SIGCONT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
        if self in REG.daemons:
            REG.daemons.remove(self)

    def memory(self):
        """Daemon memory: VmRSS plus the memory files it holds (memfds
        are not mapped, so VmRSS does not count them)."""
        st = {}
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM"):
                    st[k] = int(v.split()[0]) * 1024
        memfd = 0
        nfd = 0
        fddir = f"/proc/{self.pid}/fd"
        for fd in os.listdir(fddir):
            try:
                target = os.readlink(os.path.join(fddir, fd))
                s = os.stat(os.path.join(fddir, fd))
                # memfds, and unlinked files (O_TMPFILE in a tmpfs)
                if not (target.startswith("/memfd:") or
                        (stat.S_ISREG(s.st_mode) and s.st_nlink == 0)):
                    continue
                memfd += s.st_blocks * 512
                nfd += 1
            except OSError:
                pass
        st["memfd_bytes"] = memfd
        st["memfds"] = nfd
        return st


def h5status(mnt):
    """The mount's status JSON (user.h5memfs.status on its root), or {}."""
    try:
        return json.loads(os.getxattr(mnt, "user.h5memfs.status"))
    except (OSError, ValueError):
        return {}


def _fuse_conn(mnt):
    """The /sys/fs/fuse/connections id of the mount at mnt (from mountinfo)."""
    real = os.path.abspath(mnt)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            if parts[4].encode().decode("unicode_escape") == real:
                return int(parts[2].split(":")[1])
    return None


class Registry:
    """Everything to undo, in reverse order, whatever happens."""

    def __init__(self):
        self.daemons = []
        self.mounts = []     # kernel mounts (tmpfs, ext4)
        self.loops = []
        self.files = []
        self.restore = []    # callables that undo machine settings

    def cleanup(self):
        for d in list(self.daemons)[::-1]:
            try:
                if d.alive() or mounted(d.mnt):
                    log(f"cleanup: unmounting {d.mnt}")
                    try:
                        d.unmount(timeout=120)
                    except BenchError as e:
                        log(f"cleanup: {e}")
                        d.force()
            except Exception as e:  # keep going: other mounts remain
                log(f"cleanup: {d.mnt}: {e}")
                d.force()
        self.daemons = []
        for mp in self.mounts[::-1]:
            if mounted(mp):
                p = sh(["umount", mp], 120, check=False)
                if p.returncode != 0:
                    log(f"cleanup: umount {mp}: {p.stderr.strip()}; lazy")
                    sh(["umount", "-l", mp], 60, check=False)
        self.mounts = []
        for dev in self.loops[::-1]:
            sh(["losetup", "-d", dev], 60, check=False)
        self.loops = []
        for f in self.files:
            try:
                if os.path.isdir(f):
                    shutil.rmtree(f, ignore_errors=True)
                elif os.path.exists(f):
                    os.unlink(f)
            except OSError:
                pass
        for undo in self.restore[::-1]:
            try:
                undo()
            except OSError as e:
                log(f"cleanup: {e}")
        self.restore = []


REG = Registry()


NOBODY = 65534


def allow_user_mounts():
    """Let a user other than root mount with allow_other, as a Debian
    machine with fuse3 installed does (/dev/fuse 0666; user_allow_other
    in /etc/fuse.conf, which the bench's own root processes need to reach
    the mount); both undone at cleanup."""
    mode = stat.S_IMODE(os.stat("/dev/fuse").st_mode)
    if mode & 0o006 != 0o006:
        os.chmod("/dev/fuse", 0o666)
        REG.restore.append(lambda: os.chmod("/dev/fuse", mode))
    conf = "/etc/fuse.conf"
    try:
        with open(conf) as f:
            text = f.read()
    except FileNotFoundError:
        text = None
    lines = (text or "").splitlines()
    if "user_allow_other" in [ln.strip() for ln in lines]:
        return

    def undo():
        if text is None:
            os.unlink(conf)
        else:
            with open(conf, "w") as f:
                f.write(text)
    with open(conf, "a") as f:
        if text and not text.endswith("\n"):
            f.write("\n")
        f.write("user_allow_other\n")
    REG.restore.append(undo)


def clean_stale():
    """Mounts and loop devices left under BASE by a killed earlier run."""
    for mp, fstype in sorted(mounts_under(BASE), key=lambda m: -len(m[0])):
        log(f"stale mount {mp} ({fstype}) from an earlier run: detaching")
        if fstype.startswith("fuse"):
            abort_conn(mp)
            sh(["fusermount3", "-uz", mp], 30, check=False)
        if mounted(mp):
            sh(["umount", "-l", mp], 30, check=False)
    img = os.path.join(BASE, "ext4.img")
    if os.path.exists(img):
        p = sh(["losetup", "-j", img], 30, check=False)
        for line in p.stdout.splitlines():
            dev = line.split(":")[0]
            log(f"stale loop device {dev}: detaching")
            sh(["losetup", "-d", dev], 30, check=False)


# ---------------------------------------------------------------- config

def config(quick):
    if quick:
        return dict(
            mode="quick", seq_bytes=64 * MiB, reps=1, fio_runtime=1,
            h5_mib=32, chunk_kib=64, h5_reads=300, h5dump_n=1000,
            meta_n=1000, big_bytes=128 * MiB, ext4_size="3G",
            tmpfs_size="4G",
            wf=dict(data_mib=16, chunks=50, iters=3, rows=200), wf_reps=1)
    return dict(
        mode="full", seq_bytes=1 * GiB, reps=3, fio_runtime=5,
        h5_mib=512, chunk_kib=64, h5_reads=4000, h5dump_n=10000,
        meta_n=10000, big_bytes=1 * GiB, ext4_size="8G", tmpfs_size="8G",
        wf=dict(data_mib=64, chunks=200, iters=10, rows=1000), wf_reps=3)


# ---------------------------------------------------------------- the bench

class Bench:
    def __init__(self, args):
        self.args = args
        self.cfg = config(args.quick)
        for kv in (args.wf.split(",") if args.wf else []):
            k, _, v = kv.partition("=")
            if k not in self.cfg["wf"]:
                raise SystemExit(f"--wf: unknown parameter {k}")
            self.cfg["wf"][k] = int(v)
        self.h5memfs = os.path.abspath(args.h5memfs)
        self.results = {}     # key -> {target: {...}}
        self.errors = []
        self.notes = []
        self.work = BASE
        self.logdir = os.path.join(BENCH, "results", "logs")
        self.tmpfs = os.path.join(BASE, "tmpfs")
        self.ext4 = os.path.join(BASE, "ext4")
        self.variants = {}    # target name -> extra h5memfs -o options
        self.users = {}       # target name -> uid its daemon runs as
        self.targets = []
        self.mounts = {}      # target -> FuseDaemon (data mounts)
        self.nmount = 0
        self.status_start = {}
        self.hung = set()
        self.status_end = {}

    # ---- setup
    def setup(self):
        os.makedirs(BASE, exist_ok=True)
        os.makedirs(self.logdir, exist_ok=True)
        for f in os.listdir(self.logdir):
            os.unlink(os.path.join(self.logdir, f))
        if not os.access(self.h5memfs, os.X_OK):
            raise BenchError(f"no h5memfs binary at {self.h5memfs} "
                             "(ninja -C build)")
        help_ = sh([self.h5memfs, "--help"], 20, check=False)
        text = help_.stdout + help_.stderr
        if re.search(r"passthrough", text):
            self.variants = {"h5memfs": "passthrough=off",
                             "h5memfs-pt": "passthrough=on"}
        else:
            self.variants = {"h5memfs": ""}
            self.notes.append("h5memfs --help lists no passthrough option: "
                              "daemon data path only")
        if not getattr(self.args, "no_user", False) and \
                shutil.which("setpriv"):
            # what users without root get: the daemon path, memfd images,
            # the kernel's own dirty limits for the mount
            allow_user_mounts()
            self.variants["h5memfs-user"] = "passthrough=off,allow_other"
            self.users["h5memfs-user"] = NOBODY
        extra = os.environ.get("H5MEMFS_BENCH_OPTIONS")
        if extra:  # e.g. load=whole, to compare with the default
            self.variants = {k: ",".join(x for x in (v, extra) if x)
                             for k, v in self.variants.items()}
            self.notes.append(f"h5memfs options added: {extra}")
        self.targets = ["tmpfs", "ext4"] + list(self.variants)
        self.slowfs = self.build_slowfs()
        # fusectl: to abort a hung connection (mounted if it is not)
        conns = "/sys/fs/fuse/connections"
        with open("/proc/self/mounts") as f:
            have = any(line.split()[2] == "fusectl" for line in f)
        if not have and os.path.isdir(conns):
            p = sh(["mount", "-t", "fusectl", "fusectl", conns], 30,
                   check=False)
            if p.returncode == 0:
                REG.mounts.insert(0, conns)
        # tmpfs
        os.makedirs(self.tmpfs, exist_ok=True)
        sh(["mount", "-t", "tmpfs", "-o",
            f"size={self.cfg['tmpfs_size']},mode=1777", "h5memfs-bench",
            self.tmpfs], 30)
        REG.mounts.append(self.tmpfs)
        # ext4 on a loop device, direct I/O to the image so that "cold"
        # reads reach the disk and are not served by the host page cache.
        img = os.path.join(BASE, "ext4.img")
        REG.files.append(img)
        if os.path.exists(img):
            os.unlink(img)
        sh(["truncate", "-s", self.cfg["ext4_size"], img], 30)
        dev = sh(["losetup", "--find", "--show", "--direct-io=on", img],
                 30).stdout.strip()
        REG.loops.append(dev)
        sh(["mkfs.ext4", "-q", "-F", "-E",
            "lazy_itable_init=0,lazy_journal_init=0", dev], 300)
        os.makedirs(self.ext4, exist_ok=True)
        sh(["mount", dev, self.ext4], 60)
        REG.mounts.append(self.ext4)
        self.loopdev = dev
        # h5memfs data mounts over ext4 SOURCE directories
        for name, opts in self.variants.items():
            self.mounts[name] = self.mount_h5memfs(name, f"src-{name}",
                                                   opts)
            st = h5status(self.mounts[name].mnt)
            self.status_start[name] = st
            if st.get("data_path"):
                self.notes.append(f"{name}: -o {opts or '(defaults)'}, "
                                  f"data path {st['data_path']}")

    def build_slowfs(self):
        built = os.path.join(REPO, "build", "bench", "slowfs")
        src = os.path.join(BENCH, "slowfs.c")
        if (os.access(built, os.X_OK)
                and os.path.getmtime(built) >= os.path.getmtime(src)):
            return built
        out = os.path.join(BASE, "slowfs-bin")
        flags = sh(["pkg-config", "--cflags", "--libs", "fuse3"],
                   30).stdout.split()
        sh(["gcc", "-O2", "-Wall", src, "-o", out] + flags, 120)
        return out

    def mount_h5memfs(self, name, srcdir, opts, source=None):
        self.nmount += 1
        src = source or os.path.join(self.ext4, srcdir)
        os.makedirs(src, exist_ok=True)
        mnt = os.path.join(BASE, f"mnt-{name}-{self.nmount}")
        o = f"notify_pipe={BASE}/notify-{self.nmount}"
        if opts:
            o += "," + opts
        argv = [self.h5memfs, "-f", "-o", o, src, mnt]
        uid = self.users.get(name)
        if uid is not None:
            # the user's own SOURCE and mount point, as for a user mount
            os.makedirs(mnt, exist_ok=True)
            for path in (src, mnt):
                sh(["chown", "-R", f"{uid}:{uid}", path], 300)
            argv = ["setpriv", f"--reuid={uid}", f"--regid={uid}",
                    "--clear-groups"] + argv
        d = FuseDaemon(f"{name}-{self.nmount}", argv, mnt, self.logdir,
                       notify=f"{BASE}/notify-{self.nmount}", uid=uid)
        d.start()
        return d

    def root(self, target):
        if target == "tmpfs":
            return self.tmpfs
        if target == "ext4":
            return self.ext4
        return self.mounts[target].mnt

    def fresh_root(self, target):
        """A daemon mount that is alive (remount if a workload killed it)."""
        if target in self.variants:
            d = self.mounts[target]
            if target in self.hung:
                raise BenchError(f"{target} was aborted after a hang")
            if not d.alive() or not mounted(d.mnt):
                raise BenchError(f"{target} mount at {d.mnt} is gone: "
                                 f"{d.log_tail()}")
        return self.root(target)

    def record(self, key, target, value, **extra):
        self.results.setdefault(key, {})[target] = dict(value=value, **extra)

    def fail(self, key, target, err):
        msg = str(err)
        log(f"ERROR {key} on {target}: {msg}")
        self.errors.append({"workload": key, "target": target,
                            "error": msg})
        self.results.setdefault(key, {})[target] = {"value": None,
                                                    "error": msg[:300]}

    def reps(self, key, targets, fn, n=None):
        """Round-robin over targets n times; fn(target) -> value or
        (value, extra). Records medians."""
        n = n or self.cfg["reps"]
        vals = {t: [] for t in targets}
        extras = {t: {} for t in targets}
        dead = set()
        for _ in range(n):
            for t in targets:
                if t in dead:
                    continue
                try:
                    v = fn(t)
                    if isinstance(v, tuple):
                        v, ex = v
                        extras[t].update(ex)
                    vals[t].append(v)
                except BenchError as e:
                    dead.add(t)
                    self.fail(key, t, e)
                    self.maybe_hung(t, e)
        for t in targets:
            if t not in dead:
                self.record(key, t, median(vals[t]), runs=vals[t],
                            **extras[t])

    def maybe_hung(self, target, err):
        """A command on a data mount timed out: the daemon may hang. Abort
        its connection so that nothing else waits on it; the target
        stays failed for the rest of the run."""
        if target in self.mounts and "timed out" in str(err):
            d = self.mounts[target]
            log(f"{target}: a command timed out; aborting the mount at "
                f"{d.mnt} (daemon pid {d.pid})")
            self.hung.add(target)
            d.force()

    def big_file(self):
        """A file of big_bytes random bytes on tmpfs (made once)."""
        f = os.path.join(self.tmpfs, "random.dat")
        if not os.path.exists(f):
            with open(f, "wb") as out:
                left = self.cfg["big_bytes"]
                block = os.urandom(16 * MiB)
                i = 0
                while left > 0:
                    # distinct blocks without paying urandom for all of them
                    b = (i.to_bytes(8, "little") + block[8:])[:min(left,
                                                                  16 * MiB)]
                    out.write(b)
                    left -= len(b)
                    i += 1
        return f


    # ---- driver
    def run(self):
        t_start = time.time()
        self.load_start = os.getloadavg()
        if self.load_start[0] > 0.5:
            self.notes.append(f"load average {self.load_start[0]:.2f} at "
                              "the start: other work on this machine "
                              "skews the figures")
        self.setup()
        only = (self.args.only.split(",") if self.args.only else SECTIONS)
        for sec in SECTIONS:
            if sec not in only:
                continue
            t0 = time.perf_counter()
            try:
                WORKLOADS[SECTIONS.index(sec)].run(self)
            except BenchError as e:
                self.fail(sec, "-", e)
            except Exception as e:
                self.fail(sec, "-", f"{type(e).__name__}: {e}\n"
                          f"{traceback.format_exc()}")
            log(f"section {sec}: {time.perf_counter() - t0:.1f}s")
        # The data mounts go last: their unmount writes back what is left.
        for name, d in list(self.mounts.items()):
            if name in self.hung or d.aborted or not d.alive():
                if d.aborted:
                    self.fail("unmount", name, "connection aborted by the "
                              "watchdog: no write-back")
                d.force()
                continue
            self.status_end[name] = h5status(d.mnt)
            try:
                s, rc = d.unmount()
                if rc != 0:
                    self.fail("unmount", name,
                              f"exit {rc}: {d.log_tail()}")
            except BenchError as e:
                self.fail("unmount", name, e)
        self.elapsed = time.time() - t_start
        self.load_end = os.getloadavg()


# ---------------------------------------------------------------- report

# key: (label, unit, higher_is_better, baseline, daemon target, pt target)


def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def ratio(v, base, higher):
    if v is None or base in (None, 0) or v == 0:
        return None
    return v / base if higher else base / v


def report(b):
    res = b.results
    variants = list(b.variants)
    targets = b.targets
    out = []
    summary = {"targets_missed": [], "ratios": {}}
    cfg = b.cfg
    out.append(f"## h5memfs benchmark ({cfg['mode']}, "
               f"{time.strftime('%Y-%m-%d %H:%M')}, kernel "
               f"{platform.release()}, {os.cpu_count()} CPUs)\n")
    out.append(f"Sizes: sequential/fio file {cfg['seq_bytes'] // MiB} MiB, "
               f"h5py dataset {cfg['h5_mib']} MiB in {cfg['chunk_kib']} KiB "
               f"chunks, {cfg['h5_reads']} random chunk reads, "
               f"{cfg['h5dump_n']} datasets for h5dump, {cfg['meta_n']} "
               f"files for metadata, {cfg['big_bytes'] // MiB} MiB for load "
               f"and write-back; median of {cfg['reps']} "
               f"(fio: {cfg['fio_runtime']} s time-based runs).\n")
    head = ["workload", "unit"] + targets
    head += [f"{v} / base" for v in variants] + ["base", "target", "met"]
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "---|" * len(head))
    for key, label, unit, higher, base, tgt_d, tgt_p in ROWS:
        r = res.get(key)
        if not r:
            continue
        cells = [label, unit]
        for t in targets:
            e = r.get(t)
            if e is None:
                cells.append("-" if t != "tmpfs" or "writeback" not in key
                             else "n/a")
            elif e.get("error"):
                cells.append("ERROR")
            else:
                cells.append(fmt(e["value"]))
        bv = (r.get(base) or {}).get("value")
        tgts, mets = [], []
        for v in variants:
            x = ratio((r.get(v) or {}).get("value"), bv, higher)
            summary["ratios"].setdefault(key, {})[v] = x
            cells.append(fmt(x))
            tg = tgt_p if v.endswith("-pt") else tgt_d
            if tg is not None:
                tgts.append(f"{'pt ' if v.endswith('-pt') else ''}"
                            f">={tg}")
                if x is None:
                    mets.append("?")
                elif x >= tg:
                    mets.append("yes")
                else:
                    mets.append("NO")
                    summary["targets_missed"].append(
                        f"{label} ({v}): {x:.2f}x {base}, target {tg}")
        cells += [base, ", ".join(tgts) or "-", "/".join(mets) or "-"]
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    out.append("Ratios: speed relative to the base column (higher is "
               "faster; for h5dump, base time / time). Targets: the "
               "project's goals (daemon path; 'pt' = passthrough).\n")

    # the workloads' own tables, in their order
    for m in WORKLOADS:
        if hasattr(m, "report"):
            m.report(b, out, summary)
    if b.notes:
        out.append("Notes: " + "; ".join(b.notes) + "\n")
    if b.errors:
        out.append("### Errors\n")
        for e in b.errors:
            msg = e["error"].replace("\n", " ")[:600]
            out.append(f"- {e['workload']} on {e['target']}: {msg}")
        out.append("")
    if summary["targets_missed"]:
        out.append("### Targets not met\n")
        for m in summary["targets_missed"]:
            out.append(f"- {m}")
        out.append("")
    out.append(f"Total time {b.elapsed:.0f} s.")
    return "\n".join(out), summary


def memory_table(b, out, summary, key, what):
    """The daemon's memory recorded under key (VmRSS and memfd bytes per
    h5memfs target), against the image bytes: a table and the targets it
    misses."""
    m = b.results.get(key)
    if not m:
        return
    out.append(f"### Daemon memory {what}\n")
    out.append("| mount | image bytes | VmRSS | memfd bytes | "
               "daemon total | total / image | limit (1.05x + 64 MiB) "
               "| met |")
    out.append("|---|---|---|---|---|---|---|---|")
    for t, e in m.items():
        tot = e["VmRSS"] + e["memfd_bytes"]
        img = e["image_bytes"]
        lim = 1.05 * img + 64 * MiB
        met = "yes" if tot <= lim else "NO"
        if met == "NO":
            summary["targets_missed"].append(
                f"daemon memory {what} ({t}): {tot / MiB:.0f} MiB for "
                f"{img / MiB:.0f} MiB of images, limit "
                f"{lim / MiB:.0f} MiB")
        out.append(f"| {t} | {img / MiB:.0f} MiB | "
                   f"{e['VmRSS'] / MiB:.1f} MiB | "
                   f"{e['memfd_bytes'] / MiB:.0f} MiB | "
                   f"{tot / MiB:.0f} MiB | {tot / img:.3f} | "
                   f"{lim / MiB:.0f} MiB | {met} |")
    out.append("")


def git_rev():
    try:
        p = subprocess.run(["git", "-C", REPO, "rev-parse", "--short",
                            "HEAD"], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True, timeout=10)
        d = subprocess.run(["git", "-C", REPO, "status", "--porcelain",
                            "src"], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True, timeout=10)
        return p.stdout.strip() + ("+dirty" if d.stdout.strip() else "")
    except Exception:
        return None


# Last: the workloads import the names above from this module.
WORKLOADS = load_workloads()
SECTIONS = [m.NAME for m in WORKLOADS]
ROWS = [row for m in WORKLOADS for row in m.ROWS]
