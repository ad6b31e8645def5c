"""Permissions are the same before and after a write-back, and the mount
enforces them as SOURCE does: POSIX ACLs (access ACLs, default ACLs of
directories and what new files and directories inherit from them),
security.* labels, and the chattr flags SOURCE's filesystem keeps.

Each test does the same thing through the mount and, by hand, on a
reference copy in SOURCE's own filesystem (ext4 or XFS), and compares
getfacl, modes, xattrs, lsattr and the errno other users get."""

import errno
import os
import shutil
import stat

import pytest

import helpers
from acceptance import (cli, conflict_files, public_dir,  # noqa: F401
                        xfs)

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setfacl"),
    reason="needs root (other users, security.*, chattr) and setfacl "
           "(Debian package acl)")

NOBODY = 65534
OTHER = helpers.OTHER_UID  # in no ACL below


def facl(path):
    """getfacl of path, numeric, without the header: entries and defaults."""
    return helpers.run(["getfacl", "-c", "-n", "-p", str(path)],
                       timeout=30).stdout


def setfacl(*args):
    helpers.run(["setfacl", *map(str, args)], timeout=30)


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def lsattr(path):
    return helpers.run(["lsattr", "-d", str(path)],
                       timeout=30).stdout.split()[0]


# What a user gets from a call, by errno name ("OK" when it works).
TRY = """import errno, os, sys
call, path = sys.argv[1], sys.argv[2]
try:
    if call == "read":
        open(path, "rb").read()
    elif call == "write":
        os.close(os.open(path, os.O_WRONLY))
    else:
        os.listdir(path)
    print("OK")
except OSError as e:
    print(errno.errorcode[e.errno])
"""


def as_user(uid, gid, call, path, groups=()):
    ids = [f"--reuid={uid}", f"--regid={gid}"]
    ids += [f"--groups={','.join(map(str, groups))}"] if groups \
        else ["--clear-groups"]
    return helpers.run(["setpriv", *ids, helpers.PYTHON, "-c", TRY, call,
                        str(path)], timeout=30).stdout.strip()


@pytest.fixture
def shared(public_dir, mount):  # noqa: F811 (fixture)
    """An ext4 SOURCE that every user can reach, and a reference directory
    beside it on the same filesystem: (start, source, reference), where
    start() mounts SOURCE with allow_other once the test has filled it."""
    src = public_dir / "src"
    ref = public_dir / "ref"
    for d in (src, ref):
        d.mkdir(mode=0o755)
        os.chmod(d, 0o755)
    mp = public_dir / "mnt"
    mp.mkdir()
    return (lambda: mount(src, options=["allow_other"], mountpoint=mp),
            src, ref)


def test_an_acl_survives_a_write_back_and_follows_chmod_as_on_ext4(shared):
    start, src, ref = shared
    for d in (src, ref):
        helpers.write_file(d / "f", b"old\n")
        os.chmod(d / "f", 0o600)
        setfacl("-m", f"u:{NOBODY}:r,g:{helpers.OTHER_GID}:rw", d / "f")
    before = facl(src / "f")
    assert f"user:{NOBODY}:r--" in before
    m = start()
    assert facl(m / "f") == before
    assert mode(m / "f") == mode(src / "f") == 0o660
    with open(m / "f", "ab") as f:
        f.write(b"new\n")
    m.sync(check=True)
    assert helpers.read_file(src / "f") == b"old\nnew\n"
    assert facl(src / "f") == before
    assert mode(src / "f") == 0o660
    # chmod sets the mask, setfacl the mode, as ext4 does in ref
    for d in (m, ref):
        os.chmod(d / "f", 0o604)
    assert facl(m / "f") == facl(ref / "f")
    for d in (m, ref):
        setfacl("-m", f"u:{OTHER}:rw", d / "f")
        setfacl("-x", f"u:{NOBODY}", d / "f")
    assert facl(m / "f") == facl(ref / "f")
    assert mode(m / "f") == mode(ref / "f")
    with open(m / "f", "ab") as f:
        f.write(b"more\n")
    m.sync(check=True)
    assert helpers.read_file(src / "f") == b"old\nnew\nmore\n"
    assert facl(src / "f") == facl(ref / "f")
    assert mode(src / "f") == mode(ref / "f")
    # an ACL the mode says all of is not kept, here as on ext4
    for d in (m, ref):
        setfacl("-b", d / "f")
    m.sync(check=True)
    assert facl(m / "f") == facl(src / "f") == facl(ref / "f")
    assert os.listxattr(src / "f") == os.listxattr(ref / "f") == []


def test_the_acl_of_a_directory_survives_a_write_back_inside_it(shared):
    start, src, _ = shared
    os.mkdir(src / "d", 0o750)
    setfacl("-m", f"u:{NOBODY}:rx", "-d", "-m", f"u:{NOBODY}:r", src / "d")
    helpers.write_file(src / "d" / "f", b"x")
    before = facl(src / "d")
    assert "default:" in before
    m = start()
    assert facl(m / "d") == before
    helpers.write_file(m / "d" / "f", b"y")
    os.chmod(m / "d", 0o755)  # metadata write-back of the directory
    m.sync(check=True)
    assert helpers.read_file(src / "d" / "f") == b"y"
    assert facl(src / "d") == facl(m / "d")
    assert mode(src / "d") == 0o755


MAKE = """import os, sys
os.umask(0o077)
base = sys.argv[1]
os.close(os.open(os.path.join(base, "file"), os.O_CREAT | os.O_WRONLY,
                 0o666))
os.mkdir(os.path.join(base, "dir"), 0o777)
os.close(os.open(os.path.join(base, "dir", "inner"),
                 os.O_CREAT | os.O_WRONLY, 0o640))
"""


def test_new_nodes_inherit_a_default_acl_as_on_ext4(shared):
    start, src, ref = shared
    for d in (src, ref):
        os.mkdir(d / "acl", 0o755)
        setfacl("-d", "-m", f"u:{NOBODY}:rwx,g:{helpers.OTHER_GID}:rx,o::r",
                d / "acl")
        os.mkdir(d / "plain", 0o755)
    m = start()
    for d in (m, ref):
        for sub in ("acl", "plain"):
            # umask 077: ignored under a default ACL, applied elsewhere
            helpers.run([helpers.PYTHON, "-c", MAKE, d / sub], timeout=30)
    names = [f"{sub}/{n}" for sub in ("acl", "plain")
             for n in ("file", "dir", "dir/inner")]
    want = {n: (facl(ref / n), mode(ref / n)) for n in names}
    assert f"user:{NOBODY}:rwx" in want["acl/dir"][0]
    assert want["plain/file"][1] == 0o600
    assert {n: (facl(m / n), mode(m / n)) for n in names} == want
    m.sync(check=True)
    assert {n: (facl(src / n), mode(src / n)) for n in names} == want


def test_acls_are_enforced_through_the_mount_as_in_source(shared):
    start, src, ref = shared
    for d in (src, ref):
        # readable by nobody through its ACL only: not by its group (0)
        helpers.write_file(d / "f", b"secret\n")
        os.chmod(d / "f", 0o600)
        setfacl("-m", f"u:{NOBODY}:r", d / "f")
        os.mkdir(d / "d", 0o700)
        setfacl("-m", f"u:{NOBODY}:rx", d / "d")
    cases = [(NOBODY, NOBODY, "read", "f", ()),
             (NOBODY, NOBODY, "write", "f", ()),
             (OTHER, 0, "read", "f", ()),
             (OTHER, helpers.OTHER_GID, "read", "f", (0,)),
             (OTHER, helpers.OTHER_GID, "read", "f", ()),
             (NOBODY, NOBODY, "list", "d", ()),
             (OTHER, 0, "list", "d", ())]

    def outcomes(d):
        return [as_user(u, g, call, d / p, groups)
                for u, g, call, p, groups in cases]

    m = start()
    want = outcomes(src)
    assert want == ["OK", "EACCES", "EACCES", "EACCES", "EACCES", "OK",
                    "EACCES"]
    assert outcomes(m) == want
    # An ACL changed through the mount is enforced at once, as in ref.
    for d in (m, ref):
        setfacl("-m", f"u:{NOBODY}:rw,g::r", d / "f")
        setfacl("-x", f"u:{NOBODY}", d / "d")
    assert outcomes(m) == outcomes(ref)
    assert outcomes(m)[1:3] == ["OK", "OK"]


def test_an_acl_set_from_outside_the_group_clears_set_group_id(shared):
    start, src, ref = shared
    for d in (src, ref):
        for name, gid in (("theirs", helpers.OTHER_GID), ("not", 0)):
            helpers.write_file(d / name, b"x")
            os.chown(d / name, OTHER, gid)
            os.chmod(d / name, 0o2750)
    m = start()
    for d in (m, ref):
        for name in ("theirs", "not"):
            helpers.run(["setpriv", f"--reuid={OTHER}",
                         f"--regid={helpers.OTHER_GID}", "--clear-groups",
                         "setfacl", "-m", f"u:{NOBODY}:r", d / name],
                        timeout=30)
    assert mode(ref / "theirs") == 0o2750
    assert mode(ref / "not") == 0o750
    for name in ("theirs", "not"):
        assert mode(m / name) == mode(ref / name)
        assert facl(m / name) == facl(ref / name)
    m.sync(check=True)
    for name in ("theirs", "not"):
        assert mode(src / name) == mode(ref / name)
        assert facl(src / name) == facl(ref / name)


def test_security_labels_survive_a_write_back(shared):
    start, src, _ = shared
    helpers.write_file(src / "f", b"a")
    try:
        os.setxattr(src / "f", "security.h5memfs_test", b"label-1")
    except OSError as e:
        pytest.skip(f"SOURCE's filesystem keeps no security.* xattr: {e}")
    m = start()
    assert os.getxattr(m / "f", "security.h5memfs_test") == b"label-1"
    helpers.write_file(m / "f", b"b")
    os.setxattr(m / "f", "security.h5memfs_new", b"label-2")
    helpers.write_file(m / "g", b"new file")
    os.setxattr(m / "g", "security.h5memfs_test", b"label-3")
    m.sync(check=True)
    assert helpers.read_file(src / "f") == b"b"
    assert os.getxattr(src / "f", "security.h5memfs_test") == b"label-1"
    assert os.getxattr(src / "f", "security.h5memfs_new") == b"label-2"
    assert os.getxattr(src / "g", "security.h5memfs_test") == b"label-3"
    # Only CAP_SYS_ADMIN sets them, as on ext4; everyone reads them.
    r = helpers.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}",
                     "--clear-groups", helpers.PYTHON, "-c",
                     "import os, sys\n"
                     "print(os.getxattr(sys.argv[1], "
                     "'security.h5memfs_test').decode())\n"
                     "try:\n"
                     "    os.setxattr(sys.argv[1], 'security.x', b'1')\n"
                     "except OSError as e:\n"
                     "    print(e.errno)\n", m / "f"], timeout=30)
    assert r.stdout.split() == ["label-1", str(errno.EPERM)]
    os.removexattr(m / "f", "security.h5memfs_new")
    helpers.write_file(m / "f", b"c")
    m.sync(check=True)
    assert "security.h5memfs_new" not in os.listxattr(src / "f")
    assert os.getxattr(src / "f", "security.h5memfs_test") == b"label-1"


def chattr_survives(mount, src):
    helpers.write_file(src / "f", b"x" * 100000)
    helpers.run(["chattr", "+d", "+A", "+S", str(src / "f")], timeout=30)
    flags = lsattr(src / "f")
    assert {"d", "A", "S"} <= set(flags)
    m = mount(src)
    with open(m / "f", "r+b") as f:
        f.write(b"changed")
    m.sync(check=True)
    assert helpers.read_file(src / "f")[:8] == b"changedx"
    assert lsattr(src / "f") == flags


def test_chattr_flags_survive_a_write_back_on_ext4(mount, empty_source):
    chattr_survives(mount, empty_source)


def test_chattr_flags_survive_a_write_back_on_a_clone_on_xfs(xfs, mount):  # noqa: F811
    src = xfs[0] / "src"
    src.mkdir()
    # XFS clones the old file into the temporary and patches it
    chattr_survives(mount, src)


def test_an_immutable_file_is_kept_in_memory_until_it_may_be_replaced(
        mount, empty_source):
    helpers.write_file(empty_source / "f", b"old")
    m = mount(empty_source, allow_stderr=True)
    assert helpers.read_file(m / "f") == b"old"
    helpers.run(["chattr", "+i", str(empty_source / "f")], timeout=30)
    try:
        helpers.write_file(m / "f", b"new")
        res = cli("sync", m.path)
        assert res.returncode != 0
        assert helpers.read_file(empty_source / "f") == b"old"
        assert helpers.read_file(m / "f") == b"new"
        assert lsattr(empty_source / "f").count("i") == 1
    finally:
        helpers.run(["chattr", "-i", str(empty_source / "f")], timeout=30)
    # chattr changed the file's ctime in SOURCE: to the mount, someone
    # changed it there (nobody can set a ctime back, so that is how an
    # edit given its old mtime is caught), and the mount's data is kept
    # beside it rather than over it
    m.sync(check=True)
    assert helpers.read_file(empty_source / "f") == b"old"
    names = conflict_files(empty_source, "f", "")
    assert len(names) == 1, os.listdir(empty_source)
    assert helpers.read_file(empty_source / names[0]) == b"new"
