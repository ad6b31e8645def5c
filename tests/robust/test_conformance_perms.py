"""POSIX permissions under other uids: each operation runs in a forked
child that has dropped to uid 1234 / gid 5678 (os.setresuid), against a
tree root prepared, on tmpfs and on the mount (allow_other, and
default_permissions as always). The same body runs on all three through
`fsd`; tmpfs checks the test.
"""

import os
import stat

import pytest

import rlib
from rlib import OTHER_GID, OTHER_UID, as_user, as_user_errno, errname

U, G = OTHER_UID, OTHER_GID


def write(path, data=b"", mode=0o644):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(path, mode)


def mkdir(path, mode):
    os.mkdir(path)
    os.chmod(path, mode)  # not masked by the umask


def other(fn, **kw):
    """errno name of fn() run as the other user."""
    return errname(as_user_errno(fn, **kw))


def _open(path, flags, mode=0o644):
    def fn():
        os.close(os.open(path, flags, mode))
    return fn


def test_the_mode_bits_decide_who_reads_and_writes(fsd):
    write(fsd.p("private"), b"x", 0o600)
    write(fsd.p("public"), b"x", 0o644)
    write(fsd.p("open"), b"x", 0o666)
    write(fsd.p("group"), b"x", 0o640)
    os.chown(fsd.p("group"), 0, G)
    assert other(_open(fsd.p("private"), os.O_RDONLY)) == "EACCES"
    assert other(_open(fsd.p("public"), os.O_RDONLY)) == "OK"
    assert other(_open(fsd.p("public"), os.O_WRONLY)) == "EACCES"
    assert other(_open(fsd.p("public"), os.O_RDWR | os.O_TRUNC)) == "EACCES"
    assert other(_open(fsd.p("open"), os.O_RDWR)) == "OK"
    assert other(_open(fsd.p("group"), os.O_RDONLY)) == "OK"
    assert other(_open(fsd.p("group"), os.O_RDONLY), gid=999) == "EACCES"
    # Supplementary groups count.
    assert other(_open(fsd.p("group"), os.O_RDONLY), gid=999,
                 groups=(G,)) == "OK"
    assert other(lambda: os.truncate(fsd.p("public"), 0)) == "EACCES"
    assert os.path.getsize(fsd.p("public")) == 1


def test_owner_bits_apply_to_the_owner_even_if_others_may(fsd):
    write(fsd.p("f"), b"x", 0o066)
    os.chown(fsd.p("f"), U, G)
    assert other(_open(fsd.p("f"), os.O_RDONLY)) == "EACCES"
    assert other(_open(fsd.p("f"), os.O_RDONLY), uid=4242, gid=4242) == "OK"


def test_directories_need_write_and_search_permission(fsd):
    mkdir(fsd.p("ro"), 0o755)
    mkdir(fsd.p("rw"), 0o777)
    mkdir(fsd.p("closed"), 0o700)
    mkdir(fsd.p("listonly"), 0o744)
    write(fsd.p("closed", "f"), b"x", 0o644)
    write(fsd.p("listonly", "f"), b"x", 0o644)
    write(fsd.p("ro", "f"), b"x", 0o666)
    creat = os.O_CREAT | os.O_WRONLY
    assert other(_open(fsd.p("ro", "new"), creat)) == "EACCES"
    assert other(lambda: os.mkdir(fsd.p("ro", "d"))) == "EACCES"
    assert other(lambda: os.unlink(fsd.p("ro", "f"))) == "EACCES"
    assert other(lambda: os.rename(fsd.p("ro", "f"), fsd.p("ro", "g"))) == \
        "EACCES"
    assert other(lambda: os.symlink("x", fsd.p("ro", "l"))) == "EACCES"
    assert other(lambda: os.stat(fsd.p("closed", "f"))) == "EACCES"
    assert other(lambda: os.listdir(fsd.p("closed"))) == "EACCES"
    # r without x: names can be listed, not looked up.
    assert as_user(lambda: os.listdir(fsd.p("listonly"))) == ("ok", ["f"])
    assert other(lambda: os.stat(fsd.p("listonly", "f"))) == "EACCES"
    assert other(_open(fsd.p("rw", "new"), creat)) == "OK"
    st = os.stat(fsd.p("rw", "new"))
    assert (st.st_uid, st.st_gid) == (U, G)
    assert other(lambda: os.mkdir(fsd.p("rw", "d"), 0o777)) == "OK"
    st = os.stat(fsd.p("rw", "d"))
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (U, G, 0o755)


def test_sticky_directories_protect_other_users_entries(fsd):
    os.mkdir(fsd.p("tmp"))
    os.chmod(fsd.p("tmp"), 0o1777)
    write(fsd.p("tmp", "roots"), b"x", 0o666)
    assert other(lambda: os.unlink(fsd.p("tmp", "roots"))) == "EPERM"
    assert other(lambda: os.rename(fsd.p("tmp", "roots"),
                                   fsd.p("tmp", "mine"))) == "EPERM"
    assert other(lambda: os.rmdir(fsd.p("tmp", "roots"))) in ("EPERM",
                                                              "ENOTDIR")
    assert other(_open(fsd.p("tmp", "own"), os.O_CREAT | os.O_WRONLY)) == "OK"
    # Moving one's own file over root's name is refused too.
    assert other(lambda: os.rename(fsd.p("tmp", "own"),
                                   fsd.p("tmp", "roots"))) == "EPERM"
    assert other(lambda: os.unlink(fsd.p("tmp", "own"))) == "OK"
    assert os.path.exists(fsd.p("tmp", "roots"))
    # The directory's owner may remove anything in it.
    mkdir(fsd.p("tmp", "udir"), 0o777)
    os.chown(fsd.p("tmp", "udir"), U, G)
    os.chmod(fsd.p("tmp", "udir"), 0o1777)
    write(fsd.p("tmp", "udir", "roots"), b"x", 0o600)
    assert other(lambda: os.unlink(fsd.p("tmp", "udir", "roots"))) == "OK"


def test_only_the_owner_changes_mode_and_times_only_root_gives_away(fsd):
    write(fsd.p("roots"), b"x", 0o666)
    write(fsd.p("mine"), b"x", 0o644)
    os.chown(fsd.p("mine"), U, G)
    assert other(lambda: os.chmod(fsd.p("roots"), 0o777)) == "EPERM"
    assert other(lambda: os.chown(fsd.p("roots"), U, G)) == "EPERM"
    assert other(lambda: os.chmod(fsd.p("mine"), 0o600)) == "OK"
    assert other(lambda: os.chown(fsd.p("mine"), 0, -1)) == "EPERM"
    assert other(lambda: os.chown(fsd.p("mine"), -1, 999)) == "EPERM"
    assert other(lambda: os.chown(fsd.p("mine"), -1, 999),
                 groups=(999,)) == "OK"
    assert os.stat(fsd.p("mine")).st_gid == 999
    # utimensat: explicit times only for the owner; "now" for writers.
    assert other(lambda: os.utime(fsd.p("roots"), ns=(1, 1))) == "EPERM"
    assert other(lambda: rlib.utimensat(fsd.p("roots"), None, None)) == "OK"
    os.chmod(fsd.p("roots"), 0o644)
    assert other(lambda: rlib.utimensat(fsd.p("roots"), None, None)) == \
        "EACCES"
    assert other(lambda: os.utime(fsd.p("mine"), ns=(5, 7))) == "OK"
    assert os.stat(fsd.p("mine")).st_mtime_ns == 7


def test_chmod_setgid_by_a_non_member_owner_is_dropped(fsd):
    write(fsd.p("mine"), b"x", 0o644)
    os.chown(fsd.p("mine"), U, 999)
    assert other(lambda: os.chmod(fsd.p("mine"), 0o2755)) == "OK"
    assert stat.S_IMODE(os.stat(fsd.p("mine")).st_mode) == 0o755


def test_a_write_by_another_user_clears_setuid_and_setgid(fsd):
    write(fsd.p("f"), b"x", 0o6777)
    os.chmod(fsd.p("f"), 0o6777)

    def w():
        fd = os.open(fsd.p("f"), os.O_WRONLY)
        os.write(fd, b"y")
        os.close(fd)
    assert other(w) == "OK"
    assert stat.S_IMODE(os.stat(fsd.p("f")).st_mode) == 0o0777


def test_truncate_by_another_user_clears_setuid(fsd):
    write(fsd.p("f"), b"xyz", 0o4777)
    os.chmod(fsd.p("f"), 0o4777)
    assert other(lambda: os.truncate(fsd.p("f"), 1)) == "OK"
    assert stat.S_IMODE(os.stat(fsd.p("f")).st_mode) == 0o0777


@pytest.mark.parametrize("kind", ["file", "fifo", "socket", "device"])
def test_chown_clears_setuid_and_setgid_of_every_non_directory(fsd, kind):
    """Root's chown, and an owner's chgrp to a group of theirs, clear
    set-user-ID, and set-group-ID where group execute is set, on every
    non-directory; directories keep both (as ext4 and tmpfs)."""
    import socket
    p = fsd.p("n")
    if kind == "file":
        write(p, b"x", 0o644)
    elif kind == "fifo":
        os.mkfifo(p)
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX)
        try:
            s.bind(p)
        except OSError as e:  # a name too long for sun_path
            pytest.skip(f"cannot bind a socket there: {e}")
        finally:
            s.close()
    else:
        os.mknod(p, stat.S_IFCHR | 0o644, os.makedev(1, 3))
    os.chmod(p, 0o6775)
    os.chown(p, U, G)
    assert stat.S_IMODE(os.lstat(p).st_mode) == 0o775
    os.chmod(p, 0o6765)  # no group execute: set-group-ID stays
    os.chown(p, 0, 0)
    assert stat.S_IMODE(os.lstat(p).st_mode) == 0o2765
    os.chown(p, U, G)
    os.chmod(p, 0o6775)
    assert other(lambda: os.chown(p, -1, 999), groups=(999,)) == "OK"
    assert stat.S_IMODE(os.lstat(p).st_mode) == 0o775
    mkdir(fsd.p("d"), 0o6775)
    os.chown(fsd.p("d"), U, G)
    assert stat.S_IMODE(os.stat(fsd.p("d")).st_mode) == 0o6775


def test_protected_hardlinks_refuse_links_to_files_one_cannot_use(fsd):
    with open("/proc/sys/fs/protected_hardlinks") as f:
        if f.read().strip() != "1":
            pytest.skip("fs.protected_hardlinks is off")
    mkdir(fsd.p("rw"), 0o777)
    write(fsd.p("secret"), b"x", 0o600)
    write(fsd.p("readable"), b"x", 0o644)
    write(fsd.p("rw", "mine"), b"x", 0o600)
    os.chown(fsd.p("rw", "mine"), U, G)
    assert other(lambda: os.link(fsd.p("secret"), fsd.p("rw", "l1"))) == \
        "EPERM"
    assert other(lambda: os.link(fsd.p("readable"), fsd.p("rw", "l2"))) == \
        "EPERM"
    assert other(lambda: os.link(fsd.p("rw", "mine"), fsd.p("rw", "l3"))) == \
        "OK"


def test_xattrs_need_the_file_permissions(fsd):
    write(fsd.p("ro"), b"x", 0o644)
    write(fsd.p("none"), b"x", 0o600)
    write(fsd.p("rw"), b"x", 0o666)
    for p in ("ro", "none", "rw"):
        os.setxattr(fsd.p(p), "user.k", b"v")
    assert as_user(lambda: os.getxattr(fsd.p("ro"), "user.k")) == ("ok", b"v")
    assert other(lambda: os.getxattr(fsd.p("none"), "user.k")) == "EACCES"
    assert other(lambda: os.setxattr(fsd.p("ro"), "user.k", b"w")) == "EACCES"
    assert other(lambda: os.removexattr(fsd.p("ro"), "user.k")) == "EACCES"
    assert other(lambda: os.setxattr(fsd.p("rw"), "user.k", b"w")) == "OK"
    assert os.getxattr(fsd.p("rw"), "user.k") == b"w"
    assert other(lambda: os.setxattr(fsd.p("rw"), "trusted.k", b"w")) == \
        "EPERM"


def test_a_non_root_user_sees_only_what_root_allows_in_statfs_and_readdir(
        fsd):
    mkdir(fsd.p("d"), 0o755)
    write(fsd.p("d", "f"), b"x", 0o600)
    assert as_user(lambda: sorted(os.listdir(fsd.p("d")))) == ("ok", ["f"])
    res = as_user(lambda: os.statvfs(fsd.path).f_namemax)
    assert res == ("ok", 255)
