"""Export a trained pipeline to ONNX, prove the export computes what PyTorch computes, and make
smaller/faster variants that are kept only when the pipeline's own metric says they are as good.

Why each choice:

* **One graph, preprocessing included.** :func:`export_onnx` exports ``graph_module → model`` as one
  graph, so imputation and scaling run inside ONNX Runtime at scoring time exactly as in training.
* **The dynamo exporter** (``torch.onnx.export(..., dynamo=True)``, torch's default) is used first. The
  legacy TorchScript exporter is kept only as a fallback for models ``torch.export`` cannot capture
  (data-dependent Python control flow); which one ran is stored in the model's ONNX metadata
  (``verticals.exporter``) and reported. The parity check below guards both the same way.
* **One file** (``external_data=False``): the store hashes and moves one file; a ``.onnx.data`` side
  file would be easy to lose.
* **Opset 18 (pinned).** torch's ``onnxscript`` op library is written against opset 18, so no version
  conversion runs on the graph; every ONNX Runtime from 1.14 on loads it (1.31 loads 18–23). Pinning
  keeps exports identical when torch's default opset moves.
* **Dynamic batch axis** on every input and output (named ``batch``): scoring picks its own batch size.
* **Parity at another batch size.** :func:`check_parity` runs held-out rows (the test split) through
  PyTorch and ONNX Runtime's CPU provider at a batch size that differs from the export example, so a
  batch size baked into the graph fails the check. Tolerance: ``1e-4`` absolute on the raw outputs
  (logits), relative to the output's magnitude when that exceeds 1 (``limit = tol * max(1, max|y|)``):
  float32 re-association (fused Gemm, other BLAS kernels) moves results by ~1e-6 relative, while a real
  export fault (a wrong op, a missing normalisation) moves them by 1e-2 or more.
* **Variants are judged on the metric, not on raw differences.** ``int8`` (dynamic quantization of
  weights, for the CPU provider) and ``fp16`` (for the CUDA provider) are evaluated by the caller on the
  test split through the pipeline's own postprocess and metrics; a variant is registered only when
  ``|metric(variant) − metric(fp32)| ≤ 0.005``. fp16 is verified only where the CUDA provider really
  runs: ONNX Runtime's CPU provider accepts an fp16 graph but inserts casts and computes most ops in
  float32, so a CPU check would not test the arithmetic the GPU does. Without a GPU the fp16 variant is
  evaluated on CPU for information, recorded as not verified, and not registered.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from verticals.errors import UserError, VerticalsError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch

    from verticals.spec import TensorSpec

__all__ = [
    "OPSET",
    "PARITY_TOLERANCE",
    "VARIANTS",
    "VARIANT_TOLERANCE",
    "ExportError",
    "build_variants",
    "check_parity",
    "compose",
    "convert_fp16",
    "cuda_provider_available",
    "export_onnx",
    "memory_per_example",
    "onnx_exporter",
    "quantize_int8",
    "relative_speed",
]

OPSET = 18
"""ONNX opset of every export: torch's onnxscript op library is written against 18 (no conversion)."""

PARITY_TOLERANCE = 1e-4
"""Max |ONNX − PyTorch| on raw outputs, scaled by max(1, max|output|)."""

VARIANT_TOLERANCE = 0.005
"""Max |Δ primary metric| (test split) for a variant to be registered."""

VARIANTS = ("int8", "fp16")
"""Variant kinds :func:`build_variants` knows: file name ``model.<kind>.onnx``."""

_EXPORTER_KEY = "verticals.exporter"


class ExportError(VerticalsError):
    """The model could not be exported to ONNX."""


# -- composition ----------------------------------------------------------------------------------------
def compose(graph_module: torch.nn.Module | None, model: torch.nn.Module, input_names: Sequence[str]) -> Any:
    """One ``nn.Module`` running ``graph_module`` (in-graph preprocessing, optional) then ``model``.

    Its ``forward`` takes the inputs positionally in ``input_names`` order (or by keyword) and always
    returns a tuple of tensors, so single- and multi-output models export the same way.
    """
    from torch import nn

    class Composed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pre = graph_module
            self.model = model
            self.names = tuple(input_names)

        def forward(self, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
            inputs = dict(zip(self.names, args, strict=False))
            inputs.update(kwargs)
            if self.pre is not None:
                inputs = dict(self.pre(**inputs))
            out = self.model(**inputs)
            return tuple(out) if isinstance(out, (tuple, list)) else (out,)

    return Composed()


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's chatter (optional torchvision ops, axis renaming) for this call only."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.onnx._internal.exporter._registration",
                                                    "torch._dynamo", "torch.export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _first_line(exc: BaseException) -> str:
    """The first line of an error message without terminal colour codes (torch's carry some)."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    return text.splitlines()[0][:200] if text else ""


# -- export -----------------------------------------------------------------------------------------------
def export_onnx(
    graph_module: torch.nn.Module | None,
    model: torch.nn.Module,
    signature: Mapping[str, TensorSpec],
    outputs: Sequence[str],
    example: Mapping[str, np.ndarray],
    path: Path,
    opset: int = OPSET,
) -> Path:
    """Export ``graph_module → model`` to one ONNX file with a dynamic batch axis.

    Args:
        graph_module: the preprocessor's in-graph part, or ``None``.
        model: the trained model (moved to CPU and put in eval mode here).
        signature: model inputs by name (the preprocessor's signature); names become graph input names.
        outputs: graph output names (``ModelSpec.outputs``), in ``forward``'s return order.
        example: example inputs, at least 2 rows (a batch of 1 would let the exporter fix the axis).
        path: the ``.onnx`` file to write (one file, no external data).
        opset: ONNX opset; default :data:`OPSET`.

    Returns:
        ``path``. Which exporter ran is stored in the model metadata (see :func:`onnx_exporter`).

    Raises:
        ExportError: both exporters failed, or the example does not fit the signature.
    """
    import numpy as np
    import onnx
    import torch

    names = list(signature)
    missing = [n for n in names if n not in example]
    if missing:
        raise ExportError(f"export example lacks input(s) {', '.join(missing)} of the signature {names}",
                          hint="build the example with the preprocessor's transform")
    rows = {n: int(np.asarray(example[n]).shape[0]) for n in names}
    if len(set(rows.values())) != 1 or min(rows.values()) < 2:
        raise ExportError(f"export example needs one batch size of at least 2 rows for every input, got {rows}",
                          hint="pass a few rows of the training split")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = compose(graph_module, model, names).to("cpu").eval()
    args = tuple(torch.from_numpy(np.ascontiguousarray(example[n])) for n in names)
    batch = torch.export.Dim("batch")
    errors: list[str] = []
    exporter = "dynamo"
    with _quiet_exporter(), torch.no_grad():
        try:
            program = torch.onnx.export(
                module, args, dynamo=True, input_names=names, output_names=list(outputs),
                dynamic_shapes=(tuple({0: batch} for _ in names),), opset_version=opset,
                external_data=False, optimize=True, verbose=False)
            program.save(str(path), external_data=False)
        except Exception as exc:  # torch.export cannot capture every model: fall back, say so
            errors.append(f"dynamo: {type(exc).__name__}: {_first_line(exc)}")
            exporter = "torchscript"
            try:
                torch.onnx.export(
                    module, args, str(path), dynamo=False, input_names=names, output_names=list(outputs),
                    dynamic_axes={n: {0: "batch"} for n in [*names, *outputs]}, opset_version=opset)
            except Exception as exc2:
                errors.append(f"torchscript: {type(exc2).__name__}: {_first_line(exc2)}")
                raise ExportError(f"cannot export {type(model).__name__} to ONNX ({'; '.join(errors)})",
                                  hint="make forward() traceable by torch.export (no data-dependent Python "
                                       "control flow) and return tensors only") from exc2
    proto = onnx.load(str(path), load_external_data=False)
    got = [o.name for o in proto.graph.output]
    if got != list(outputs):
        raise ExportError(f"exported graph has outputs {got}, the model spec declares {list(outputs)}",
                          hint="make ModelSpec.outputs match what forward() returns")
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = _EXPORTER_KEY, exporter if not errors else f"{exporter} ({errors[0]})"
    onnx.save(proto, str(path))
    onnx.checker.check_model(str(path))
    return path


def onnx_exporter(path: Path) -> str:
    """Which exporter wrote ``path``: ``dynamo``, or ``torchscript (<why dynamo failed>)``."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return next((p.value for p in proto.metadata_props if p.key == _EXPORTER_KEY), "unknown")


# -- parity -----------------------------------------------------------------------------------------------
def _max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Largest |a − b|; positions NaN in both count as equal, NaN in one only as infinite."""
    import numpy as np

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf")
    if a.size == 0:
        return 0.0
    both_nan = np.isnan(a) & np.isnan(b)
    diff = np.where(both_nan, 0.0, np.abs(a - b))
    diff = np.where(np.isnan(diff), np.inf, diff)
    return float(diff.max())


def _indices_parity(ours: np.ndarray, ref: np.ndarray, scores: tuple[np.ndarray, np.ndarray] | None,
                    limit: float) -> dict[str, Any]:
    """Compare integer index outputs (top-k items) row by row as sets.

    A row whose sets differ passes when the paired float output (``scores``: ONNX, torch) shows a tie:
    the sorted scores agree within ``limit``, so two items of equal score were merely swapped.
    """
    import numpy as np

    if ours.shape != ref.shape:
        return {"kind": "indices", "passed": False, "rows_differing": int(ref.shape[0]) if ref.ndim else 1,
                "ties": 0, "max_abs_diff": float("inf"), "limit": limit}
    a = np.sort(ours.reshape(ours.shape[0], -1), axis=1) if ours.ndim else ours.reshape(1, 1)
    b = np.sort(ref.reshape(ref.shape[0], -1), axis=1) if ref.ndim else ref.reshape(1, 1)
    differing = np.flatnonzero((a != b).any(axis=1))
    ties = 0
    if differing.size and scores is not None:
        so, st = (np.sort(np.asarray(x, dtype=np.float64).reshape(x.shape[0], -1), axis=1) for x in scores)
        close = np.abs(so[differing] - st[differing]).max(axis=1) <= limit
        ties = int(close.sum())
    passed = ties == differing.size
    return {"kind": "indices", "passed": bool(passed), "rows_differing": int(differing.size), "ties": ties,
            "max_abs_diff": 0.0 if passed else float("inf"), "limit": limit}


def check_parity(path: Path, torch_module: torch.nn.Module, sample: Mapping[str, np.ndarray],
                 tolerance: float = PARITY_TOLERANCE, kinds: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Run ``sample`` through PyTorch and ONNX Runtime (CPU provider) and compare every output.

    Args:
        path: the exported ``.onnx`` file.
        torch_module: what was exported (e.g. :func:`compose` of the in-graph preprocessing and the
            model), called with the inputs positionally in the graph's input order.
        sample: held-out inputs (the test split), at a batch size different from the export example.
        tolerance: see the module docstring; the limit per output is ``tolerance * max(1, max|y|)``.
        kinds: per output name, ``float`` (the default for floating outputs), ``indices`` (the default
            for integer outputs: sets per row, ties in the paired float output forgiven) or ``none``.

    Returns:
        ``{"max_abs_diff", "tolerance", "rows", "passed", "outputs": {name: {"max_abs_diff", "limit"}},
        "provider", "seconds"}``. The caller decides what a failure means (the engine raises
        :class:`~verticals.errors.ParityError`).
    """
    import numpy as np
    import torch

    from verticals.ort import open_session

    started = time.perf_counter()
    session = open_session(path)
    names = [i.name for i in session.get_inputs()]
    missing = [n for n in names if n not in sample]
    if missing:
        raise UserError(f"parity sample lacks graph input(s) {', '.join(missing)} of {path.name}",
                        hint=f"pass arrays named {names}")
    feeds = {n: np.ascontiguousarray(sample[n]) for n in names}
    rows = int(next(iter(feeds.values())).shape[0]) if feeds else 0
    onnx_out = session.run(None, feeds)
    module = torch_module.to("cpu").eval()
    with torch.no_grad():
        torch_out = module(*(torch.from_numpy(feeds[n]) for n in names))
    if not isinstance(torch_out, (tuple, list)):
        torch_out = (torch_out,)
    per_output: dict[str, dict[str, Any]] = {}
    passed = len(torch_out) == len(onnx_out)
    worst = 0.0 if passed else float("inf")
    kinds = dict(kinds or {})
    metas = session.get_outputs()
    refs = [t.detach().cpu().numpy() for t in torch_out]
    floats = [(o, r) for o, r in zip(onnx_out, refs, strict=False) if np.issubdtype(r.dtype, np.floating)]
    for meta, ours, ref in zip(metas, onnx_out, refs, strict=False):
        kind = kinds.get(meta.name) or ("float" if np.issubdtype(ref.dtype, np.floating) or ref.dtype == bool
                                        else "indices")
        finite = np.abs(ref[np.isfinite(ref)]) if ref.size and kind == "float" else np.zeros(1)
        scale = max(1.0, float(finite.max()) if finite.size else 1.0)
        limit = tolerance * scale
        if kind == "none":
            per_output[meta.name] = {"kind": "none", "max_abs_diff": 0.0, "limit": limit}
            continue
        if kind == "indices":
            pair = next(((o, r) for o, r in floats if o.shape == ours.shape), None)
            if pair is not None:
                pair_scale = max(1.0, float(np.abs(pair[1][np.isfinite(pair[1])]).max()) if pair[1].size else 1.0)
                limit = tolerance * pair_scale
            record = _indices_parity(np.asarray(ours), ref, pair, limit)
            per_output[meta.name] = record
            passed = passed and record["passed"]
            worst = max(worst, record["max_abs_diff"])
            continue
        diff = _max_abs_diff(ours, ref)
        per_output[meta.name] = {"kind": "float", "max_abs_diff": diff, "limit": limit}
        worst = max(worst, diff)
        passed = passed and diff <= limit
    return {"max_abs_diff": worst, "tolerance": tolerance, "rows": rows, "passed": bool(passed),
            "outputs": per_output, "provider": session.get_providers()[0],
            "seconds": round(time.perf_counter() - started, 3)}


# -- variants ---------------------------------------------------------------------------------------------
def quantize_int8(source: Path, target: Path) -> Path:
    """Dynamic int8 quantization of the weights (activations quantized at run time), for the CPU provider.

    ``quant_pre_process`` (shape inference and graph optimisation) runs first: without it
    ``quantize_dynamic`` fails on dynamo-exported graphs with recurrent or convolution layers.

    Weights are signed 8-bit with 7-bit range (``reduce_range``), one scale per output channel. On x86
    CPUs without VNNI, ORT multiplies u8 activations by s8 weights with ``VPMADDUBSW``, whose 16-bit
    intermediate sums saturate with full-range weights: measured on the reference MLP, full range gave
    a max |Δ logit| of 0.13–0.19 against fp32, 7-bit range 0.012 (and |Δ AUC| < 0.0003 on 20k rows).
    """
    import tempfile

    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        with _quiet_exporter():
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=False)
            quantize_dynamic(str(prepared), str(target), weight_type=QuantType.QInt8, per_channel=True,
                             reduce_range=True)
    return target


def convert_fp16(source: Path, target: Path) -> Path:
    """Float16 weights and arithmetic with float32 inputs and outputs (``keep_io_types``), for CUDA."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    with _quiet_exporter():
        model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    onnx.save(model, str(target))
    return target


@functools.lru_cache(maxsize=1)
def cuda_provider_available() -> bool:
    """Whether ONNX Runtime can really run the CUDA provider here (listing it is not enough)."""
    import onnxruntime as ort

    from verticals.scoring.runtime import cuda_device_count

    # Ask the driver first: on a machine without a GPU, ORT's CUDA probe prints load errors to stderr.
    if "CUDAExecutionProvider" not in ort.get_available_providers() or cuda_device_count() == 0:
        return False
    with contextlib.suppress(Exception), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        ort.preload_dlls()  # CUDA/cuDNN from the nvidia-* wheels; prints when they are absent
    try:
        from onnx import TensorProto, helper

        from verticals.ort import open_session, session_options

        graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
        # IR version 8 (what opset 18 needs): onnx's newest IR may be newer than this ORT reads.
        probe = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=8)
        session = open_session(probe.SerializeToString(), ["CUDAExecutionProvider"],
                               session_options(log_severity=4))
        return session.get_providers()[0] == "CUDAExecutionProvider"
    except Exception:
        return False


Evaluator = Callable[[Path, Sequence[str]], tuple[float, str]]
"""``evaluate(onnx_path, providers) -> (primary metric on the test split, provider that ran)``."""


INT8_TIMING_BYTES = 4 << 20
"""Model input bytes per timed call of :func:`relative_speed` (batches like scoring's, not single rows)."""


def relative_speed(reference: Path, variant: Path, sample: Mapping[str, np.ndarray], *, rounds: int = 7,
                   budget_s: float = 4.0) -> dict[str, Any]:
    """How many times faster ``variant`` scores ``sample`` than ``reference`` on this CPU.

    Both run as one scoring lane does (ORT CPU provider, one intra-op thread, full graph optimisation);
    calls alternate between the two after a warm-up call each, and the ratio is of the median call times,
    so load from other processes hits both alike. Stops early after ``budget_s`` seconds (at least 3
    calls each). Returns ``{"speedup": float | None, "timed_on": str}``: ``timed_on`` names the CPU's
    fast int8 feature (or says there is none) and the rows per call, because the ratio depends on both.
    """
    import numpy as np

    from verticals.ort import open_session, session_options
    from verticals.scoring.runtime import fast_int8

    if not sample:
        return {"speedup": None, "timed_on": "not timed: no model inputs to time on"}
    rows = len(next(iter(sample.values())))
    row_bytes = sum(a.nbytes // max(1, a.shape[0]) for a in sample.values()) or 1
    n = max(1, INT8_TIMING_BYTES // row_bytes)
    # A small test split is repeated up to the target size: calls of a few hundred rows time the
    # per-call overhead and the machine's noise, not the arithmetic int8 changes.
    take = np.resize(np.arange(rows), n) if n > rows else np.arange(n)
    feed = {k: np.ascontiguousarray(v[take]) for k, v in sample.items()}
    flag = fast_int8()
    timed_on = f"{flag or 'no fast int8 kernels'}, {n} rows per call"
    try:
        sessions = [open_session(path, options=session_options(threads=1)) for path in (reference, variant)]
        names = [{i.name for i in sess.get_inputs()} for sess in sessions]
        feeds = [{k: v for k, v in feed.items() if k in wanted} for wanted in names]
        for sess, f in zip(sessions, feeds, strict=True):
            sess.run(None, f)  # warm-up: allocations and kernel selection
        times: list[list[float]] = [[], []]
        deadline = time.perf_counter() + budget_s
        for i in range(rounds):
            for which, (sess, f) in enumerate(zip(sessions, feeds, strict=True)):
                started = time.perf_counter()
                sess.run(None, f)
                times[which].append(time.perf_counter() - started)
            if i >= 2 and time.perf_counter() > deadline:
                break
    except Exception as exc:  # timing is advice for ``auto``; never fails a registration
        return {"speedup": None, "timed_on": f"{timed_on}; not timed: {type(exc).__name__}: {_first_line(exc)}"}
    fp32, other = (float(np.median(t)) for t in times)
    return {"speedup": round(fp32 / other, 3) if other > 0 else None, "timed_on": timed_on}


MEMORY_PROBE_BYTES = 4 << 20
"""Model input bytes of the smaller of :func:`memory_per_example`'s two calls (the larger is twice it)."""


def _status_bytes(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) * 1024
    raise OSError(f"/proc/self/status has no {key}")


def memory_per_example(model: Path, sample: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Working memory of one ONNX Runtime call per example of ``model``, beyond its inputs: activations and
    the kernels' own buffers (a GRU keeps every step's gates), which the inputs' size does not show.

    Measured, not estimated: a session with ORT's memory arena off (every buffer is allocated and freed
    per call) runs ``sample`` repeated to two sizes (:data:`MEMORY_PROBE_BYTES` of inputs, and twice that);
    the process's peak resident memory is reset before each call (``/proc/self/clear_refs``), and the
    growth of the peak between the two calls, per added example, is the result (fixed costs cancel).
    Linux only. Returns ``{"bytes_per_example": int | None, "memory_measured_on": str}``; never raises
    (the figure is advice for scoring's batch size).
    """
    import numpy as np

    from verticals.ort import open_session, session_options

    if not sample:
        return {"bytes_per_example": None, "memory_measured_on": "not measured: no model inputs"}
    rows = len(next(iter(sample.values())))
    row_bytes = sum(a.nbytes // max(1, a.shape[0]) for a in sample.values()) or 1
    small = int(min(8192, max(64, MEMORY_PROBE_BYTES // row_bytes)))
    try:
        clear = Path("/proc/self/clear_refs")
        options = session_options(threads=1)
        options.enable_cpu_mem_arena = False
        session = open_session(model, options=options)
        wanted = {i.name for i in session.get_inputs()}

        def feed(n: int) -> dict[str, np.ndarray]:
            take = np.resize(np.arange(rows), n)
            return {k: np.ascontiguousarray(v[take]) for k, v in sample.items() if k in wanted}

        session.run(None, feed(16))  # warm-up: kernel selection, one-off allocations
        peaks = {}
        for n in (small, 2 * small):
            inputs = feed(n)
            base = _status_bytes("VmRSS:")
            clear.write_text("5")  # resets VmHWM to the current resident size
            session.run(None, inputs)
            peaks[n] = max(0, _status_bytes("VmHWM:") - base)
            del inputs
    except Exception as exc:
        return {"bytes_per_example": None,
                "memory_measured_on": f"not measured: {type(exc).__name__}: {_first_line(exc)}"}
    slope = (peaks[2 * small] - peaks[small]) / small
    per = slope if slope > 0 else peaks[2 * small] / (2 * small)
    return {"bytes_per_example": round(per),
            "memory_measured_on": f"CPU provider, arena off, {small} and {2 * small} examples per call"}


def build_variants(
    source: Path,
    evaluate: Evaluator,
    reference: float,
    *,
    kinds: Sequence[str] = VARIANTS,
    tolerance: float = VARIANT_TOLERANCE,
    metric_name: str = "metric",
    sample: Mapping[str, np.ndarray] | None = None,
) -> dict[str, dict[str, Any]]:
    """Make each variant of ``source`` next to it and keep those whose metric stays within ``tolerance``.

    Args:
        source: the fp32 ``model.onnx``.
        evaluate: computes the pipeline's primary metric on the test split through a given ONNX file.
        reference: the fp32 model's value of that metric, computed the same way.
        kinds: variants to try (``int8``, ``fp16``).
        tolerance: max |Δ metric| for acceptance.
        metric_name: the metric's name, for the record.
        sample: model inputs (a slice of the test split) on which an accepted int8 variant is timed
            against ``source`` (:func:`relative_speed`); the record's ``speedup`` and ``timed_on``.

    Returns:
        ``{kind: {"file", "metric", "metric_name", "delta", "tolerance", "accepted", "reason", "provider",
        "bytes", "seconds"[, "speedup", "timed_on"]}}``. ``file`` is the variant's file name when it is accepted (and left in
        ``source``'s folder) and ``None`` otherwise (the file is deleted, so it is never registered).
    """
    import math

    out: dict[str, dict[str, Any]] = {}
    gpu = cuda_provider_available() if "fp16" in kinds else False
    for kind in kinds:
        if kind not in VARIANTS:
            raise UserError(f"unknown model variant {kind!r}", hint=f"use one of {', '.join(VARIANTS)}")
        target = source.with_name(f"{source.stem}.{kind}.onnx")
        started = time.perf_counter()
        record: dict[str, Any] = {"file": None, "metric": None, "metric_name": metric_name, "delta": None,
                                  "tolerance": tolerance, "accepted": False, "reason": "", "provider": None}
        try:
            if kind == "int8":
                quantize_int8(source, target)
                providers: list[str] = ["CPUExecutionProvider"]
            else:
                convert_fp16(source, target)
                providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if gpu else ["CPUExecutionProvider"]
            metric, provider = evaluate(target, providers)
            delta = float(metric) - float(reference)
            record.update(metric=float(metric), delta=delta, provider=provider, bytes=target.stat().st_size)
            within = math.isfinite(delta) and abs(delta) <= tolerance
            if kind == "fp16" and provider != "CUDAExecutionProvider":
                record["reason"] = ("not verified: no CUDA GPU here; the CPU provider upcasts fp16 ops to "
                                    "float32, so this metric does not test GPU fp16 arithmetic; not registered")
            elif within:
                record.update(accepted=True, file=target.name,
                              reason=f"|Δ {metric_name}| = {abs(delta):.4g} ≤ {tolerance:g} on {provider}")
                if kind == "int8" and sample is not None:
                    record.update(relative_speed(source, target, sample))
            else:
                record["reason"] = f"|Δ {metric_name}| = {abs(delta):.4g} > {tolerance:g} on {provider}"
        except Exception as exc:  # a variant is optional: record why it is missing, keep the fp32 model
            record["reason"] = f"failed: {type(exc).__name__}: {_first_line(exc)}"
        record["seconds"] = round(time.perf_counter() - started, 3)
        if not record["accepted"]:
            target.unlink(missing_ok=True)
        out[kind] = record
    return out
