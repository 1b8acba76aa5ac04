"""Cache keys that let a re-run resume: what a stage's result depends on, hashed cheaply.

Prefect's default cache policy includes the flow run id, so nothing carries over between runs. The
flows use ``INPUTS + TASK_SOURCE`` with ``persist_result=True`` instead, but hashing the inputs of a
late stage (a training split of a million rows, a fitted model) would cost more than it saves and
would break on objects cloudpickle hashes unstably. So every stage also receives a small ``key``
string, its *lineage*: the key of the stage before it plus whatever this stage adds (a seed, a number
of epochs), and the heavy arguments are excluded from hashing. The first key comes from the input's
identity: the file's path, size and modification time (or, for a plugin's built-in dataset, the
plugin's version), the pipeline and the installed versions of verticals and the plugin.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def digest(*parts: Any) -> str:
    """A short, stable hash of JSON-able parts."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def path_fingerprint(path: Path | str) -> str:
    """Identity of a file or folder without reading it: names, sizes and modification times."""
    root = Path(path).expanduser().absolute()
    if root.is_file():
        st = root.stat()
        return digest(str(root), st.st_size, st.st_mtime_ns)
    if root.is_dir():
        entries = []
        for p in sorted(root.rglob("*")):
            if p.is_file():
                st = p.stat()
                entries.append((p.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns))
        return digest(str(root), entries)
    return digest(str(root), "missing")


def code_fingerprint(pipeline: str) -> dict[str, str]:
    """Versions of the code a pipeline's results depend on: verticals and the pipeline's plugin."""
    import verticals
    from verticals.registry import get_registry

    registry = get_registry()
    pipe = registry.pipeline(pipeline)
    info = registry.plugin_info(pipe.plugin)
    return {"verticals": verticals.__version__, "plugin": info.label if info else pipe.plugin,
            "pipeline": pipe.qualified_name}


def source_key(pipeline: str, data: str | None) -> str:
    """The lineage key of a training run's input: the data's identity and the code's versions.

    A pipeline registered from a user's own data config (``verticals data register``) depends on that
    config (its sha256) and on its data file, not only on the plugin's version."""
    if data:
        return digest(code_fingerprint(pipeline), path_fingerprint(data))
    from verticals.registry import get_registry

    registry = get_registry()
    own = registry.own_data.get(registry.pipeline(pipeline).qualified_name)
    if own is not None:
        return digest(code_fingerprint(pipeline), "own-data", own.sha256,
                      path_fingerprint(own.data) if own.data else "no-data-file")
    return digest(code_fingerprint(pipeline), "builtin-dataset")


def then(key: str, *parts: Any) -> str:
    """The key of the next stage: this key plus what the next stage adds."""
    return digest(key, *parts)
