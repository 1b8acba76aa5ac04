"""JSON coercion shared by the model store, the train stages and the scoring output.

Pipelines put numpy scalars and arrays, paths, sets and dates into what becomes JSON (manifests,
``fit_extras``, run keys); :func:`json_default` turns those into JSON values the same way everywhere.
"""

from __future__ import annotations

import json
import os
from typing import Any

__all__ = ["json_default", "plain_json"]


def json_default(obj: Any) -> Any:
    """``json.dumps(default=...)`` for numpy scalars/arrays, paths, sets, dates and ``to_dict`` objects.

    Raises:
        TypeError: anything else, naming its type (what ``json`` does for an unknown object).
    """
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, set | frozenset):
        return sorted(obj, key=str)
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def plain_json(value: Any) -> Any:
    """A deep copy of ``value`` made only of JSON types (dicts, lists, strings, numbers, booleans, None).

    NaN and infinities are kept (Python's JSON writes them). Raises ``TypeError`` or ``ValueError``
    (a circular reference) when ``value`` cannot be written as JSON; callers turn that into an error
    naming what they were writing.
    """
    return json.loads(json.dumps(value, default=json_default, allow_nan=True))
