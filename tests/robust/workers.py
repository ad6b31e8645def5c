#!/usr/bin/python3
"""Worker processes for the concurrency tests. Each subcommand does one
kind of load and exits 0 when everything it checked on the way held, 1
(with a message on stderr) when not. Contents are deterministic
(`pattern`), so the test can compute what every file must hold at the end.

    workers.py file PATH SEED SIZE ROUNDS      rewrite a whole file, ROUNDS times
    workers.py region PATH IDX REGSIZE ROUNDS  pwrite region IDX of a shared file
    workers.py mmap PATH IDX REGSIZE ROUNDS    the same through a shared mapping,
                                               fsync after each round
    workers.py reader PATH SECONDS             read the whole file again and again
    workers.py renamer DIR IDX COUNT           write-then-rename COUNT files, and
                                               replace DIR/shared each time
    workers.py shared_reader DIR SECONDS       DIR/shared is always one whole version
    workers.py counter PATH COUNT flock|fcntl  locked read-increment-write
    workers.py creator DIR IDX COUNT           create, write, stat, unlink, mkdir
"""

import fcntl
import mmap
import os
import random
import sys
import time


def pattern(seed, rnd, n):
    return random.Random(seed * 1000003 + rnd).randbytes(n)


def shared_version(idx, n):
    line = b"writer %02d version %06d\n" % (idx, n)
    return line * (1 + (idx * 7 + n) % 300)


def fail(msg):
    sys.stderr.write(msg + "\n")
    sys.exit(1)


def w_file(path, seed, size, rounds):
    rng = random.Random(seed)
    for r in range(rounds):
        data = pattern(seed, r, size)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            # In random-sized chunks, in random order.
            chunks = []
            off = 0
            while off < size:
                n = rng.randint(1, 70000)
                chunks.append((off, data[off:off + n]))
                off += n
            rng.shuffle(chunks)
            for off, chunk in chunks:
                os.pwrite(fd, chunk, off)
            os.ftruncate(fd, size)
            got = os.pread(fd, size + 1, 0)
            if got != data:
                fail(f"{path}: round {r}: read back differs")
            if rng.random() < 0.3:
                os.fsync(fd)
        finally:
            os.close(fd)


def w_region(path, idx, regsize, rounds):
    rng = random.Random(idx)
    fd = os.open(path, os.O_RDWR)
    try:
        base = idx * regsize
        for r in range(rounds):
            data = pattern(idx, r, regsize)
            step = rng.choice([512, 4096, 5000, 65536])
            offs = list(range(0, regsize, step))
            rng.shuffle(offs)
            for o in offs:
                os.pwrite(fd, data[o:o + step], base + o)
            if os.pread(fd, regsize, base) != data:
                fail(f"{path}: region {idx} round {r}: read back differs")
    finally:
        os.close(fd)


def w_mmap(path, idx, regsize, rounds):
    fd = os.open(path, os.O_RDWR)
    try:
        mm = mmap.mmap(fd, regsize, offset=idx * regsize)
        for r in range(rounds):
            data = pattern(idx, r, regsize)
            mm[:] = data
            os.fsync(fd)
            if os.pread(fd, regsize, idx * regsize) != data:
                fail(f"{path}: mmap region {idx} round {r}: read differs")
        mm.close()
    finally:
        os.close(fd)


def w_reader(path, seconds):
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        try:
            with open(path, "rb") as f:
                while f.read(1 << 20):
                    pass
            n += 1
        except FileNotFoundError:
            time.sleep(0.01)
    print(n)


def w_renamer(d, idx, count):
    for n in range(count):
        tmp = os.path.join(d, f".tmp-{idx}-{n}")
        with open(tmp, "wb") as f:
            f.write(pattern(idx, n, 1000 + n * 13))
        os.rename(tmp, os.path.join(d, f"w{idx}-{n}"))
        stmp = os.path.join(d, f".shared-{idx}")
        with open(stmp, "wb") as f:
            f.write(shared_version(idx, n))
        os.rename(stmp, os.path.join(d, "shared"))
        if n % 3 == 0 and n:
            os.unlink(os.path.join(d, f"w{idx}-{n - 1}"))


def w_shared_reader(d, seconds):
    end = time.monotonic() + seconds
    seen = 0
    while time.monotonic() < end:
        try:
            with open(os.path.join(d, "shared"), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            continue
        line = data[:len(b"writer 00 version 000000\n")]
        try:
            idx, n = int(line[7:9]), int(line[18:24])
        except ValueError:
            fail(f"shared: unreadable version {data[:60]!r}")
        if data != shared_version(idx, n):
            fail(f"shared: torn version of writer {idx} #{n}: "
                 f"{len(data)} bytes")
        seen += 1
    print(seen)


def w_counter(path, count, kind):
    fd = os.open(path, os.O_RDWR)
    try:
        for _ in range(count):
            if kind == "flock":
                fcntl.flock(fd, fcntl.LOCK_EX)
            else:
                fcntl.lockf(fd, fcntl.LOCK_EX)
            v = int(os.pread(fd, 32, 0) or b"0")
            data = b"%d\n" % (v + 1)
            os.pwrite(fd, data, 0)
            if kind == "flock":
                fcntl.flock(fd, fcntl.LOCK_UN)
            else:
                fcntl.lockf(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def w_creator(d, idx, count):
    sub = os.path.join(d, f"c{idx}")
    os.mkdir(sub)
    for n in range(count):
        p = os.path.join(sub, f"f{n}")
        with open(p, "wb") as f:
            f.write(b"%d" % n)
        if os.stat(p).st_size != len(b"%d" % n):
            fail(f"{p}: wrong size")
        if n % 2:
            os.unlink(p)
        if n % 10 == 0:
            os.mkdir(os.path.join(sub, f"d{n}"))


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "file":
        w_file(args[0], int(args[1]), int(args[2]), int(args[3]))
    elif cmd == "region":
        w_region(args[0], int(args[1]), int(args[2]), int(args[3]))
    elif cmd == "mmap":
        w_mmap(args[0], int(args[1]), int(args[2]), int(args[3]))
    elif cmd == "reader":
        w_reader(args[0], float(args[1]))
    elif cmd == "renamer":
        w_renamer(args[0], int(args[1]), int(args[2]))
    elif cmd == "shared_reader":
        w_shared_reader(args[0], float(args[1]))
    elif cmd == "counter":
        w_counter(args[0], int(args[1]), args[2])
    elif cmd == "creator":
        w_creator(args[0], int(args[1]), int(args[2]))
    else:
        fail(f"unknown worker {cmd}")


if __name__ == "__main__":
    main()
