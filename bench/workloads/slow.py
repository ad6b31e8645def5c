"""An HDF5 workflow over a slow SOURCE (bench/slowfs.c, --delay-us per
operation; bench/workflow.py): direct, core driver, staging to tmpfs,
h5memfs on each data path, direct with auto_cache. Its own table.
"""
import os
import shutil
import time

from benchlib import (BENCH, BASE, PY, BenchError, FuseDaemon,
                      _fuse_conn, drop_caches, fmt, log, median, pyjson, sh)

NAME = "slow"
ORDER = 80
ROWS = []  # its figures have a table of their own (report)


def run(b):
    wf = b.cfg["wf"]
    under = os.path.join(b.ext4, "slow-under")
    pristine = os.path.join(b.ext4, "slow-pristine")
    smnt = os.path.join(BASE, "mnt-slowfs")
    for d in (under, pristine):
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
    wfpy = os.path.join(BENCH, "workflow.py")
    log(f"slow SOURCE: making the workflow files ({wf['data_mib']} MiB)")
    sh([PY, wfpy, "setup", pristine, "--data-mib", str(wf["data_mib"])],
       600)
    wargs = ["--chunks", str(wf["chunks"]), "--iters", str(wf["iters"]),
             "--rows", str(wf["rows"])]
    expect = wf["iters"] * wf["rows"]
    delay = b.args.delay_us
    ra = [None]

    def reset():
        for f in os.listdir(under):
            os.unlink(os.path.join(under, f))
        for f in os.listdir(pristine):
            shutil.copy2(os.path.join(pristine, f), under)
        drop_caches(b.ext4)

    def slowfs(extra=""):
        o = f"delay_us={delay}" + ("," + extra if extra else "")
        b.nmount += 1
        d = FuseDaemon(f"slowfs-{b.nmount}",
                       [b.slowfs, "-f", "-o", o, under, smnt], smnt,
                       b.logdir)
        d.start()
        minor = _fuse_conn(smnt)
        try:
            with open(f"/sys/class/bdi/0:{minor}/read_ahead_kb") as f:
                ra[0] = int(f.read())
        except (OSError, ValueError):
            pass
        return d

    def run_wf(path, core=False):
        r = pyjson([wfpy, "run", path] + wargs +
                   (["--core"] if core else []),
                   3600)
        return r["seconds"]

    def check():
        sh([PY, wfpy, "check", under, "--expect-rows", str(expect)], 300)

    def way(name, fn, slow_extra=""):
        reset()
        s = slowfs(slow_extra)
        try:
            secs = fn()
        finally:
            s.unmount(timeout=120)
        check()
        return secs

    parts = {"staging": []}
    # a user's daemon cannot reach root's slowfs mount: root mounts only
    mine = [v for v in b.variants if v not in b.users]
    parts.update({v: [] for v in mine})

    def direct():
        return run_wf(smnt)

    def core():
        return run_wf(smnt, core=True)

    def staging():
        stage = os.path.join(b.tmpfs, "stage")
        shutil.rmtree(stage, ignore_errors=True)
        os.makedirs(stage)
        t0 = time.perf_counter()
        sh(["cp", os.path.join(smnt, "data.h5"),
            os.path.join(smnt, "log.h5"), stage], 600)
        t_in = time.perf_counter() - t0
        w = run_wf(stage)
        t0 = time.perf_counter()
        sh(["cp", os.path.join(stage, "log.h5"),
            os.path.join(smnt, "log.h5")], 600)
        sh(["sync", os.path.join(smnt, "log.h5")], 600)
        t_out = time.perf_counter() - t0
        shutil.rmtree(stage)
        parts["staging"].append({"copy_in": t_in, "work": w,
                                 "copy_out": t_out})
        return t_in + w + t_out

    def h5m(variant):
        def fn():
            d = b.mount_h5memfs(variant, None, b.variants[variant],
                                   source=smnt)
            try:
                w = run_wf(d.mnt)
            finally:
                us, rc = d.unmount()
            if rc != 0:
                raise BenchError(f"h5memfs exit {rc}: {d.log_tail()}")
            parts[variant].append({"mount": d.mount_seconds, "work": w,
                                   "unmount": us})
            return d.mount_seconds + w + us
        return fn

    ways = [("direct", direct, ""), ("core driver", core, ""),
            ("staging", staging, "")]
    for v in mine:
        ways.append((v, h5m(v), ""))
    ways.append(("direct, auto_cache", direct, "auto_cache"))
    runs = {w[0]: [] for w in ways}
    parts.update({w[0]: [] for w in ways if w[0] not in parts})
    dead = set()
    for rep in range(b.cfg["wf_reps"]):
        for name, fn, extra in ways:
            if name in dead:
                continue
            log(f"slow SOURCE workflow: {name} (run {rep + 1})")
            try:
                runs[name].append(way(name, fn, extra))
            except BenchError as e:
                dead.add(name)
                b.fail("workflow", name, e)
    res = {}
    for name, _, _ in ways:
        if name not in dead:
            res[name] = {"value": median(runs[name]),
                         "runs": runs[name]}
            if parts.get(name):
                res[name]["parts"] = parts[name]
    b.results["workflow"] = res
    b.results["workflow"]["_params"] = dict(wf, delay_us=delay,
                                               read_ahead_kb=ra[0])
    shutil.rmtree(under, ignore_errors=True)
    shutil.rmtree(pristine, ignore_errors=True)


def report(b, out, summary):
    """The workflow table: seconds per way, speed-ups, breakdowns."""
    w = b.results.get("workflow")
    if not w:
        return
    variants = list(b.variants)
    p = w.get("_params", {})
    out.append(f"### HDF5 workflow over a slow SOURCE (slowfs, "
               f"{p.get('delay_us')} us per operation, read-ahead "
               f"{p.get('read_ahead_kb')} KiB)\n")
    out.append(f"{p.get('iters')} times: open a {p.get('data_mib')} MiB "
               f"chunked file, read {p.get('chunks')} random 64 KiB "
               f"chunks, append {p.get('rows')} rows to a PyTables "
               f"table, close. Seconds, median of {b.cfg['wf_reps']}; "
               "h5memfs includes mount and the write-back at unmount, "
               "staging the copies in and out.\n")
    direct = (w.get("direct") or {}).get("value")
    stage = (w.get("staging") or {}).get("value")
    out.append("| way | seconds | speed-up vs direct | time / staging "
               "| breakdown (median run) |")
    out.append("|---|---|---|---|---|")
    names = [k for k in w if not k.startswith("_")]
    for e in b.errors:
        if e["workload"] == "workflow" and e["target"] not in names:
            names.append(e["target"])
    for name in names:
        e = w.get(name)
        if not e:
            out.append(f"| {name} | ERROR | - | - | - |")
            continue
        v = e["value"]
        bd = "-"
        if e.get("parts"):
            i = e["runs"].index(sorted(e["runs"])[len(e["runs"]) // 2])
            bd = " + ".join(f"{k} {fmt(x)}"
                            for k, x in e["parts"][i].items())
        out.append(f"| {name} | {fmt(v)} | "
                   f"{fmt(direct / v if direct else None)} | "
                   f"{fmt(v / stage if stage else None)} | {bd} |")
        if name in variants and v:
            if direct and direct / v < 10:
                summary["targets_missed"].append(
                    f"slow SOURCE workflow ({name}): {direct / v:.1f}x "
                    "faster than direct, target 10x")
            if stage and v / stage > 1.2:
                summary["targets_missed"].append(
                    f"slow SOURCE workflow ({name}): {v / stage:.2f}x "
                    "the staging time, target <= 1.2x")
    out.append("")
