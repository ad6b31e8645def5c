"""fio random 4K reads and writes (psync, time-based) on the sequential
file, one and two jobs.
"""
import json
import os

from benchlib import MiB, BenchError, log, sh

NAME = "rand"
ORDER = 20
ROWS = [
    ("fio_randread_4K_j1", "fio random read 4K, 1 job", "IOPS", True,
     "tmpfs", 1.0, 0.85),
    ("fio_randread_4K_j2", "fio random read 4K, 2 jobs", "IOPS", True,
     "tmpfs", 1.0, 0.85),
    ("fio_randwrite_4K_j1", "fio random write 4K, 1 job", "IOPS", True,
     "tmpfs", 0.4, 0.85),
    ("fio_randwrite_4K_j2", "fio random write 4K, 2 jobs", "IOPS", True,
     "tmpfs", 0.4, 0.85),
]


def run(b):
    size = b.cfg["seq_bytes"]
    rt = b.cfg["fio_runtime"]
    for t in b.targets:
        f = os.path.join(b.root(t), "seq.dat")
        if not os.path.exists(f) or os.path.getsize(f) != size:
            try:
                sh(["dd", "if=/dev/zero", f"of={f}", "bs=1M",
                    f"count={size // MiB}", "status=none"], 600)
                sh(["sync", "-f", b.ext4], 300)
            except BenchError as e:
                b.fail("rand", t, e)
        try:  # warm
            sh(["dd", f"if={f}", "of=/dev/null", "bs=1M", "status=none"],
               600)
        except BenchError as e:
            b.fail("rand", t, e)
    for rw in ("randread", "randwrite"):
        for jobs in (1, 2):
            def fio(t, rw=rw, jobs=jobs):
                f = os.path.join(b.fresh_root(t), "seq.dat")
                p = sh(["fio", "--name=r", f"--filename={f}",
                        f"--rw={rw}", "--bs=4k", f"--size={size}",
                        "--ioengine=psync", "--direct=0",
                        "--invalidate=0", "--time_based",
                        f"--runtime={rt}", "--ramp_time=0",
                        f"--numjobs={jobs}", "--group_reporting",
                        "--randrepeat=0", "--norandommap",
                        "--output-format=json"], rt * 10 + 120)
                j = json.loads(p.stdout[p.stdout.index("{"):])
                job = j["jobs"][0]
                io = job["read"] if rw == "randread" else job["write"]
                if rw == "randwrite":
                    sh(["sync", "-f", b.ext4], 300)
                return io["iops"]

            log(f"fio {rw} 4K numjobs={jobs}")
            b.reps(f"fio_{rw}_4K_j{jobs}", b.targets, fio)
    for t in b.targets:
        try:
            os.unlink(os.path.join(b.root(t), "seq.dat"))
        except OSError:
            pass
