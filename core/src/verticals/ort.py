"""ONNX Runtime sessions, created one way everywhere: export parity, the train stages' checks, scoring
and the flows.

onnxruntime is imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from verticals.errors import VerticalsError

__all__ = ["open_session", "session_options"]

CPU = ("CPUExecutionProvider",)


def session_options(*, threads: int | None = None, spinning: bool = False, log_severity: int = 3) -> Any:
    """``onnxruntime.SessionOptions`` as verticals uses them.

    Args:
        threads: intra-op threads, with sequential execution, one inter-op thread and full graph
            optimisation (the scoring lanes' setting); ``None`` leaves ORT's defaults.
        spinning: let idle intra-op threads spin (only with ``threads``).
        log_severity: ORT's log level; 3 (errors only) because an unavailable provider is detected
            from ``session.get_providers()`` and reported by the caller, not from ORT's log lines.
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = log_severity
    if threads is not None:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return so


def open_session(model: Path | str | bytes, providers: Sequence[Any] = CPU, options: Any = None) -> Any:
    """An ``onnxruntime.InferenceSession`` of ``model`` (a file, or a serialized model's bytes).

    Args:
        providers: execution providers in order of preference (names or ``(name, options)`` pairs).
            Asking for one that cannot load falls back silently: check ``session.get_providers()``.
        options: ``SessionOptions``; default :func:`session_options` ``()``.

    Raises:
        VerticalsError: onnxruntime cannot load the model; one line naming the file and ORT's reason.
    """
    import onnxruntime as ort

    source = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(source, sess_options=options if options is not None else session_options(),
                                    providers=list(providers))
    except Exception as exc:  # onnxruntime raises its own exception types
        where = "the in-memory model" if isinstance(model, bytes) else str(model)
        raise VerticalsError(f"onnxruntime cannot load {where}: {str(exc).splitlines()[0]}",
                             hint="re-export the model; check the onnxruntime version (1.31 loads opsets 18-23)"
                             ) from exc
