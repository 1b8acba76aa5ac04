"""The output lock in one process: refuse a second holder, take over a dead one's file with a note,
leave nothing behind, never hold two inodes."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest
from verticals.locking import LockHeldError, OutputLock, lock_path


def test_second_holder_is_refused_naming_the_first(tmp_path) -> None:
    out = tmp_path / "scores"
    with OutputLock(out, what="scoring run") as first:
        holder = json.loads(lock_path(out).read_text())
        assert holder["pid"] == os.getpid() and first.held
        with pytest.raises(LockHeldError) as info:
            OutputLock(out, what="scoring run").acquire()
        message = str(info.value)
        assert message.startswith(f"another scoring run (process {os.getpid()} since ") and str(out) in message
        assert "(fix: wait for it to finish" in message and "\n" not in message
    assert not lock_path(out).exists(), "a released lock leaves no file"
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_dead_holders_lock_is_taken_over_with_a_note(tmp_path, caplog) -> None:
    out = tmp_path / "scores"
    code = ("import os, sys\nfrom verticals.locking import OutputLock\n"
            "OutputLock(sys.argv[1]).acquire()\nos._exit(0)  # dies holding it, file left behind\n")
    dead = subprocess.run([sys.executable, "-c", code, str(out)], check=True)
    assert dead.returncode == 0 and lock_path(out).exists()
    pid = json.loads(lock_path(out).read_text())["pid"]
    with caplog.at_level(logging.WARNING, logger="verticals.locking"), OutputLock(out) as lock:
        assert lock.took_over["pid"] == pid
    assert f"taking over the lock left by process {pid}" in caplog.text and "no longer running" in caplog.text
    assert not lock_path(out).exists()


def test_missing_parent_folders_are_created(tmp_path) -> None:
    out = tmp_path / "a" / "b" / "scores"
    with OutputLock(out):
        assert lock_path(out).exists()
    assert (tmp_path / "a" / "b").is_dir() and not out.exists()


def test_a_lock_file_replaced_under_the_holder_is_not_shared(tmp_path) -> None:
    """The holder releases (deletes) the file between another process's open and flock: that process
    must not end up holding the deleted inode while a third holds the new file."""
    out = tmp_path / "scores"
    first = OutputLock(out).acquire()
    fd = os.open(lock_path(out), os.O_RDWR)  # a racer that opened the file before it was deleted
    first.release()
    with OutputLock(out) as second:  # a new file, a new inode
        assert second.held
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the old inode is free, but it is not the lock ...
        assert os.fstat(fd).st_ino != os.stat(lock_path(out)).st_ino  # ... which acquire() checks for
        with pytest.raises(LockHeldError):
            OutputLock(out).acquire()
    os.close(fd)
