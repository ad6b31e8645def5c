"""FUSE round trips the daemon spares: counted in the requests the daemon
logs with -o debug (libfuse prints each one's opcode)."""

import os

import helpers


def opcodes(m, name):
    return m.stderr().count(f"opcode: {name} ")


def test_a_close_costs_no_flush_request(mount, empty_source):
    """Nothing happens at a close unless sync_on_close: the first FLUSH
    is answered ENOSYS and the kernel sends no more."""
    m = mount(empty_source, options=["debug"], allow_stderr=True)
    for i in range(20):
        helpers.write_file(m / f"f{i}", b"x" * i)
        assert helpers.read_file(m / f"f{i}") == b"x" * i
    assert m.unmount() == 0  # every RELEASE (sent after the close) in
    assert opcodes(m, "RELEASE") >= 40
    assert opcodes(m, "FLUSH") <= 1
    for i in range(20):
        assert helpers.read_file(empty_source / f"f{i}") == b"x" * i


def test_sync_on_close_still_gets_every_flush(mount, empty_source):
    m = mount(empty_source, options=["debug", "sync_on_close"],
              allow_stderr=True)
    for i in range(5):
        helpers.write_file(m / f"f{i}", b"data")
        # written back at the close itself, before the unmount
        assert helpers.read_file(empty_source / f"f{i}") == b"data"
    assert opcodes(m, "FLUSH") >= 5
    assert m.unmount() == 0
