"""The training loop: graph module (imputation, scaling) → model, trained end to end.

What it guarantees:

* **Reproducible**: the same seed and data give the same weights and metrics on the CPU. The seed
  fixes Python's, numpy's and torch's generators, and the mini-batch order comes from a dedicated
  ``torch.Generator``. Call :func:`seed_everything` before building the model too, so its initial
  weights are fixed (the engine does). On CUDA, results can differ in the last bits between runs.
* **Early stopping** on the validation split's ``pipeline.primary_metric``, computed the way users see
  it: outputs → ``pipeline.postprocess`` → ``pipeline.metrics``. The best epoch's weights are restored.
* **Class weighting** (``class_weighting=True``, off by default): classes weighted by
  ``n / (K · n_class)`` on the training split; for a binary task this becomes BCE's
  ``pos_weight = n_negative / n_positive``. It biases predicted probabilities towards the minority
  class, so it is off unless a pipeline asks for it (and then calibrates, or treats scores as ranks).
* **Mixed precision** only on CUDA (bf16 where supported, else fp16 with a gradient scaler); the loss is
  always computed in float32. Evaluation runs in float32, the precision the ONNX export is checked at.

torch is imported inside the functions: importing this module stays cheap (the CLI's ``--help``).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from verticals.errors import PluginError, UserError
from verticals.spec import Batch, DatasetSpec, Preprocessor

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import polars as pl
    import torch

    from verticals.pipeline import Pipeline  # its default loss lives here: type-only to avoid a cycle

__all__ = [
    "FitOutput",
    "TrainContext",
    "class_weights",
    "clean_metrics",
    "default_loss",
    "evaluate_split",
    "fit_model",
    "postprocess_checked",
    "predict_examples",
    "predict_outputs",
    "seed_everything",
    "select_device",
    "split_metrics",
]

log = logging.getLogger("verticals.training")


@dataclass
class FitOutput:
    """What :func:`fit_model` returns: the model with the best epoch's weights (on the CPU, eval mode),
    one history row per epoch, the best epoch (1-based) and the wall time."""

    model: Any
    history: list[dict[str, float]]
    best_epoch: int
    seconds: float
    device: str = "cpu"
    stopped_early: bool = False


@dataclass
class TrainContext:
    """Everything known after training, handed to ``Pipeline.fit_extras`` and ``report_sections``.

    Attributes:
        pipeline, dataset: what was trained, on what.
        splits: the raw (validated) frames of each split (:class:`verticals.data.splits.Splits`).
        batches: ``{"train", "valid", "test"}`` → :class:`Batch`.
        outputs: split → model outputs by name (numpy).
        predictions: split → the frame :meth:`Pipeline.postprocess` returned.
        metrics: split → metric name → value.
        history: one row per epoch (see :func:`fit_model`).
        preprocessor: the fitted preprocessor.
        workdir: folder for plots and files the report links to.
        extras: filled with what ``fit_extras`` returned.
        model, graph_module: the trained torch modules (CPU), for pipelines that need them.
        crossfit: on small data, the :class:`verticals.crossfit.CrossFit` record (out-of-fold outputs
            of the pooled training and validation rows); ``None`` otherwise.
    """

    pipeline: Pipeline
    dataset: DatasetSpec
    splits: Any
    batches: dict[str, Batch]
    outputs: dict[str, dict[str, np.ndarray]]
    predictions: dict[str, pl.DataFrame]
    metrics: dict[str, dict[str, float]]
    history: list[dict[str, float]]
    preprocessor: Preprocessor
    workdir: Path
    extras: dict[str, Any] = field(default_factory=dict)
    model: Any = None
    graph_module: Any = None
    crossfit: Any = None


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators (CPU and CUDA)."""
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def select_device(requested: str | None) -> str:
    """``"auto"``/``None`` → ``"cuda"`` when torch sees a GPU, else ``"cpu"``; ``"cuda[:n]"`` must exist.

    Raises:
        UserError: CUDA was asked for but torch cannot use it, or the device name is unknown.
    """
    import torch

    if requested is None or requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cpu":
        return "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(
                f"device '{requested}' was requested but this torch build ({torch.__version__}) sees no CUDA GPU",
                hint="use --device cpu (or auto), or install a CUDA build of torch (README: GPU install)",
            )
        index = requested.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise UserError(
                f"device '{requested}' does not exist; torch sees {torch.cuda.device_count()} GPU(s)",
                hint="use cuda:0 … cuda:N-1, or auto",
            )
        return requested
    raise UserError(f"unknown device '{requested}'", hint="use auto, cpu, cuda or cuda:N")


def class_weights(task: str, target: np.ndarray) -> np.ndarray | None:
    """Balanced class weights ``n / (K · n_class)`` from a training target (``None`` for regression).

    A class absent from the target gets weight 1 (it contributes nothing to the loss anyway).
    """
    import numpy as np

    if task not in ("binary", "multiclass") or target is None or len(target) == 0:
        return None
    from verticals.spec import target_labels

    target = target_labels(target)
    if task == "binary":
        counts = np.array([np.sum(target < 0.5), np.sum(target >= 0.5)], dtype=np.float64)
    else:
        counts = np.bincount(np.asarray(target, dtype=np.int64)).astype(np.float64)
    k = counts.size
    weights = np.ones(k, dtype=np.float64)
    present = counts > 0
    weights[present] = counts.sum() / (k * counts[present])
    return weights.astype(np.float32)


def default_loss(task: str, logits: torch.Tensor, target: torch.Tensor,
                 class_weights: torch.Tensor | None) -> torch.Tensor:
    """The loss by task: binary → BCE with logits (``pos_weight = w1 / w0``), multiclass → weighted
    cross-entropy, regression → mean squared error. Computed in float32 even under autocast."""
    import torch.nn.functional as F

    if task == "binary":
        pos_weight = None
        if class_weights is not None:
            pos_weight = (class_weights[1] / class_weights[0]).float()
        return F.binary_cross_entropy_with_logits(logits.float().reshape(target.shape), target.float(),
                                                  pos_weight=pos_weight)
    if task == "multiclass":
        weight = class_weights.float() if class_weights is not None else None
        return F.cross_entropy(logits.float(), target.long(), weight=weight)
    if task == "regression":
        return F.mse_loss(logits.float().reshape(target.shape), target.float())
    raise PluginError(f"no default loss for task {task!r}", hint="override Pipeline.loss in the pipeline")


def _output_names(pipeline: Pipeline | None, names: Sequence[str] | None, count: int) -> list[str]:
    if names is None and pipeline is not None:
        try:
            from verticals.registry import get_registry

            names = get_registry().model_of(pipeline).outputs
        except Exception:  # a pipeline outside the registry (tests, notebooks)
            names = None
    names = list(names or ("logits",))
    if len(names) < count:
        names += [f"output{i}" for i in range(len(names), count)]
    return names[:count]


def _as_tuple(out: Any) -> tuple[torch.Tensor, ...]:
    import torch

    if isinstance(out, torch.Tensor):
        return (out,)
    if isinstance(out, Mapping):
        return tuple(out.values())
    return tuple(out)


def _forward(model: torch.nn.Module, graph_module: torch.nn.Module | None,
             inputs: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    prepared = graph_module(**inputs) if graph_module is not None else inputs
    return _as_tuple(model(**prepared))


def _to_tensors(inputs: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:

    return {name: _tensor(array) for name, array in inputs.items()}


def _tensor(array: np.ndarray) -> torch.Tensor:
    """A CPU tensor over ``array`` (copied when numpy marks it read-only, as polars' arrays are)."""
    import numpy as np
    import torch

    array = np.ascontiguousarray(array)
    if not array.flags.writeable:
        array = array.copy()
    return torch.from_numpy(array)


def _module_device(module: torch.nn.Module) -> torch.device:
    import torch

    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


def _predict_tensors(model: torch.nn.Module, graph_module: torch.nn.Module | None,
                     inputs: Mapping[str, torch.Tensor], device: torch.device,
                     batch_size: int) -> list[torch.Tensor]:
    """Outputs on the CPU (float32 where floating), computed in chunks, model in eval mode."""
    import torch

    n = next(iter(inputs.values())).shape[0] if inputs else 0
    chunks: list[tuple[torch.Tensor, ...]] = []
    model.eval()
    with torch.inference_mode():
        for start in range(0, max(n, 1), batch_size):
            part = {k: v[start:start + batch_size].to(device, non_blocking=True) for k, v in inputs.items()}
            chunks.append(tuple(o.detach().float().cpu() if o.is_floating_point() else o.detach().cpu()
                                for o in _forward(model, graph_module, part)))
    return [torch.cat([c[i] for c in chunks]) for i in range(len(chunks[0]))]


def predict_outputs(model: torch.nn.Module, graph_module: torch.nn.Module | None, batch: Batch,
                    device: str | None = "cpu", batch_size: int = 65536,
                    names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """The model's outputs for ``batch`` as numpy arrays named by ``names`` (``ModelSpec.outputs``).

    Runs in float32 and eval mode; the modules are returned to the device they were on.
    """
    import torch

    dev = torch.device(select_device(device))
    was = _module_device(model)
    model.to(dev)
    if graph_module is not None:
        graph_module.to(dev).eval()
    try:
        outs = _predict_tensors(model, graph_module, _to_tensors(batch.inputs), dev, batch_size)
    finally:
        model.to(was)
        if graph_module is not None:
            graph_module.to(was)
    labels = _output_names(None, names, len(outs))
    return {name: out.numpy() for name, out in zip(labels, outs, strict=True)}


def postprocess_checked(pipeline: Pipeline, outputs: Mapping[str, np.ndarray], batch: Batch,
                        extras: Mapping[str, Any] | None = None) -> pl.DataFrame:
    """``pipeline.postprocess`` with the checks that make a pipeline that could never score fail at
    training time: the score column and every declared output column present, one row per example."""
    from verticals.spec import ScoringContext

    context = extras if isinstance(extras, ScoringContext) else ScoringContext(extras)
    predictions = pipeline.postprocess(outputs, batch, context)
    if pipeline.score_column not in predictions.columns:
        raise PluginError(
            f"pipeline '{pipeline.qualified_name}': postprocess returned columns {predictions.columns}, "
            f"not the score column '{pipeline.score_column}'",
            hint="set Pipeline.score_column to a column postprocess returns",
        )
    declared = [c.name for c in pipeline.output_columns]
    absent = [name for name in declared if name not in predictions.columns]
    if absent:
        raise PluginError(
            f"pipeline {pipeline.qualified_name}: postprocess did not return output column(s) "
            f"{', '.join(repr(a) for a in absent)}",
            hint=f"return the declared output columns: {', '.join(declared)}",
        )
    if predictions.height != len(batch):
        raise PluginError(
            f"pipeline {pipeline.qualified_name}: postprocess returned {predictions.height} rows for a batch "
            f"of {len(batch)}", hint="return one row per example, in the batch's order")
    return predictions


def clean_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Metrics as JSON numbers: floats, or (structured metrics) dicts of floats, recursively."""
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, Mapping):
            out[str(key)] = clean_metrics(value)
        else:
            out[str(key)] = float(value)
    return out


def split_metrics(pipeline: Pipeline, predictions: pl.DataFrame, batch: Batch) -> dict[str, Any]:
    """``pipeline.evaluate`` on one split (``{}`` without targets or examples)."""
    if batch.target is None or len(batch) == 0:
        return {}
    return clean_metrics(pipeline.evaluate(predictions, batch))


def evaluate_split(pipeline: Pipeline, outputs: Mapping[str, np.ndarray], batch: Batch,
                   extras: Mapping[str, Any] | None = None) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Predictions (``pipeline.postprocess``) and metrics (``pipeline.evaluate``) of one split's outputs."""
    predictions = postprocess_checked(pipeline, outputs, batch, extras)
    return predictions, split_metrics(pipeline, predictions, batch)


@dataclass
class Predicted:
    """One split run through a module: outputs (concatenated), postprocessed predictions and the
    examples without their inputs (ids, target, aux), all in the same order."""

    outputs: dict[str, np.ndarray]
    predictions: pl.DataFrame
    batch: Batch


def predict_examples(pipeline: Pipeline, module: torch.nn.Module, graph_module: torch.nn.Module | None,
                     examples: Any, *, device: str | None = "cpu", batch_size: int = 65536,
                     names: Sequence[str] | None = None, extras: Mapping[str, Any] | None = None,
                     keep_outputs: bool = True) -> Predicted:
    """Run ``examples`` (:class:`~verticals.data.examples.Examples` or a :class:`Batch`) through
    ``graph_module → module`` batch by batch, postprocess each batch, and collect the results.

    Model inputs are dropped after each batch, so memory holds only outputs and predictions.
    """
    import numpy as np
    import polars as pl

    from verticals.data.examples import Examples

    stream = [examples] if isinstance(examples, Batch) else None
    outs: list[dict[str, np.ndarray]] = []
    preds: list[pl.DataFrame] = []
    lights: list[Batch] = []
    source = stream if stream is not None else examples.batches(batch_size)
    for batch in source:
        if not len(batch):
            continue
        out = predict_outputs(module, graph_module, batch, device=device, batch_size=batch_size, names=names)
        preds.append(postprocess_checked(pipeline, out, batch, extras))
        if keep_outputs:
            outs.append(out)
        lights.append(batch.light())
    if not lights:
        empty = examples.batch() if isinstance(examples, Examples) and examples.materialized else None
        if empty is None and isinstance(examples, Batch):
            empty = examples
        light = empty.light() if empty is not None else Batch(ids=pl.DataFrame(), inputs={})
        return Predicted({}, pl.DataFrame(), light)
    outputs = {k: np.concatenate([o[k] for o in outs]) for k in outs[0]} if outs else {}
    predictions = pl.concat(preds, how="vertical_relaxed") if len(preds) > 1 else preds[0]
    return Predicted(outputs, predictions, Batch.concat(lights))


SMALL_MODEL_PARAMETERS = 1_000_000


@contextmanager
def cpu_threads(model: torch.nn.Module, device: str) -> Iterator[int]:
    """Train small models on one CPU thread unless ``VERTICALS_TORCH_THREADS`` says otherwise.

    A tabular model's step is a few milliseconds; with two intra-op threads on a busy 2-core machine
    the synchronisation made steps 7-25x slower (finance credit_risk: 62 s vs 35 s wall). Large models
    and CUDA keep torch's default.
    """
    import torch

    requested = os.environ.get("VERTICALS_TORCH_THREADS", "").strip()
    if requested:
        threads = int(requested)
    elif device.startswith("cpu") and sum(p.numel() for p in model.parameters()) < SMALL_MODEL_PARAMETERS:
        threads = 1
    else:
        yield torch.get_num_threads()
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        yield threads
    finally:
        torch.set_num_threads(previous)


def _loss_value(pipeline: Pipeline, outputs: Sequence[torch.Tensor], target: np.ndarray,
                weights: torch.Tensor | None) -> float:
    import torch

    with torch.no_grad():
        return float(pipeline.loss(tuple(outputs), _tensor(target), weights))


def fit_model(pipeline: Pipeline, model: torch.nn.Module, graph_module: torch.nn.Module | None,
              train: Any, valid: Any, *, epochs: int, batch_size: int, lr: float,
              weight_decay: float, patience: int, seed: int, device: str | None = "auto",
              class_weighting: bool = False, progress: bool = True,
              output_names: Sequence[str] | None = None, model_spec: Any = None,
              stop_on: str = "metric") -> FitOutput:
    """Train ``graph_module → model`` on ``train`` with early stopping on ``valid``.

    Args:
        pipeline: supplies ``task``, ``loss``, ``postprocess``, ``evaluate``, ``primary_metric`` and
            ``greater_is_better``.
        model: built by the model factory (seed it with :func:`seed_everything` first).
        graph_module: the preprocessor's in-graph part (no trainable parameters), or ``None``.
        train, valid: :class:`~verticals.data.examples.Examples` (or whole :class:`Batch` es) with
            targets. A materialized split is transformed once and sliced; a streamed one is transformed
            chunk by chunk every epoch (seeded shuffle, augmentation on training batches only). An empty
            ``valid`` disables early stopping.
        epochs, batch_size, lr, weight_decay: AdamW training settings.
        patience: epochs without improvement of the primary metric before stopping (≤ 0: never stop).
        seed: fixes the generators and the mini-batch order.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``; validation runs there too.
        class_weighting: weight classes by inverse frequency (classification tasks).
        progress: show a progress bar (only when stdout is a terminal).
        output_names: names of the model's outputs (``ModelSpec.outputs``); looked up in the registry
            when ``None``.
        model_spec: the :class:`~verticals.spec.ModelSpec`; its ``scoring`` wrapper (if any) computes
            the validation metrics, as evaluation and scoring will.
        stop_on: what early stopping and the kept epoch follow: ``"metric"`` (the pipeline's primary
            metric) or ``"loss"`` (the validation loss, lower is better: smoother than a ranking metric
            on a few hundred rows, and what probability scores such as the Brier score reward).

    A model may define ``penalty(rows: int) -> torch.Tensor`` (a scalar): a regularisation term added to
    every training step's loss. ``rows`` is the number of training rows, so a penalty ``λ·P(θ)`` meant
    for the whole-data objective ``Σ_i loss_i + λ·P(θ)`` returns ``λ·P(θ) / rows`` (the pipeline's loss
    is a mean over the batch): its strength then does not depend on the batch size or on how many steps
    an epoch has, and it weighs less the more rows there are. ``train_loss`` and ``valid_loss`` in the
    history are the pipeline's loss without it.

    Returns:
        :class:`FitOutput`. Each history row has ``epoch``, ``train_loss``, ``valid_loss``,
        ``valid_<metric>`` for every scalar metric of ``pipeline.evaluate``, ``lr`` and ``seconds``.
    """
    import numpy as np
    import torch

    from verticals.data.examples import Examples

    def as_batch(split: Any) -> tuple[Batch | None, Examples | None]:
        if isinstance(split, Batch):
            return split, None
        augmenting = type(split.pre).augment is not Preprocessor.augment
        if split.materialized and not (augmenting and split is train):
            return split.batch(), split
        return None, split

    train_batch, train_stream = as_batch(train)
    valid_batch, valid_stream = as_batch(valid)
    started = time.perf_counter()
    dev_name = select_device(device)
    dev = torch.device(dev_name)
    seed_everything(seed)
    generator = torch.Generator().manual_seed(seed)

    if train_batch is not None:
        targets = train_batch.target
        n = len(train_batch)
    else:
        targets = train_stream.pre.targets(train_stream.frame) if class_weighting else None
        if class_weighting and targets is None:  # one pass over the split, inputs dropped
            targets = np.concatenate([b.target for b in train_stream.batches(batch_size) if len(b)] or [np.zeros(0)])
        n = train_stream.rows
    if n == 0 or (train_batch is not None and train_batch.target is None):
        raise PluginError(
            f"pipeline '{pipeline.qualified_name}': the training batch has no rows or no target",
            hint="check the split sizes and that transform(..., with_target=True) encodes the target",
        )

    model.to(dev)
    if graph_module is not None:
        graph_module.to(dev).eval()
        for parameter in graph_module.parameters():
            parameter.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise PluginError(f"pipeline '{pipeline.qualified_name}': the model has no trainable parameters",
                          hint="check the model factory")
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    scorer = model_spec.scoring(model) if model_spec is not None and model_spec.scoring is not None else None
    score_names = list(model_spec.exported_outputs) if model_spec is not None else None

    weights_np = class_weights(pipeline.task, targets) if class_weighting else None
    weights = torch.from_numpy(weights_np).to(dev) if weights_np is not None else None
    weights_cpu = torch.from_numpy(weights_np) if weights_np is not None else None

    if train_batch is not None:
        x_train = _to_tensors(train_batch.inputs)
        y_train = _tensor(train_batch.target)
    if valid_batch is not None:
        x_valid = _to_tensors(valid_batch.inputs)
        use_valid = valid_batch.target is not None and len(valid_batch) > 0
    else:
        use_valid = valid_stream is not None and valid_stream.rows > 0

    use_amp = dev.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    steps = math.ceil(n / batch_size)
    history: list[dict[str, float]] = []
    best_value: float | None = None
    best_epoch = 0
    best_state: dict[str, torch.Tensor] | None = None
    stale = 0
    stopped_early = False
    metric_name = pipeline.primary_metric
    if stop_on not in ("metric", "loss"):
        raise PluginError(f"pipeline '{pipeline.qualified_name}': early stopping on {stop_on!r}",
                          hint="stop on 'metric' (the primary metric) or 'loss' (the validation loss)")

    penalty = getattr(model, "penalty", None)
    penalty = penalty if callable(penalty) else None

    def step(xb: dict[str, torch.Tensor], yb: torch.Tensor) -> float:
        with torch.autocast(dev.type, dtype=amp_dtype, enabled=use_amp):
            outs = _forward(model, graph_module, xb)
            loss = pipeline.loss(outs, yb, weights)
        objective = loss if penalty is None else loss + penalty(n).float()
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(objective).backward()
        scaler.step(optimizer)
        scaler.update()
        return float(loss.detach())

    def batches_of(epoch: int) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor, int]]:
        if train_batch is not None:
            order = torch.randperm(n, generator=generator)
            for i in range(steps):
                idx = order[i * batch_size:(i + 1) * batch_size]
                yield ({k: v[idx].to(dev, non_blocking=True) for k, v in x_train.items()},
                       y_train[idx].to(dev, non_blocking=True), idx.numel())
            return
        for b in train_stream.batches(batch_size, shuffle=True, seed=seed, epoch=epoch, augment=True):
            yield ({k: _tensor(v).to(dev, non_blocking=True) for k, v in b.inputs.items()},
                   _tensor(b.target).to(dev, non_blocking=True), len(b))

    def validate() -> tuple[float, dict[str, Any]]:
        if valid_batch is not None:
            out_tensors = _predict_tensors(model, graph_module, x_valid, dev, max(batch_size, 8192))
            # Named by what the model returns in eval mode: outputs it adds in training only
            # (auxiliary heads for the loss) are never predictions.
            train_names = _output_names(pipeline, output_names, len(out_tensors))
            loss = _loss_value(pipeline, out_tensors, valid_batch.target, weights_cpu)
            if scorer is None:
                outputs = {name: t.numpy() for name, t in zip(train_names, out_tensors, strict=True)}
            else:
                outputs = predict_outputs(scorer, graph_module, valid_batch, device=dev_name,
                                          batch_size=max(batch_size, 8192), names=score_names)
                model.to(dev)
            return loss, evaluate_split(pipeline, outputs, valid_batch)[1]
        total, count, returned = 0.0, 0, 1
        for b in valid_stream.batches(max(batch_size, 1)):
            if not len(b):
                continue
            outs = _predict_tensors(model, graph_module, _to_tensors(b.inputs), dev, max(batch_size, 8192))
            returned = len(outs)
            total += _loss_value(pipeline, outs, b.target, weights_cpu) * len(b)
            count += len(b)
        predicted = predict_examples(pipeline, scorer or model, graph_module, valid_stream, device=dev_name,
                                     batch_size=max(batch_size, 1), names=score_names if scorer else
                                     _output_names(pipeline, output_names, returned),
                                     keep_outputs=False)
        model.to(dev)
        return total / max(count, 1), split_metrics(pipeline, predicted.predictions, predicted.batch)

    bar = _progress_bar(progress)
    with bar:
        task = bar.add_task(f"training {pipeline.qualified_name}", total=epochs * steps, loss=math.nan,
                            metric=math.nan, metric_name=metric_name, epoch=0, epochs=epochs)
        for epoch in range(1, epochs + 1):
            epoch_started = time.perf_counter()
            model.train()
            total_loss, seen = 0.0, 0
            for xb, yb, count in batches_of(epoch):
                if count < 2 and n >= 2:
                    continue  # a batch of one breaks BatchNorm; its row is seen in other epochs
                total_loss += step(xb, yb) * count
                seen += count
                bar.update(task, advance=1, epoch=epoch)
            row: dict[str, float] = {"epoch": epoch, "train_loss": total_loss / max(seen, 1)}
            value = math.nan
            if use_valid:
                row["valid_loss"], metrics = validate()
                if metric_name not in metrics or isinstance(metrics[metric_name], Mapping):
                    raise PluginError(
                        f"pipeline '{pipeline.qualified_name}': primary metric '{metric_name}' is not among "
                        f"its scalar metrics ({', '.join(metrics)})",
                        hint="set Pipeline.primary_metric to a scalar key Pipeline.evaluate returns",
                    )
                row.update({f"valid_{k}": float(v) for k, v in metrics.items() if not isinstance(v, Mapping)})
                value = float(metrics[metric_name])
                if stop_on == "loss":
                    value = float(row["valid_loss"])
            row["lr"] = float(optimizer.param_groups[0]["lr"])
            row["seconds"] = time.perf_counter() - epoch_started
            history.append(row)
            bar.update(task, loss=row["train_loss"], metric=value)
            log.info("epoch %d/%d train_loss=%.5f valid_%s=%.5f", epoch, epochs, row["train_loss"],
                     metric_name, value)

            if _improved(value, best_value, pipeline.greater_is_better and stop_on != "loss") or best_state is None:
                best_value = value if not math.isnan(value) else best_value
                best_epoch = epoch
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                stale = 0
            else:
                stale += 1
            if use_valid and patience > 0 and stale >= patience:
                stopped_early = epoch < epochs
                break
        bar.update(task, completed=epochs * steps)

    if best_state is not None and use_valid:
        model.load_state_dict(best_state)
    elif not use_valid:
        best_epoch = len(history)
    model.to("cpu").eval()
    if graph_module is not None:
        graph_module.to("cpu")
    return FitOutput(model=model, history=history, best_epoch=best_epoch,
                     seconds=time.perf_counter() - started, device=dev_name, stopped_early=stopped_early)


def _improved(value: float, best: float | None, greater_is_better: bool) -> bool:
    if math.isnan(value):
        return False
    if best is None:
        return True
    return value > best if greater_is_better else value < best


def _progress_bar(enabled: bool) -> Any:
    """A rich progress bar with the epoch, loss and validation metric; a no-op off a terminal."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    return Progress(
        TextColumn("[bold]{task.description}"),
        TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}  {task.fields[metric_name]} {task.fields[metric]:.4f}"),
        TimeElapsedColumn(),
        console=console,
        disable=not (enabled and console.is_terminal),
        transient=False,
    )
