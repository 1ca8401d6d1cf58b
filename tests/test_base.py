"""Shared bases: the child-process helper, path facts."""

from __future__ import annotations

import os
import signal
import time

from desktop.child import TIMEOUT, ChildDied, child_process


def _talks(conn, words):
    for word in words:
        conn.send(word)


def _hangs(conn):
    conn.send("started")
    time.sleep(60)


def _crashes(conn):
    os.kill(os.getpid(), signal.SIGSEGV)


def test_messages_arrive_in_order_then_the_end_is_reported():
    with child_process(_talks, (["a", "b"],), "test-talks") as job:
        assert [job.receive(10), job.receive(10)] == ["a", "b"]
        try:
            job.receive(10)
        except ChildDied as died:
            assert died.exitcode == 0
        else:
            raise AssertionError("a child that ended must be reported")


def test_a_hanging_child_times_out_and_is_killed_on_leaving():
    with child_process(_hangs, (), "test-hangs") as job:
        assert job.receive(10) == "started"
        started = time.monotonic()
        assert job.receive(0.5) is TIMEOUT
        assert time.monotonic() - started < 5
        proc = job.proc
    assert not proc.is_alive() and proc.exitcode == -signal.SIGKILL


def test_a_crash_is_reported_with_its_signal():
    with child_process(_crashes, (), "test-crashes") as job:
        try:
            job.receive(30)
        except ChildDied as died:
            assert died.exitcode == -signal.SIGSEGV
        else:
            raise AssertionError("a crash must be reported")


def test_is_under_is_about_folders_not_string_prefixes():
    from desktop.files import is_under

    assert is_under("/a/b/c.pdf", "/a/b") and is_under("/a/b/c/d.pdf", "/a/b/")
    assert not is_under("/a/bc.pdf", "/a/b") and not is_under("/a/b", "/a/b")
    assert is_under("/a/b", "/a/b", or_same=True)
