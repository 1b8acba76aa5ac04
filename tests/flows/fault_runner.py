"""Run the verticals CLI with an injected fault or slowed down (a script the fault harness starts).

``VERTICALS_TEST_FAULT`` (JSON) wraps one function: ``{"target": "module:attr[.attr]", "call": N,
"action": "kill" | "enospc", "when": "before" | "after"}``; on its N-th call the process SIGKILLs itself
(exactly what a crash or the OOM killer does) or the call raises ``OSError(ENOSPC)`` (a full disk).
``VERTICALS_TEST_SLOW`` (seconds) sleeps after every scored batch so a run can be caught in flight;
``VERTICALS_TEST_GATE`` (a path) holds the run after its first batch (``<path>.waiting`` appears) until
the file ``<path>`` exists.
Then ``verticals ARGS`` runs in this process, as the console script would.
"""

from __future__ import annotations

import errno
import importlib
import json
import os
import signal
import sys
import time


def _install_fault(spec: dict) -> None:
    module, _, attr = spec["target"].partition(":")
    owner = importlib.import_module(module)
    *path, name = attr.split(".")
    for part in path:
        owner = getattr(owner, part)
    original = getattr(owner, name)
    calls = [0]

    def fault() -> None:
        if spec.get("action", "kill") == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(60)  # never reached
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), spec.get("filename"))

    def wrapper(*args, **kwargs):
        calls[0] += 1
        hit = calls[0] == spec.get("call", 1)
        if hit and spec.get("when", "before") == "before":
            fault()
        result = original(*args, **kwargs)
        if hit and spec.get("when") == "after":
            fault()
        return result

    setattr(owner, name, wrapper)


def _slow_down(seconds: float, gate: str | None) -> None:
    from pathlib import Path

    from verticals import hookimpl
    from verticals.registry import get_registry

    class Slow:
        @hookimpl
        def after_score_batch(self, batch_index):
            if gate and batch_index == 0:  # hold the run after its first batch until the test opens the gate
                Path(gate + ".waiting").touch()
                deadline = time.monotonic() + 300
                while not Path(gate).exists() and time.monotonic() < deadline:
                    time.sleep(0.05)
            time.sleep(seconds)

    get_registry().pm.register(Slow(), name="test-slow")


if __name__ == "__main__":
    if os.environ.get("VERTICALS_TEST_FAULT"):
        _install_fault(json.loads(os.environ["VERTICALS_TEST_FAULT"]))
    if os.environ.get("VERTICALS_TEST_SLOW") or os.environ.get("VERTICALS_TEST_GATE"):
        _slow_down(float(os.environ.get("VERTICALS_TEST_SLOW") or 0), os.environ.get("VERTICALS_TEST_GATE"))
    from verticals.cli import main

    main(sys.argv[1:])
