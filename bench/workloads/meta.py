"""Metadata: create, stat (cached and after drop_caches), readdir and
unlink of meta_n empty files in one directory (bench/h5bench.py meta).
Base: ext4. For each h5memfs mount, also the FUSE requests each phase
cost per file (the mount's status counts them by kind), so that the
report shows where the round trips go.
"""
import os

from benchlib import BENCH, BenchError, log, median, pyjson, sh

NAME = "meta"
ORDER = 50
ROWS = [
    ("meta_create", "create files", "ops/s", True, "ext4", 0.5, 0.5),
    ("meta_stat", "stat files (cached)", "ops/s", True, "ext4", 0.5, 0.5),
    ("meta_stat_cold", "stat files (after drop_caches)", "ops/s", True,
     "ext4", 0.5, 0.5),
    ("meta_readdir", "readdir", "entries/s", True, "ext4", 0.5, 0.5),
    ("meta_unlink", "unlink files", "ops/s", True, "ext4", 0.5, 0.5),
]


def run(b):
    n = b.cfg["meta_n"]
    phases = ("create", "stat", "stat_cold", "readdir", "unlink")
    vals = {t: {p: [] for p in phases} for t in b.targets}
    dead = set()
    reqs = b.results.setdefault("meta_requests", {})
    log(f"metadata: {n} files")
    for rep in range(b.cfg["reps"]):
        for t in b.targets:
            if t in dead:
                continue
            d = os.path.join(b.fresh_root(t), f"meta{rep}")
            try:
                os.mkdir(d)
                sh(["sync", "-f", b.ext4], 300)
                extra = (["--requests", b.root(t)] if t in b.variants
                         else [])
                r = pyjson([os.path.join(BENCH, "h5bench.py"), "meta",
                            d, str(n), "--cold"] + extra, 900)
                if "requests" in r:
                    reqs[t] = r["requests"]
                os.rmdir(d)
                sh(["sync", "-f", b.ext4], 300)
                for p in phases:
                    vals[t][p].append(r[p])
            except (BenchError, OSError) as e:
                dead.add(t)
                b.fail("meta", t, e)
                b.maybe_hung(t, e)
    for t in b.targets:
        if t in dead:
            continue
        for p in phases:
            b.record(f"meta_{p}", t, median(vals[t][p]),
                        runs=vals[t][p])


def report(b, out, summary):
    reqs = b.results.get("meta_requests", {})
    if not reqs:
        return
    out.append("")
    out.append("### FUSE requests per file, by phase (status \"requests\"; "
               "readdir: per entry listed)")
    out.append("")
    out.append("| mount | phase | requests |")
    out.append("|---|---|---|")
    for t, phases in sorted(reqs.items()):
        for phase, kinds in phases.items():
            txt = ", ".join(f"{k} {v:g}" for k, v in
                            sorted(kinds.items(), key=lambda kv: -kv[1]))
            out.append(f"| {t} | {phase} | {txt or 'none'} |")
    out.append("")
