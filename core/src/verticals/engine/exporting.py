"""Stages export and verify: the ONNX file, its parity with PyTorch, the variants kept."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from verticals.errors import ParityError
from verticals.spec import Batch

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from verticals.pipeline import Pipeline

from verticals.engine.common import _lookup, _notify, _slice_batch, _stage
from verticals.engine.results import _PREDICT_BATCH, PARITY_BYTES, PARITY_ROWS, ExportResult

if TYPE_CHECKING:  # pragma: no cover
    from verticals.engine.results import Evaluation, FitResult


def _onnx_outputs(session: Any, inputs: Mapping[str, np.ndarray], batch_size: int = _PREDICT_BATCH
                  ) -> dict[str, np.ndarray]:
    import numpy as np

    names = [o.name for o in session.get_outputs()]
    feeds_names = [i.name for i in session.get_inputs()]
    n = next(iter(inputs.values())).shape[0] if inputs else 0
    parts: list[list[np.ndarray]] = [[] for _ in names]
    for start in range(0, max(n, 1), batch_size):
        feeds = {k: np.ascontiguousarray(inputs[k][start:start + batch_size]) for k in feeds_names}
        for i, out in enumerate(session.run(None, feeds)):
            parts[i].append(out)
    return {name: np.concatenate(chunks) for name, chunks in zip(names, parts, strict=True)}


def _primary_metric_via_onnx(pipe: Pipeline, evaluation: Evaluation, path: Path,
                             providers: list[str] | tuple[str, ...], fitted: FitResult | None = None
                             ) -> tuple[float, str]:
    """The pipeline's primary metric on the test split, computed through the ONNX file ``path``
    (batch by batch from ``evaluation.test_frame`` for a streamed preprocessor)."""
    import polars as pl

    from verticals import artifacts as named
    from verticals.ort import open_session
    from verticals.spec import ScoringContext
    from verticals.training import postprocess_checked, split_metrics

    session = open_session(path, providers)
    context = ScoringContext(evaluation.extras, named.load(Path(evaluation.workdir), evaluation.artifacts))
    if evaluation.test_frame is None or fitted is None:
        stream = [evaluation.test_batch]
    else:
        from verticals.data.examples import Examples

        pre = fitted.modules()[0]
        stream = Examples(pre, evaluation.test_frame, name="test",
                          chunk_rows=pre.chunk_rows or pipe.training.batch_size).batches(_PREDICT_BATCH)
    preds, lights = [], []
    for batch in stream:
        if not len(batch):
            continue
        outputs = _onnx_outputs(session, batch.inputs)
        preds.append(postprocess_checked(pipe, outputs, batch, context))
        lights.append(batch.light())
    metrics = split_metrics(pipe, pl.concat(preds, how="vertical_relaxed"), Batch.concat(lights))
    return float(metrics[pipe.primary_metric]), session.get_providers()[0]


def export(pipeline: str, fitted: FitResult, evaluation: Evaluation, workdir: Path, *,
           variants: tuple[str, ...] | None = None) -> ExportResult:
    """Export to ``workdir/model.onnx``, check parity on held-out rows (stage ``verify``), make variants.

    Args:
        variants: variant kinds to try (default :data:`verticals.export.VARIANTS`; ``()`` for none).

    Raises:
        ParityError: ONNX Runtime's outputs differ from PyTorch's by more than the tolerance.
    """
    from verticals import export as ex

    started = time.perf_counter()
    with _stage(pipeline, "export"):
        pipe, _, spec = _lookup(pipeline)
        pre, graph, model = fitted.modules()
        signature = pre.signature()
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        scorer = spec.scoring(model).eval() if spec.scoring is not None else model
        path = ex.export_onnx(graph, scorer, signature, tuple(spec.exported_outputs), evaluation.example,
                              workdir / "model.onnx", opset=ex.OPSET)
        exporter = ex.onnx_exporter(path)
    with _stage(pipeline, "verify"):
        test = evaluation.test_batch
        row_bytes = sum(a.nbytes // max(1, a.shape[0]) for a in test.inputs.values()) or 1
        rows = min(PARITY_ROWS, len(test), max(3, PARITY_BYTES // row_bytes))
        if rows == len(next(iter(evaluation.example.values()))):
            rows = rows - 1 if rows > 2 else rows + 1
        rows = max(1, min(rows, len(test)))
        parity = ex.check_parity(path, ex.compose(graph, scorer, list(signature)), _slice_batch(test, rows),
                                 kinds=dict(spec.parity))
        parity.update(exporter=exporter, opset=ex.OPSET)
        if not parity["passed"]:
            worst = max(parity["outputs"].items(), key=lambda kv: kv[1]["max_abs_diff"] - kv[1]["limit"])[0] \
                if parity["outputs"] else "?"
            raise ParityError(
                f"{pipe.qualified_name}: ONNX Runtime differs from PyTorch by {parity['max_abs_diff']:.3g} on "
                f"output '{worst}' over {parity['rows']} test rows (tolerance {parity['tolerance']:g}); "
                f"model kept at {path} for inspection",
                hint="look for ops that export differently (in-place updates, data-dependent control flow, "
                     "train-mode layers) in the model's forward")
        _notify("after_export", pipeline=pipe.qualified_name, path=path, parity=parity)
    with _stage(pipeline, "export"):
        kinds = ex.VARIANTS if variants is None else tuple(variants)
        made: dict[str, dict[str, Any]] = {}
        if kinds:
            reference, _ = _primary_metric_via_onnx(pipe, evaluation, path, ["CPUExecutionProvider"], fitted)
            made = ex.build_variants(
                path, lambda p, providers: _primary_metric_via_onnx(pipe, evaluation, p, list(providers), fitted),
                reference, kinds=kinds, metric_name=pipe.primary_metric, sample=test.inputs)
            for record in made.values():
                record["reference"] = reference
        # What one example costs a scoring call beyond its inputs: scoring sizes its batches with it.
        memory = ex.memory_per_example(path, test.inputs)
        return ExportResult(
            pipeline=pipe.qualified_name, workdir=workdir, model_file=path.name,
            signature={"inputs": {k: v.to_dict() for k, v in signature.items()},
                       "outputs": list(spec.exported_outputs), **memory},
            parity=parity, variants=made, exporter=exporter, opset=ex.OPSET,
            seconds=round(time.perf_counter() - started, 3))
