"""fio and stress-ng against the mount, short, with data verification:
fio writes with verify=crc32c/md5/pattern and reads every block back
(several access patterns, psync and mmap engines, two jobs at once);
stress-ng's file stressors with --verify where they have it. After each,
the daemon must still answer and exit 0 at unmount, and (for fio) SOURCE
must hold what the mount holds.
"""

import os

import pytest

import rlib
from rlib import helpers

FIO_JOBS = """
[global]
directory={dir}
size=16m
verify_fatal=1
do_verify=1
group_reporting=1
end_fsync=1

[seq-crc32c]
rw=write
bs=1m
verify=crc32c
filename=seq.dat

[rand-crc32c-4k]
stonewall
rw=randwrite
bs=4k
verify=crc32c
filename=rand.dat

[rand-md5-mixed-bs]
stonewall
rw=randwrite
bsrange=512-256k
verify=md5
filename=mixed.dat

[pattern-two-jobs]
stonewall
rw=randwrite
bs=64k
numjobs=2
verify=pattern
verify_pattern=0xdeadbeef
filename_format=pat.$jobnum.dat

[mmap-crc32c]
stonewall
ioengine=mmap
rw=randwrite
bs=16k
verify=crc32c
filename=mmap.dat

[randrw-verify-backlog]
stonewall
rw=randrw
bs=8k
verify=crc32c
verify_backlog=64
filename=rw.dat

[fsync-every-4]
stonewall
rw=write
bs=32k
fsync=4
verify=sha256
filename=fsync.dat
"""


def test_fio_verified_workloads(mount, source, datapath, open_tmp):
    m = mount(source, [datapath])
    job = open_tmp / "verify.fio"
    job.write_text(FIO_JOBS.format(dir=m.path))
    # fio writes its verify state files (*-verify.state) into its working
    # directory: the test's, not the caller's.
    res = rlib.run(["fio", "--output-format=terse", "--terse-version=3",
                    str(job)], timeout=240, check=False, cwd=open_tmp)
    assert res.returncode == 0, (f"fio exited {res.returncode}\n"
                                 f"{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    assert "verify" not in res.stderr.lower(), res.stderr[-3000:]
    rlib.daemon_answers(m)
    want = {f: helpers.sha256(m / f) for f in os.listdir(m.path)}
    assert m.unmount() == 0
    got = {f: helpers.sha256(source / f) for f in os.listdir(source)}
    assert got == want


# stressor, its options; each runs 2 instances for a second. The data
# stressors run on both data paths, the namespace ones on the default.
DATA_STRESSORS = [
    ("hdd", ["--hdd-bytes", "8M", "--hdd-write-size", "4K",
             "--hdd-opts", "wr-rnd,rd-rnd,fsync"]),
    ("hdd", ["--hdd-bytes", "8M", "--hdd-opts", "wr-seq,rd-seq,utimes"]),
    ("iomix", ["--iomix-bytes", "8M"]),
    ("fallocate", ["--fallocate-bytes", "8M"]),
    ("seek", ["--seek-size", "8M"]),
    ("mmap", ["--mmap-file", "--mmap-bytes", "4M"]),
    ("sync-file", ["--sync-file-bytes", "1M"]),
    ("copy-file", ["--copy-file-bytes", "128M"]),
    ("readahead", ["--readahead-bytes", "8M"]),
    ("fpunch", []),
]
NAME_STRESSORS = [
    ("filename", []),
    ("dentry", ["--dentries", "256"]),
    ("rename", []),
    ("link", []),
    ("symlink", []),
    ("lockf", []),
    ("flock", []),
    ("fcntl", []),
    ("dir", []),
    ("dirdeep", ["--dirdeep-dirs", "1"]),
    ("xattr", []),
    ("utime", []),
    ("getdent", []),
]


def run_stressors(m, stressors):
    failed = []
    for i, (name, opts) in enumerate(stressors):
        d = m / f"sng-{i}-{name}"
        d.mkdir()
        argv = ["stress-ng", f"--{name}", "2", *opts, "--verify",
                "--temp-path", str(d), "--timeout", "1s", "--metrics-brief",
                "--no-rand-seed"]
        res = rlib.run(argv, timeout=60, check=False)
        if res.returncode not in (0, 4):  # 4: stressor not implemented
            failed.append(f"{name} {opts}: exit {res.returncode}\n"
                          f"{res.stderr[-1500:]}{res.stdout[-1500:]}")
        rlib.daemon_answers(m)
    assert not failed, "\n\n".join(failed)
    assert m.unmount() == 0


@pytest.mark.slow
def test_stress_ng_data_stressors_with_verify(mount, source, datapath):
    run_stressors(mount(source, [datapath]), DATA_STRESSORS)


@pytest.mark.slow
def test_stress_ng_namespace_stressors_with_verify(mount, source):
    run_stressors(mount(source), NAME_STRESSORS)
