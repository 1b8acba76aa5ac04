"""Exclusive, non-blocking locks on an output location, taken before anything there is touched.

A scoring run (``verticals score`` or the score flow) writes ``<parent>/.<name>.partial`` and finally
renames it to ``<parent>/<name>``. Two runs into one output must never both write: the second one is
refused, before it creates, clears or deletes anything, with a one-line error naming the process that
holds the output. The lock is ``<parent>/.<name>.lock``:

* ``fcntl.flock`` on that file; the kernel drops it when its holder exits, however it exits (SIGKILL
  included), so a dead run never blocks the next one forever.
* The file holds who took it (pid, host, start time, command). A clean release deletes the file while
  still holding the lock; a file found on acquiring therefore means its holder died without releasing,
  and the new holder takes it over with a logged note naming the dead process.
* After ``flock`` succeeds the holder checks that the path still names the inode it locked (the previous
  holder may have deleted it in between); if not it starts over, so two processes can never hold
  "the" lock on two different inodes.

Locks are advisory and rely on ``flock``: an output on NFS needs a server that supports it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from verticals.errors import UserError

__all__ = ["LockHeldError", "OutputLock", "lock_path"]

log = logging.getLogger("verticals.locking")


class LockHeldError(UserError):
    """Another live process holds the lock of an output location."""


def lock_path(output: Path | str) -> Path:
    """``<parent>/.<name>.lock``: next to the output and its staging folder, on the same filesystem."""
    output = Path(output).expanduser().absolute()
    return output.parent / f".{output.name}.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _describe(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "another process"
    parts = [f"process {holder.get('pid', '?')}"]
    if holder.get("host") and holder.get("host") != socket.gethostname():
        parts.append(f"on {holder['host']}")
    if holder.get("started_at"):
        parts.append(f"since {holder['started_at']}")
    return " ".join(parts)


class OutputLock:
    """The exclusive lock of one output location (see the module docstring).

    Args:
        output: the output path the lock protects (the lock file sits next to it).
        what: how errors name the kind of run, e.g. ``"scoring run"``.

    ``acquire`` raises :class:`LockHeldError` when a live process holds the lock; ``release`` is
    idempotent. Usable as a context manager.
    """

    def __init__(self, output: Path | str, *, what: str = "run") -> None:
        self.output = Path(output).expanduser().absolute()
        self.path = lock_path(self.output)
        self.what = what
        self.fd: int | None = None
        self.took_over: dict[str, Any] | None = None

    @property
    def held(self) -> bool:
        return self.fd is not None

    def acquire(self) -> OutputLock:
        if self.fd is not None:
            return self
        try:
            self.output.parent.mkdir(parents=True, exist_ok=True)  # as the output's staging folder would
        except OSError as exc:
            raise UserError(f"cannot write {self.output}: cannot create folder {self.output.parent} "
                            f"({exc.strerror})", hint="choose an output path in a writable folder") from None
        for _attempt in range(50):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
            except OSError as exc:
                raise UserError(f"cannot create lock file {self.path}: {exc.strerror}",
                                hint=f"make {self.output.parent} writable, or choose another output path") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read(fd)
                os.close(fd)
                raise LockHeldError(f"another {self.what} ({_describe(holder)}) is writing {self.output}",
                                    hint="wait for it to finish, or write into another output folder") from None
            except BaseException:
                os.close(fd)
                raise
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the previous holder released (deleted) it between our open and flock
                os.close(fd)
                continue
            try:
                self._take(fd)
            except BaseException:
                os.close(fd)
                raise
            self.fd = fd
            return self
        raise LockHeldError(f"could not lock {self.output}: its lock file {self.path} keeps being replaced",
                            hint="check that no other tool deletes lock files there, then retry")

    def _take(self, fd: int) -> None:
        previous = _read(fd)
        if previous and previous.get("pid") != os.getpid():
            self.took_over = previous
            dead = previous.get("host") == socket.gethostname() and isinstance(previous.get("pid"), int) \
                and not _alive(previous["pid"])
            log.warning("%s: taking over the lock left by %s%s, which did not release it", self.output,
                        _describe(previous), " (no longer running)" if dead else "")
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "command": os.path.basename(sys.argv[0]) if sys.argv else ""}
        data = json.dumps(me).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        with contextlib.suppress(OSError):
            os.fsync(fd)

    def release(self) -> None:
        """Delete the lock file (while still holding it) and unlock; nothing to do when not held."""
        fd, self.fd = self.fd, None
        if fd is None:
            return
        try:
            with contextlib.suppress(OSError):
                if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                    os.unlink(self.path)
        finally:
            os.close(fd)

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read(fd: int) -> dict[str, Any] | None:
    try:
        raw = os.pread(fd, 4096, 0)
    except OSError:
        return None
    if not raw.strip():
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return {"pid": "?"}
    return data if isinstance(data, dict) else None


@contextlib.contextmanager
def output_lock(output: Path | str, *, what: str = "run") -> Iterator[OutputLock]:
    """``with output_lock(out, what="scoring run"):`` hold :class:`OutputLock` for the block."""
    lock = OutputLock(output, what=what)
    with lock:
        yield lock
