"""`meson install` into a DESTDIR puts every installed file where it belongs,
and each installed manual page renders without a warning.

The build directory is $H5MEMFS_BUILD, else <repo>/build; it must have been
configured (meson setup). The prefix and directories are read from the
build's own configuration (meson introspect), so this works for any prefix.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from h5mount import SLOWDOWN

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("H5MEMFS_BUILD", REPO / "build")).absolute()


def _meson():
    for cand in ("meson", "/usr/bin/meson"):
        if shutil.which(cand):
            return shutil.which(cand)
    pytest.skip("meson not found")


def _options():
    out = subprocess.run([_meson(), "introspect", "--buildoptions", str(BUILD)],
                         check=True, capture_output=True, text=True).stdout
    return {o["name"]: o["value"] for o in json.loads(out)}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    if not (BUILD / "build.ninja").exists():
        pytest.skip(f"{BUILD} is not a configured build directory")
    dest = tmp_path_factory.mktemp("destdir")
    env = dict(os.environ, DESTDIR=str(dest))
    r = subprocess.run([_meson(), "install", "-C", str(BUILD), "--destdir",
                        str(dest)], env=env, capture_output=True, text=True,
                       timeout=600 * SLOWDOWN)
    assert r.returncode == 0, f"meson install failed:\n{r.stdout}\n{r.stderr}"
    opts = _options()
    prefix = opts["prefix"]

    def under(opt):
        d = opts[opt]
        return dest / (d if os.path.isabs(d) else os.path.join(prefix, d)).lstrip("/")

    return {"dest": dest, "bin": under("bindir"), "sbin": under("sbindir"),
            "man": under("mandir"), "data": under("datadir")}


def test_binaries(installed):
    for p in (installed["bin"] / "h5memfs", installed["bin"] / "h5memfs-scratch",
              installed["sbin"] / "mount.h5memfs"):
        assert p.is_file(), f"{p} not installed"
        assert os.access(p, os.X_OK), f"{p} not executable"
    link = installed["sbin"] / "mount.fuse.h5memfs"
    assert link.is_symlink() or link.is_file(), f"{link} not installed"
    assert link.resolve() == (installed["sbin"] / "mount.h5memfs").resolve()
    # the umount(8) helper, under both names libmount may look for
    helper = installed["sbin"] / "umount.fuse.h5memfs"
    assert helper.is_file() and os.access(helper, os.X_OK)
    if _options().get("umount_fuse", True):
        link = installed["sbin"] / "umount.fuse"
        assert link.resolve() == helper.resolve()


def test_unit_templates_installed(installed):
    lib = installed["dest"] / _options()["prefix"].lstrip("/") / "lib/systemd"
    for kind in ("system", "user"):
        unit = lib / kind / "h5memfs@.service"
        assert unit.is_file(), f"{unit} not installed"
        assert "Type=notify" in unit.read_text()


def test_installed_daemon_runs(installed):
    r = subprocess.run([str(installed["bin"] / "h5memfs"), "--version"],
                       capture_output=True, text=True, timeout=30 * SLOWDOWN)
    assert r.returncode == 0, r.stderr


MAN_PAGES = ["man1/h5memfs.1", "man1/h5memfs-scratch.1", "man8/mount.h5memfs.8"]


def test_man_pages_installed(installed):
    for page in MAN_PAGES:
        assert (installed["man"] / page).is_file(), f"{page} not installed"
    for name in ("mount.fuse.h5memfs.8", "umount.fuse.h5memfs.8"):
        alias = installed["man"] / "man8" / name
        assert alias.exists(), f"{alias} not installed"


def test_example_units(installed):
    ex = installed["data"] / "doc" / "h5memfs" / "examples"
    for unit in ("data-mem.mount", "h5memfs@.service"):
        p = ex / unit
        assert p.is_file(), f"{p} not installed"
        assert "@" + "BINDIR@" not in p.read_text(), f"{p} not configured"


@pytest.mark.parametrize("page", MAN_PAGES + ["man8/mount.fuse.h5memfs.8"])
def test_man_page_renders_cleanly(installed, page):
    if not shutil.which("man"):
        pytest.skip("man not installed")
    path = installed["man"] / page
    env = dict(os.environ, MANPAGER="cat", PAGER="cat", MANWIDTH="80",
               LC_ALL="C.UTF-8")
    r = subprocess.run(["man", "--warnings", "-l", str(path)], env=env,
                       capture_output=True, text=True, timeout=60 * SLOWDOWN)
    assert r.returncode == 0, f"man -l {page}: exit {r.returncode}\n{r.stderr}"
    assert r.stderr == "", f"man --warnings -l {page} warned:\n{r.stderr}"
    assert r.stdout.strip(), f"{page} rendered empty"
