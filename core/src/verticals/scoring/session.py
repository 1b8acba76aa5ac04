"""A scoring session: one verified model version, its preprocessor and an ONNX Runtime session.

Opening one does the expensive, once-per-run work (sha256 check of the model files, ORT graph
optimisation, GPU buffers) so that :func:`verticals.scoring.score_partition` can be called for many
partitions. A session pickles as its opening arguments, so a flow can hand it to another process,
which reopens it there.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from verticals.errors import NotFoundError, PluginError, UserError
from verticals.manifest import ModelManifest
from verticals.spec import Preprocessor, Schema, ScoringContext

if TYPE_CHECKING:  # pragma: no cover
    from verticals.pipeline import Pipeline

log = logging.getLogger("verticals.scoring")

__all__ = ["VARIANTS", "ScoringSession"]

VARIANTS = ("fp32", "int8", "fp16", "auto")
DEFAULT_BATCH_SIZE = 65536
BATCH_BYTES = 256 << 20
"""Default memory budget of one batch (``VERTICALS_BATCH_BYTES`` overrides): its model inputs plus the
working memory the model's call needs for them. The batch size in rows is lowered to fit it, so
224×224×3 images do not ask for tens of GB of pinned memory, nor a GRU over 24-step windows for a GB of
gate buffers per call."""


def batch_rows(requested: int, signature: dict[str, Any], budget: int | None = None) -> int:
    """Rows per model batch: ``requested``, lowered so that one batch stays within ``budget`` bytes: its
    inputs (from the manifest's signature: dtype and per-example shape) plus the call's working memory
    per example that registration measured (``signature["bytes_per_example"]``,
    :func:`verticals.export.memory_per_example`; absent in older manifests)."""
    import os

    import numpy as np

    if budget is None:
        budget = int(os.environ.get("VERTICALS_BATCH_BYTES", "0") or 0) or BATCH_BYTES
    per_row = 0
    for spec in (signature.get("inputs") or {}).values():
        shape = [int(d) for d in spec.get("shape", [])[1:]]
        width = int(np.prod([d for d in shape if d > 0])) if shape else 1
        per_row += width * np.dtype(spec.get("dtype", "float32")).itemsize
    per_row += int(signature.get("bytes_per_example") or 0)
    if per_row <= 0:
        return requested
    return max(1, min(requested, budget // per_row))


def scoring_params(pipe: Pipeline, extras: Mapping[str, Any], params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The run's scoring parameters checked against the pipeline's declaration, defaults filled in."""
    declared = {p.name: p for p in (pipe.scoring_parameters(extras) or ())}
    given = dict(params or {})
    name = pipe.qualified_name
    for key in given:
        if key not in declared:
            takes = ", ".join(f"{p.name} ({p.description})" for p in declared.values())
            raise UserError(f"pipeline {name} has no scoring parameter '{key}'",
                            hint=f"its parameters: {takes}" if takes else "it takes no scoring parameters; drop it")
    values: dict[str, Any] = {}
    for key, spec in declared.items():
        raw = given.get(key, spec.default)
        try:
            value = int(raw)
            if isinstance(raw, float | str) and str(raw).strip() not in (str(value), f"{value}.0"):
                raise ValueError(raw)
        except (TypeError, ValueError):
            raise UserError(f"scoring parameter {key}={raw!r} of pipeline {name} is not an integer",
                            hint=f"pass a whole number: {key} is {spec.description}") from None
        if spec.minimum is not None and value < spec.minimum:
            raise UserError(f"scoring parameter {key}={value} of pipeline {name} is below its minimum {spec.minimum}",
                            hint=f"pass {key} from {spec.minimum}"
                                 + (f" to {spec.maximum}" if spec.maximum is not None else "")
                                 + f" ({spec.description})")
        if spec.maximum is not None and value > spec.maximum:
            why = f" ({spec.maximum_reason})" if spec.maximum_reason else ""
            raise UserError(f"scoring parameter {key}={value} of pipeline {name} is larger than its maximum "
                            f"{spec.maximum}{why}", hint=f"pass {key} of at most {spec.maximum}")
        values[key] = value
    return values


@dataclasses.dataclass(eq=False)
class ScoringSession:
    """Everything needed to score partitions with one model version.

    Attributes:
        pipeline: the registered pipeline object (its ``postprocess`` makes the output columns).
        version: the verified :class:`~verticals.store.ModelVersion`.
        schema: the model's input schema (``manifest["input_schema"]``).
        preprocessor: fitted from ``manifest["preprocessor"]``.
        variant: ``fp32`` (``model.onnx``), ``int8`` or ``fp16``: what ``auto`` (the default) chose, or
            what was asked for; ``variant_reason`` says why.
        runtime: the ORT session, the provider that actually runs it and the runner.
        batch_size: rows per model call.
        target: the dataset's target column, which scoring input may carry (ignored without a warning).
    """

    pipeline: Pipeline
    version: Any
    schema: Schema
    preprocessor: Preprocessor
    vocabularies: dict[str, list[str]]
    extras: dict[str, Any]
    context: ScoringContext
    variant: str
    model_file: str
    runtime: Any
    batch_size: int
    output_names: list[str]
    open_args: dict[str, Any]
    target: str | None = None
    variant_reason: str = ""
    """Why this variant scores (``auto``'s choice, or ``asked for``); in the run's manifest."""

    # -- opening -------------------------------------------------------------------------------------
    @classmethod
    def open(cls, pipeline: str, model: str | int | None = None, device: str = "auto",
             batch_size: int = DEFAULT_BATCH_SIZE, home: Path | str | None = None, *,
             variant: str = "auto", threads: int | None = None,
             params: Mapping[str, Any] | None = None) -> ScoringSession:
        """Load and verify ``pipeline``'s model ``model`` (version, alias, ``latest``; default: the
        ``production`` alias, else the latest) and open it on ``device`` (``auto``, ``cpu``, ``cuda``).

        Raises:
            NotFoundError: unknown pipeline, version or alias.
            ModelIntegrityError: a model file does not match the sha256 in its manifest.
            UserError: a bad option (batch size, variant, device), or a scoring parameter the pipeline
                does not declare or whose value is out of its bounds (``params``, see
                :meth:`~verticals.pipeline.Pipeline.scoring_parameters`).
        """
        from verticals import artifacts as named
        from verticals.registry import get_registry
        from verticals.scoring.runtime import open_runtime, resolve_device
        from verticals.store import ModelStore

        if not isinstance(batch_size, int) or batch_size < 1:
            raise UserError(f"invalid batch size {batch_size!r}", hint="use a positive number of rows, e.g. 65536")
        if variant not in VARIANTS:
            raise UserError(f"unknown model variant {variant!r}", hint=f"use one of {', '.join(VARIANTS)}")
        registry = get_registry()
        pipe = registry.pipeline(pipeline)
        name = pipe.qualified_name
        args = {"pipeline": pipeline, "model": model, "device": device, "batch_size": batch_size,
                "home": str(home) if home is not None else None, "variant": variant, "threads": threads,
                "params": dict(params) if params else None}
        version = ModelStore(home).load(name, model)
        manifest = version.info
        schema = _input_schema(manifest, registry, pipe)
        values = scoring_params(pipe, manifest.extras, params)
        preprocessor = _preprocessor(pipe, registry, manifest, schema, version.path)
        target = resolve_device(device)
        chosen, model_file, why = _pick_variant(version, variant, target)
        signature = manifest.signature
        requested = batch_size
        batch_size = batch_rows(batch_size, signature)
        if batch_size < requested:
            log.info("%s: batch size lowered from %d to %d rows to keep a batch's inputs and working memory "
                     "within %d MiB",
                     name, requested, batch_size, (int(os.environ.get("VERTICALS_BATCH_BYTES", "0") or 0)
                                                   or BATCH_BYTES) >> 20)
        in_dtypes = {k: v.get("dtype") for k, v in (signature.get("inputs") or {}).items()}
        outputs = list(signature.get("outputs") or []) or None

        def start(file: str, dev: str) -> Any:
            return open_runtime(version.file(file), dev, batch_size, threads=threads, output_names=outputs,
                                input_dtypes=in_dtypes)

        runtime = start(model_file, device)
        if variant == "auto" and runtime.device != target:  # CUDA did not load: the CPU's choice instead
            again, again_file, why = _pick_variant(version, "auto", runtime.device)
            if again_file != model_file:
                runtime.close()
                runtime = start(again_file, "cpu")
            chosen, model_file = again, again_file
        log.info("%s (%s, %s: %s) on %s", version.label, chosen, model_file, why, runtime.provider)
        dataset_target = registry.dataset_of(pipe).schema.target
        return cls(pipeline=pipe, version=version, schema=schema, preprocessor=preprocessor,
                   vocabularies=dict(preprocessor.vocabularies() or {}), extras=dict(manifest.extras),
                   context=ScoringContext(manifest.extras, named.load(version.path, manifest.named_artifacts),
                                          params=values),
                   variant=chosen, model_file=model_file, runtime=runtime, batch_size=batch_size,
                   output_names=outputs or [o.name for o in runtime.session.get_outputs()], open_args=args,
                   target=dataset_target.name if dataset_target is not None else None, variant_reason=why)

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle as the opening arguments: ORT sessions and GPU buffers do not travel."""
        return (_reopen, (self.open_args,))

    def close(self) -> None:
        """Release the runner's threads and pinned buffers."""
        self.runtime.close()

    def __enter__(self) -> ScoringSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- facts -----------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """Qualified pipeline name."""
        return self.version.pipeline

    @property
    def model_version(self) -> int:
        return int(self.version.version)

    @property
    def device(self) -> str:
        return self.runtime.device

    @property
    def provider(self) -> str:
        return self.runtime.provider

    @property
    def run_key(self) -> dict[str, Any]:
        """What makes recorded partition results reusable: the same model files and variant."""
        return {"pipeline": self.name, "model_version": self.model_version, "variant": self.variant,
                "model_sha256": self.version.artifacts.get(self.model_file, ""),
                "schema": self.schema.to_dict()}

    def model_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """The preprocessor's arrays as the graph takes them: signature dtypes, C-contiguous.

        Raises:
            PluginError: an input the graph needs is missing from the preprocessor's output.
        """
        from verticals.scoring.runtime import as_input

        runner = self.runtime.runner
        missing = [n for n in runner.input_names if n not in inputs]
        if missing:
            raise PluginError(f"pipeline {self.name}: preprocessor produced no input(s) {', '.join(missing)} "
                              f"for {self.model_file}", hint="make transform() return the signature's inputs")
        return {n: as_input(inputs[n], runner.input_dtypes.get(n)) for n in runner.input_names}

    def describe(self) -> dict[str, Any]:
        return {"pipeline": self.name, "model_version": self.model_version, "variant": self.variant,
                "variant_reason": self.variant_reason, "model_file": self.model_file, "batch_size": self.batch_size,
                **self.runtime.describe()}


def _reopen(args: dict[str, Any]) -> ScoringSession:
    args = dict(args)
    return ScoringSession.open(args.pop("pipeline"), args.pop("model"), args.pop("device"),
                               args.pop("batch_size"), args.pop("home"), **args)


def _input_schema(manifest: ModelManifest, registry: Any, pipe: Pipeline) -> Schema:
    """The schema the model was trained with; the plugin's current one only for manifests without it."""
    return manifest.schema or registry.dataset_of(pipe).schema.without_target()


def _preprocessor(pipe: Pipeline, registry: Any, manifest: ModelManifest, schema: Schema,
                  version_dir: Path | None = None) -> Preprocessor:
    """The pipeline's preprocessor for the model's schema, with the fitted state from the manifest (its
    large values read from ``version_dir``, :func:`verticals.artifacts.load_state`)."""
    dataset = registry.dataset_of(pipe)
    # Built as the engine builds it (the dataset's schema, target included) but from the model's columns.
    target = dataset.schema.target
    full = Schema((*schema.columns, target)) if target is not None and target.name not in schema else schema
    pre = pipe.preprocessor(dataclasses.replace(dataset, schema=full))
    state = manifest.preprocessor
    if state is None:
        raise NotFoundError(f"{pipe.qualified_name} v{manifest.version}: manifest has no preprocessor state",
                            hint=f"retrain with `verticals train {pipe.qualified_name}`")
    if version_dir is not None:
        from verticals.artifacts import load_state

        state = load_state(state, version_dir)
    pre.load_state(state)
    if getattr(pre, "order", None) == "F":
        # TabularPreprocessor: ORT needs row-major inputs; building them directly is cheaper than
        # transposing column-major ones later (see verticals.data.tabular).
        pre.order = "C"
    return pre


def _default_file(manifest: ModelManifest) -> str:
    return str(manifest.model_file or "model.onnx")


def _preferred(device: str) -> str:
    return "fp16" if device == "cuda" else "int8"


INT8_MIN_SPEEDUP = 1.1
"""``auto`` scores with int8 only when registration timed it at least this many times as fast as fp32
(on a CPU with fast int8 kernels): a smaller gain does not pay for scores that differ from fp32's."""


def _pick_variant(version: Any, variant: str, device: str) -> tuple[str, str, str]:
    """(variant name, file, why) for ``variant``.

    ``auto`` (the default) takes fp16 on CUDA, and int8 on a CPU with fast int8 kernels (VNNI, ARM dot
    product: :func:`~verticals.scoring.runtime.fast_int8`), when that variant passed the metric gate at
    registration; fp32 otherwise. Measured on the reference MLP with AVX-512 VNNI, int8 scores 2.4x
    faster than fp32; without VNNI it is no faster (bench/README.md), so fp32 stays. Not every graph
    gains: dynamic quantization converts matrix multiplications only (a GRU's recurrence stays float),
    so registration times the accepted int8 file against fp32 on test inputs
    (:func:`verticals.export.relative_speed`); where that ran on a CPU with fast int8 kernels and int8
    was under :data:`INT8_MIN_SPEEDUP` times as fast, ``auto`` keeps fp32 and says why.
    """
    from verticals.scoring.runtime import INT8_FLAGS, fast_int8

    manifest = version.info
    variants = manifest.variants
    if variant == "fp32":
        return "fp32", _default_file(manifest), "asked for"
    if variant == "auto":
        want = _preferred("cuda" if device == "cuda" else "cpu")
        info = variants.get(want) or {}
        if not (info.get("accepted") and info.get("file")):
            why = info.get("reason") if isinstance(info, dict) and info.get("reason") else "not built"
            return "fp32", _default_file(manifest), f"auto: no accepted {want} variant ({why})"
        if want == "int8":
            flag = fast_int8()
            if flag is None:
                return "fp32", _default_file(manifest), ("auto: int8 was accepted but this CPU has no fast int8 "
                                                         f"kernels (none of {', '.join(INT8_FLAGS)})")
            speedup, timed_on = info.get("speedup"), str(info.get("timed_on") or "")
            measured_fast = not timed_on.startswith("no fast int8")  # a CPU like this one timed it
            if (speedup is not None and measured_fast and speedup < INT8_MIN_SPEEDUP
                    and not flag.startswith("VERTICALS_FAST_INT8")):  # forcing int8 skips the check
                return "fp32", _default_file(manifest), (f"auto: int8 was accepted but ran only {speedup:.2f}x "
                                                         f"fp32 when timed at registration ({timed_on})")
            faster = f", {speedup:.2f}x fp32 at registration" if speedup is not None else ""
            return want, str(info["file"]), (f"auto: int8 accepted ({info.get('reason') or 'metric gate'}), "
                                             f"CPU has {flag}{faster}")
        return want, str(info["file"]), f"auto: {want} accepted ({info.get('reason') or 'metric gate'})"
    info = variants.get(variant)
    if not info or not info.get("file"):
        usable = sorted(k for k, v in variants.items() if isinstance(v, dict) and v.get("file") and v.get("accepted"))
        why = f" ({info['reason']})" if isinstance(info, dict) and info.get("reason") else ""
        raise NotFoundError(f"{version.label} has no {variant} model file{why}; usable variants: "
                            f"{', '.join(['fp32', *usable])}", hint="score with one of the usable variants")
    if not info.get("accepted"):
        raise UserError(f"{version.label}: the {variant} variant was not accepted at registration "
                        f"({info.get('reason') or 'delta ' + str(info.get('delta'))})",
                        hint="score with --variant fp32 (the variant lost too much accuracy)")
    return variant, str(info["file"]), "asked for"
