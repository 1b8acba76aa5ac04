"""The train stages: load → validate → split → fit → evaluate → export (+ verify) → register (+ report).

Each stage is a function of plain, picklable dataclasses, so the Prefect train flow runs each as a
task and persists its result, and :func:`train` chains them in one process. Every stage

* looks the pipeline up in the registry by name (a worker process rebuilds the registry itself),
* fires the lifecycle hooks of :mod:`verticals.hookspecs` (``before_train`` … ``after_register``),
* on failure calls ``on_error`` with its stage name once, then lets the error propagate.

What the stages promise a user:

* **Nothing silently dropped.** Rejected training rows are counted and their reasons summarised in
  the report; if every row is rejected, training stops with the most common reason.
* **Scoring reproduces evaluation.** The evaluation predictions are made by the same path scoring
  takes (preprocessor transform → graph → ``postprocess`` with the manifest's ``extras``), in float32
  on the CPU, and the ONNX export is checked against PyTorch on held-out rows before registering.
* **A version is complete or absent.** Artifacts, report and manifest are written into a
  :meth:`~verticals.store.ModelStore.staging` folder and registered in one rename.

Modules, by role: ``results`` (stage result types), ``data`` (load, validate, split),
``fitting``, ``evaluation``, ``exporting`` (export and verify), ``registration`` (report, manifest,
register), ``run`` (:func:`train`), ``common`` (what the stages share).
"""

from __future__ import annotations

from verticals.engine.data import load_data, split_data, validate_data
from verticals.engine.evaluation import evaluate
from verticals.engine.exporting import export
from verticals.engine.fitting import fit
from verticals.engine.registration import register
from verticals.engine.results import (
    Evaluation,
    ExportResult,
    FitResult,
    LoadedData,
    TrainResult,
    ValidatedData,
)
from verticals.engine.run import train

__all__ = [
    "Evaluation",
    "ExportResult",
    "FitResult",
    "LoadedData",
    "TrainResult",
    "ValidatedData",
    "evaluate",
    "export",
    "fit",
    "load_data",
    "register",
    "split_data",
    "train",
    "validate_data",
]
