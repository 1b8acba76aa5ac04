"""Batch-scoring benchmark: the platform's Parquet → Parquet path against the model alone, torch eager
and the I/O floor, in one process, on the same model and data (see bench/README.md).

Modes:
    cpu     throughput ratios on the CPU (reference MLP 64 → 256 → 256 → 1, and finance.credit_risk if
            its plugin is installed and trainable)
    memory  peak RSS of ``verticals score`` at several input sizes, each in a fresh subprocess; ``--shape``
            files|ranking|windows for the image, user and window reference pipelines
    copies  the platform path as it is against it without two copies of the part-file path (float outputs
            widened to Float64, ``model_version`` filled per row), fp32 and int8, interleaved
    gpu     on a CUDA machine: end-to-end rows/s against the pinned host→device copy limit, the CUDA
            runner's lanes, compute-only and plain ``session.run``, and CUDA-vs-CPU parity

Every figure is rows per second over the input rows; each path runs ``--repeat`` times after one
warm-up, interleaved (A B C A B C ...) so load from other processes spreads over all of them; min and
median are reported. Results go to ``<out>/results-<mode>.json`` and a table on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "core" / "src"))

PIPELINE = "reference.mlp"


# -- fixtures: model and data ----------------------------------------------------------------------------------
def reference_plugin() -> Any:
    from verticals.testing.reference import ReferencePlugin

    return ReferencePlugin(n_numeric=64, n_categorical=0, hidden=(256, 256))


def build_model(home: Path, *, seed: int = 0, epochs: int = 3) -> tuple[Any, Any]:
    """Register the reference MLP the way the engine exports it: TabularPreprocessor fitted on 20k rows,
    in-graph imputation/scaling + MLP, one ONNX file, trained ``epochs`` short epochs (cost does not
    depend on the weights, but the int8 variant's metric gate is only meaningful on a trained model),
    and the int8 variant through the platform's own gate (``build_variants``: |Δ AUC| on 20k held-out
    rows ≤ the engine's tolerance), so ``variant="auto"`` behaves as for an engine-trained model.

    Returns (the composed torch module, the ModelVersion).
    """
    import numpy as np
    import torch
    from verticals.data.tabular import TabularPreprocessor
    from verticals.data.validation import validate
    from verticals.export import build_variants, compose, export_onnx
    from verticals.metrics import auc
    from verticals.store import ModelStore
    from verticals.testing.reference import make_frame, mlp_factory, reference_schema

    schema = reference_schema(64, 0)
    frame = validate(make_frame(20_000, n_numeric=64, n_categorical=0, seed=seed), schema, stage="train").valid
    pre = TabularPreprocessor(schema)
    pre.fit(frame)
    torch.manual_seed(seed)
    model = mlp_factory(pre.info(), hidden=(256, 256)).eval()
    graph = pre.graph_module()
    sig = pre.signature()
    store = ModelStore(home)
    versions = store.versions(PIPELINE) if PIPELINE in store.pipelines() else []
    composed = compose(graph, model, list(sig)).eval()
    if versions and (versions[-1].path / "torch_state.pt").exists() and "int8" in versions[-1].info.variants:
        composed.load_state_dict(torch.load(versions[-1].path / "torch_state.pt"))
        return composed, versions[-1]
    x = torch.from_numpy(pre.transform(frame, with_target=False).inputs["x_num"].astype(np.float32))
    y = torch.from_numpy(frame["target"].cast(float).to_numpy().astype(np.float32))
    opt = torch.optim.Adam(composed.parameters(), lr=1e-3)
    composed.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(512):
            opt.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(composed(x[idx])[0].reshape(-1), y[idx])
            loss.backward()
            opt.step()
    composed.eval()
    staging = store.staging(PIPELINE)
    sample = pre.transform(frame.head(64), with_target=False).inputs
    export_onnx(graph, model, sig, ("logits",), sample, staging / "model.onnx")
    torch.save(composed.state_dict(), staging / "torch_state.pt")
    held = validate(make_frame(20_000, n_numeric=64, n_categorical=0, seed=seed, start=20_000), schema,
                    stage="train").valid
    hx = pre.transform(held, with_target=False).inputs["x_num"].astype(np.float32)
    hy = held["target"].cast(int).to_numpy()

    def evaluate(path: Path, providers: Any) -> tuple[float, str]:
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), providers=list(providers))
        return float(auc(hy, sess.run(None, {"x_num": hx})[0].reshape(-1))), sess.get_providers()[0]

    reference, _ = evaluate(staging / "model.onnx", ["CPUExecutionProvider"])
    variants = build_variants(staging / "model.onnx", evaluate, reference, kinds=("int8",), metric_name="auc")
    log(f"reference MLP: held-out AUC {reference:.4f}; int8: {variants['int8']['reason']}")
    manifest = {"task": "binary", "input_schema": schema.without_target().to_dict(), "preprocessor": pre.state(),
                "signature": {"inputs": {k: v.to_dict() for k, v in sig.items()}, "outputs": ["logits"]},
                "score_column": "score", "extras": {}, "variants": variants,
                "metrics": {"test": {"auc": reference}}}
    return composed, store.register(PIPELINE, staging, manifest)


def data_file(out: Path, rows: int) -> Path:
    from verticals.testing.reference import write_parquet

    path = out / f"ref64-{rows}.parquet"
    if not path.exists():
        t0 = time.perf_counter()
        tmp = path.with_suffix(".tmp")
        write_parquet(tmp, rows, n_numeric=64, n_categorical=0)
        tmp.rename(path)
        log(f"wrote {path.name} ({path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t0:.0f} s")
    return path


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def environment() -> dict[str, Any]:
    from importlib import metadata

    info: dict[str, Any] = {"python": platform.python_version(), "machine": platform.machine(),
                            "cpu": _cpu_name(), "cpu_flags": _cpu_flags(),
                            "cores": len(os.sched_getaffinity(0))}
    for dist in ("onnxruntime-gpu", "onnxruntime", "torch", "polars", "pyarrow", "numpy"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            info[dist] = metadata.version(dist)
    return info


def _cpu_flags() -> list[str]:
    """The CPU features that decide these figures (SIMD width, fast int8)."""
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp")
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                have = set(line.split(":", 1)[1].split())
                return [f for f in wanted if f in have]
    except OSError:
        pass
    return []


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


# -- timing -----------------------------------------------------------------------------------------------------
def interleave(paths: dict[str, Callable[[], int]], repeat: int, warmup: int = 1) -> dict[str, dict[str, float]]:
    """Run each path ``warmup`` + ``repeat`` times, interleaved; rows/s min and median of the timed runs,
    and the process's CPU time per row (user + system, all threads): on a shared machine wall-clock
    ratios move with the neighbours' load, CPU time per row much less."""
    times: dict[str, list[float]] = {k: [] for k in paths}
    cpu: dict[str, list[float]] = {k: [] for k in paths}
    rows: dict[str, int] = {}
    for i in range(warmup + repeat):
        for name, fn in paths.items():
            c0 = os.times()
            t0 = time.perf_counter()
            n = fn()
            dt = time.perf_counter() - t0
            c1 = os.times()
            rows[name] = n
            if i >= warmup:
                times[name].append(dt)
                cpu[name].append((c1.user - c0.user + c1.system - c0.system) / n * 1e6)
            log(f"  {'warm-up' if i < warmup else f'rep {i - warmup + 1}'} {name}: {n / dt:,.0f} rows/s")
    return {k: {"rows": rows[k], "rows_per_s_best": rows[k] / min(v), "rows_per_s_median": rows[k] / statistics.median(v),
                "cpu_us_per_row_median": statistics.median(cpu[k]), "seconds": v} for k, v in times.items()}


def batches(x: Any, size: int) -> list[Any]:
    return [x[i:i + size] for i in range(0, len(x), size)]


def features(path: Path) -> tuple[Any, Any]:
    """The 64 feature columns as one C-ordered float32 matrix (what the model sees), and the ids."""
    import polars as pl

    frame = pl.read_parquet(path, columns=["row_id", *[f"f{j:02d}" for j in range(64)]])
    return frame.drop("row_id").to_numpy(order="c").astype("float32", copy=False), frame["row_id"].to_numpy()


# -- paths --------------------------------------------------------------------------------------------------------
def platform_e2e(path: Path, out: Path, home: Path, device: str, batch_size: int, pipeline: str = PIPELINE,
                 **kw: Any) -> Callable[[], int]:
    from verticals.scoring import score

    def run() -> int:
        manifest = score(pipeline, path, out, device=device, batch_size=batch_size, overwrite=True, home=home,
                         progress=False, **kw)
        assert manifest["rows_in"] == manifest["rows_scored"] + manifest["rows_rejected"]
        run.manifest = manifest  # type: ignore[attr-defined]
        return manifest["rows_in"]

    return run


def ort_model_only(runtime: Any, x: Any, batch_size: int) -> Callable[[], int]:
    chunks = batches(x, batch_size)

    def run() -> int:
        runner = runtime.runner
        pending = []
        for c in chunks:
            pending.append(runner.submit({"x_num": c}))
            if len(pending) > runner.depth:
                pending.pop(0).result()
        for f in pending:
            f.result()
        return len(x)

    return run


def torch_model_only(module: Any, x: Any, batch_size: int, device: str = "cpu", pinned: bool = False) -> Callable[[], int]:
    import torch

    chunks = [torch.from_numpy(c) for c in batches(x, batch_size)]
    if pinned:
        chunks = [c.pin_memory() for c in chunks]
    module = module.to(device)

    def run() -> int:
        with torch.inference_mode():
            outs = [torch.sigmoid(module(c.to(device, non_blocking=pinned))[0]) for c in chunks]
            if device != "cpu":
                torch.cuda.synchronize()
            _ = [o.cpu() for o in outs[-1:]]
        return len(x)

    return run


def torch_e2e(module: Any, path: Path, out: Path, batch_size: int) -> Callable[[], int]:
    """What a user would write by hand, at its strongest: one ``pl.read_parquet`` (parallel decode) →
    one C-ordered float32 matrix → the torch module batch by batch → sigmoid → write ids + score.
    No validation, no rejects, no atomic output (and memory grows with the file)."""
    import numpy as np
    import polars as pl
    import torch

    cols = [f"f{j:02d}" for j in range(64)]

    def run() -> int:
        frame = pl.read_parquet(path, columns=["row_id", *cols])
        x = frame.select(cols).to_numpy(order="c").astype(np.float32, copy=False)
        scores = np.empty(len(x), dtype=np.float32)
        with torch.inference_mode():
            for s in range(0, len(x), batch_size):
                scores[s:s + batch_size] = torch.sigmoid(module(torch.from_numpy(x[s:s + batch_size]))[0]).reshape(-1).numpy()
        pl.DataFrame({"row_id": frame["row_id"], "score": scores}).write_parquet(out)
        return len(x)

    return run


def io_floor(path: Path, out: Path) -> Callable[[], int]:
    """Read the 64 feature columns + ids and write one column back: no validation, no model."""
    import polars as pl

    cols = ["row_id", *[f"f{j:02d}" for j in range(64)]]

    def run() -> int:
        frame = pl.read_parquet(path, columns=cols)
        frame.select("row_id").write_parquet(out)
        return frame.height

    return run


# -- modes ---------------------------------------------------------------------------------------------------------
def mode_cpu(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import torch
    from verticals.scoring.runtime import open_runtime
    from verticals.testing import use_plugins

    out = Path(args.out)
    home = out / "home"
    threads = len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    module, version = build_model(home)
    path = data_file(out, args.rows)
    x, _ids = features(path)
    results: dict[str, Any] = {"mode": "cpu", "env": environment(), "rows": args.rows, "batch_size": args.batch_size,
                               "model": "reference MLP 64→256→256→1 fp32 (+ in-graph impute/scale)",
                               "data": f"{path.name}: {args.rows:,} rows × 64 float32 (+ id, target), "
                                       f"{path.stat().st_size / 1e6:.0f} MB, snappy"}
    runtime = open_runtime(version.file("model.onnx"), "cpu", args.batch_size)
    runtime_int8 = open_runtime(version.file("model.int8.onnx"), "cpu", args.batch_size)
    head = x[: args.batch_size]
    fp32_scores = 1 / (1 + np.exp(-runtime.runner.submit({"x_num": head}).result()["logits"]))
    int8_scores = 1 / (1 + np.exp(-runtime_int8.runner.submit({"x_num": head}).result()["logits"]))
    results["int8 max |Δscore| vs fp32"] = float(np.max(np.abs(fp32_scores - int8_scores)))
    results["int8 variant (registration gate)"] = version.info.variants.get("int8")
    e2e_default, e2e_fp32 = "platform e2e, default variant", "platform e2e, fp32"
    with use_plugins({"reference": reference_plugin()}):
        paths = {
            e2e_default: platform_e2e(path, out / "scores", home, "cpu", args.batch_size),
            e2e_fp32: platform_e2e(path, out / "scores-fp32", home, "cpu", args.batch_size, variant="fp32"),
            "ORT fp32 model only (platform runner, pipelined lanes)": ort_model_only(runtime, x, args.batch_size),
            "ORT int8 model only (platform runner, pipelined lanes)": ort_model_only(runtime_int8, x, args.batch_size),
            "torch eager model only": torch_model_only(module, x, args.batch_size),
            "torch eager e2e (pl.read_parquet → torch → write)": torch_e2e(module, path, out / "torch_scores.parquet",
                                                                         args.batch_size),
            "I/O floor (read 65 cols + write 1)": io_floor(path, out / "floor.parquet"),
        }
        results["paths"] = interleave(paths, args.repeat, args.warmup)
        manifest = paths[e2e_default].manifest
        results["default variant"] = {"variant": manifest.get("variant"), "why": manifest.get("variant_reason")}
        results["platform_manifest"] = {k: v for k, v in manifest.items() if k not in ("parts",)}
        results["platform_manifest fp32 stages"] = paths[e2e_fp32].manifest.get("stages")
    for rt in (runtime, runtime_int8):
        rt.close()
    r = {k: v["rows_per_s_median"] for k, v in results["paths"].items()}
    rb = {k: v["rows_per_s_best"] for k, v in results["paths"].items()}
    fp32, int8 = ("ORT fp32 model only (platform runner, pipelined lanes)",
                  "ORT int8 model only (platform runner, pipelined lanes)")
    default_model = int8 if results["default variant"]["variant"] == "int8" else fp32
    torch_e2e_name = "torch eager e2e (pl.read_parquet → torch → write)"

    def ratio(a: str, b: str) -> tuple[float, float]:
        return r[a] / r[b], rb[a] / rb[b]

    results["ratios"] = {
        "platform e2e fp32 / ORT fp32 model only (goal ≥ 0.85)": ratio(e2e_fp32, fp32),
        f"platform e2e default ({results['default variant']['variant']}) / its model only (goal ≥ 0.85)":
            ratio(e2e_default, default_model),
        "platform e2e default / torch eager model only (goal ≥ 1.5)": ratio(e2e_default, "torch eager model only"),
        "platform e2e fp32 / torch eager model only": ratio(e2e_fp32, "torch eager model only"),
        "platform e2e default / torch eager e2e": ratio(e2e_default, torch_e2e_name),
        "ORT fp32 model only / torch eager model only": ratio(fp32, "torch eager model only"),
        "ORT int8 model only / ORT fp32 model only": ratio(int8, fp32),
        "platform e2e default / I/O floor": ratio(e2e_default, "I/O floor (read 65 cols + write 1)"),
    }
    if args.credit:
        results["credit_risk"] = credit_risk(args, out)
    return results


def credit_risk(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """finance.credit_risk, if its plugin is installed: train it quickly, score its data repeated."""
    try:
        from verticals.engine import train
        from verticals.registry import get_registry
    except ImportError as exc:
        return {"skipped": f"engine not available: {exc}"}
    import polars as pl

    try:
        registry = get_registry()
        pipe = registry.pipeline("finance.credit_risk")
    except Exception as exc:
        return {"skipped": f"finance.credit_risk not registered: {exc}"}
    home = out / "home-credit"
    from verticals.store import ModelStore

    if "finance.credit_risk" not in ModelStore(home).pipelines():
        train("finance.credit_risk", home=home, progress=False, epochs=5)
    frame = registry.dataset_of(pipe).loader()
    frame = frame.collect() if hasattr(frame, "collect") else frame
    reps = max(1, args.credit_rows // frame.height)
    path = out / f"credit-{reps * frame.height}.parquet"
    if not path.exists():
        pl.concat([frame] * reps).write_parquet(path, row_group_size=131072)
    from verticals.scoring.session import ScoringSession

    session = ScoringSession.open("finance.credit_risk", None, "cpu", args.batch_size, home)
    x_frame = pl.read_parquet(path)
    res = session.preprocessor.transform(
        __import__("verticals.data.validation", fromlist=["validate"]).validate(
            x_frame, session.schema, stage="score", vocabularies=session.vocabularies).valid, with_target=False)
    inputs = session.model_inputs(res.inputs)
    n = len(res)

    def model_only() -> int:  # pipelined: as many batches in flight as the runner has lanes
        runner = session.runtime.runner
        pending: list[Any] = []
        for s in range(0, n, args.batch_size):
            pending.append(runner.submit({k: v[s:s + args.batch_size] for k, v in inputs.items()}))
            if len(pending) > runner.depth:
                pending.pop(0).result()
        for f in pending:
            f.result()
        return n

    paths = {"credit e2e (Parquet→Parquet)": platform_e2e(path, out / "credit_scores", home, "cpu", args.batch_size,
                                                         "finance.credit_risk"),
             "credit ORT model only": model_only}
    with_results = interleave(paths, args.repeat, args.warmup)
    session.close()
    e2e = with_results["credit e2e (Parquet→Parquet)"]
    return {"rows": n, "data": f"{path.name} (the dataset repeated {reps}×)", "paths": with_results,
            "ratio e2e / model only": (e2e["rows_per_s_median"] / with_results["credit ORT model only"]["rows_per_s_median"]),
            "manifest": {k: v for k, v in paths["credit e2e (Parquet→Parquet)"].manifest.items() if k != "parts"}}


def mode_copies(args: argparse.Namespace) -> dict[str, Any]:
    """What two copies of the part-file path cost: float outputs widened to Float64, and ``model_version``
    filled per row. The platform path as it is against the same path with ``_part_frame`` replaced by
    one that keeps float32 outputs float32 and writes no ``model_version`` column (the most removing
    them could give), fp32 and int8, interleaved in one process; plus both operations timed alone on one
    batch."""
    import numpy as np
    import polars as pl
    import pyarrow.parquet as pq
    from verticals.data.dtypes import output_dtype
    from verticals.scoring import run as scoring_run
    from verticals.testing import use_plugins

    out = Path(args.out)
    home = out / "home"
    build_model(home)
    path = data_file(out, args.rows)
    original = scoring_run._part_frame

    def lean(session: Any, batch: Any, outputs: Any, flags: Any, context: Any = None) -> Any:
        post = session.pipeline.postprocess(outputs, batch, context if context is not None else session.context)
        columns = [post[oc.name] if oc.dtype == "float" and post[oc.name].dtype == pl.Float32
                   else post[oc.name].cast(output_dtype(oc.dtype)) for oc in session.pipeline.output_columns]
        return pl.concat([batch.ids, pl.DataFrame(columns), pl.DataFrame([flags.rename("flags")])], how="horizontal")

    def with_part_frame(fn: Callable[[], int], part_frame: Any) -> Callable[[], int]:
        def run() -> int:
            scoring_run._part_frame = part_frame
            try:
                return fn()
            finally:
                scoring_run._part_frame = original
        run.inner = fn  # type: ignore[attr-defined]
        return run

    results: dict[str, Any] = {"mode": "copies", "env": environment(), "rows": args.rows, "batch_size": args.batch_size}
    with use_plugins({"reference": reference_plugin()}):
        paths = {}
        for variant in ("fp32", "int8"):
            for name, part_frame in (("as is", original), ("without the two copies", lean)):
                target = out / f"scores-copies-{variant}-{name.split()[0]}"
                paths[f"platform e2e {variant}, {name}"] = with_part_frame(
                    platform_e2e(path, target, home, "cpu", args.batch_size, variant=variant), part_frame)
        results["paths"] = interleave(paths, args.repeat, args.warmup)
        results["stages"] = {k: v.inner.manifest["stages"] for k, v in paths.items()}
    med = {k: v["rows_per_s_median"] for k, v in results["paths"].items()}
    results["ratios"] = {f"{v}: without / as is": (med[f"platform e2e {v}, without the two copies"]
                                                  / med[f"platform e2e {v}, as is"],) * 2 for v in ("fp32", "int8")}
    # The two operations alone, on one batch of scores (best of 20).
    scores = pl.DataFrame({"score": np.random.default_rng(0).random(args.batch_size, dtype=np.float32)})

    def best(fn: Callable[[], Any]) -> float:
        times = []
        for _ in range(20):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times) / args.batch_size * 1e6

    def write(frame: Any) -> Callable[[], None]:
        return lambda: pq.write_table(frame.to_arrow(), out / "copies-one-batch.parquet", use_dictionary=False)

    widened = scores.with_columns(pl.col("score").cast(pl.Float64))
    results["one batch, µs per row"] = {
        "cast float32 → Float64": best(lambda: scores.with_columns(pl.col("score").cast(pl.Float64))),
        "fill model_version": best(lambda: scores.with_columns(pl.lit(3, dtype=pl.Int64).alias("model_version"))),
        "write score float32": best(write(scores)),
        "write score Float64": best(write(widened)),
        "write score Float64 + model_version": best(write(widened.with_columns(
            pl.lit(3, dtype=pl.Int64).alias("model_version")))),
    }
    return results


def mode_e2e(args: argparse.Namespace) -> dict[str, Any]:
    """Only the platform path, ``--repeat`` times (for a profiler: ``py-spy record -- python ... e2e``)."""
    from verticals.testing import use_plugins

    out = Path(args.out)
    home = out / "home"
    build_model(home)
    path = data_file(out, args.rows)
    runs = []
    with use_plugins({"reference": reference_plugin()}):
        run = platform_e2e(path, out / "scores-e2e", home, "cpu", args.batch_size, variant=args.variant)
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            n = run()
            runs.append({"rows_per_s": n / (time.perf_counter() - t0), "stages": run.manifest["stages"],
                         "variant": run.manifest["variant"]})
            log(f"  {runs[-1]['variant']}: {runs[-1]['rows_per_s']:,.0f} rows/s, stages {runs[-1]['stages']}")
    return {"mode": "e2e", "env": environment(), "runs": runs}


def mode_memory(args: argparse.Namespace) -> dict[str, Any]:
    """Peak RSS of ``score`` per input size, each size in a fresh process (``_memchild``): the tabular
    reference MLP, or (``--shape``) the files, ranking or windows reference pipeline (bench/memory_shapes.py)."""
    out = Path(args.out)
    if args.shape == "tabular":
        home = out / "home"
        build_model(home)
        sizes = [int(s) for s in (args.sizes or "1000000,10000000").split(",")]
        inputs = {rows: data_file(out, rows) for rows in sizes}
        unit, pipeline = "rows", PIPELINE
    else:
        from memory_shapes import SHAPES, train

        shape = SHAPES[args.shape]
        home = out / f"home-{shape.name}"
        version = train(shape, out, home)
        sizes = [int(s) for s in (args.sizes or shape.sizes).split(",")]
        inputs = {n: shape.make_input(out, n, version) for n in sizes}
        unit, pipeline = shape.unit, shape.pipeline
    results: dict[str, Any] = {"mode": "memory", "shape": args.shape, "pipeline": pipeline, "unit": unit,
                               "env": environment(), "batch_size": args.batch_size, "runs": []}
    for rows in sizes:
        for rep in range(args.memory_repeat):
            run = memory_run(out, home, inputs[rows], args.shape, args.batch_size) | {"rows": rows, "rep": rep}
            results["runs"].append(run)
            log(f"  {rows:,} {unit}: peak RSS {run['peak_rss_mb']:.0f} MB (after open {run['rss_after_open_mb']:.0f} "
                f"MB), {run['rows_per_second']:,.0f} rows/s, {run['rows_out']:,} output rows, "
                f"torch imported: {run['torch_imported']}")
    peaks = {rows: min(r["peak_rss_mb"] for r in results["runs"] if r["rows"] == rows) for rows in sizes}
    results["peak_rss_mb"] = peaks
    if len(sizes) >= 2:
        results["growth largest/smallest"] = peaks[sizes[-1]] / peaks[sizes[0]]
    return results


def memory_run(out: Path, home: Path, path: Path, shape: str, batch_size: int) -> dict[str, Any]:
    """Score ``path`` once in a fresh process; its peak RSS (``VmHWM``) and the run's figures."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "_memchild", "--out", str(out), "--input", str(path),
           "--batch-size", str(batch_size), "--shape", shape, "--home", str(home)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    run = json.loads(proc.stdout.strip().splitlines()[-1])
    size = path.stat().st_size if path.is_file() else sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return run | {"input_mb": round(size / 1e6)}


def _hwm_mb() -> float:
    """This process's peak resident memory. ``VmHWM`` belongs to the process's own address space;
    ``ru_maxrss`` is not used because Linux carries it over ``exec`` from the forked parent, so a child
    of a parent that held a large file in memory would report the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def mode_memchild(args: argparse.Namespace) -> None:
    """One scoring run in a fresh process (no torch): peak RSS from ``VmHWM``."""
    from verticals.scoring import score
    from verticals.scoring.session import ScoringSession
    from verticals.testing import use_plugins

    out = Path(args.out)
    home = Path(args.home) if args.home else out / "home"
    if args.shape == "tabular":
        plugins, pipeline = {"reference": reference_plugin()}, PIPELINE
    else:
        from memory_shapes import SHAPES

        shape = SHAPES[args.shape]
        plugins, pipeline = dict([shape.plugin(out)]), shape.pipeline
    with use_plugins(plugins):
        ScoringSession.open(pipeline, None, "cpu", args.batch_size, home).close()
        after_open = _hwm_mb()
        manifest = score(pipeline, Path(args.input), out / f"mem_scores-{args.shape}", device="cpu",
                         batch_size=args.batch_size, overwrite=True, home=home, progress=False)
    peak = _hwm_mb()
    print(json.dumps({"peak_rss_mb": peak, "rss_after_open_mb": after_open, "rows_per_second": manifest["rows_per_second"],
                      "seconds": manifest["seconds"], "rows_in": manifest["rows_in"], "rows_out": manifest["rows_out"],
                      "rows_rejected": manifest["rows_rejected"], "stages": manifest["stages"],
                      "torch_imported": "torch" in sys.modules}))


def mode_gpu(args: argparse.Namespace) -> dict[str, Any]:
    """On a CUDA machine; see the module docstring."""
    import numpy as np
    import torch
    from verticals.scoring.runtime import CudaRunner, open_runtime
    from verticals.testing import use_plugins

    out = Path(args.out)
    home = out / "home"
    module, version = build_model(home)
    path = data_file(out, args.rows)
    x, _ = features(path)
    bs = args.batch_size
    results: dict[str, Any] = {"mode": "gpu", "env": environment(), "rows": args.rows, "batch_size": bs,
                               "gpu": torch.cuda.get_device_name(0)}
    # copy limit: pinned and pageable host → device, same bytes per row as the model input (256 B)
    host = torch.from_numpy(x[: bs * 8].copy())
    pinned = host.pin_memory()
    dev = torch.empty_like(host, device="cuda")

    def copy(src: Any) -> Callable[[], int]:
        def run() -> int:
            for _ in range(4):
                dev.copy_(src, non_blocking=True)
            torch.cuda.synchronize()
            return 4 * len(src)
        return run

    model_path = version.file("model.onnx")
    rt = {lanes: open_runtime(model_path, "cuda", bs, lanes=lanes) for lanes in (1, 2, 3)}
    results["provider"] = {k: v.describe() for k, v in rt.items()}
    import onnxruntime as ort

    results["ort_cuda_options"] = plain_options = rt[1].session.get_provider_options().get("CUDAExecutionProvider", {})
    log(f"CUDA EP options: use_tf32={plain_options.get('use_tf32')}")
    plain = rt[1].session  # the platform's session options (TF32 off), used without IOBinding
    xb = batches(x, bs)

    def plain_run() -> int:
        for c in xb:
            plain.run(None, {"x_num": c})
        return len(x)

    # compute only: input already on the device
    dev_in = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(xb[0]), "cuda", 0)
    binding = plain.io_binding()
    binding.bind_ortvalue_input("x_num", dev_in)
    binding.bind_output("logits", "cuda")

    def compute_only() -> int:
        for _ in xb:
            plain.run_with_iobinding(binding)
        binding.synchronize_outputs()
        return len(xb) * len(xb[0])

    paths: dict[str, Callable[[], int]] = {
        "H2D copy, pinned (torch)": copy(pinned),
        "H2D copy, pageable (torch)": copy(host),
        "ORT CUDA compute only (input on GPU)": compute_only,
        "ORT CUDA plain session.run(numpy)": plain_run,
        **{f"ORT CUDA platform runner, {k} lane(s), host numpy": ort_model_only(v, x, bs) for k, v in rt.items()},
        "torch eager fp32 from pinned": torch_model_only(module, x, bs, device="cuda", pinned=True),
        "I/O floor (read 65 cols + write 1)": io_floor(path, out / "floor.parquet"),
    }
    e2e = {}
    with use_plugins({"reference": reference_plugin()}):
        for combo in args.e2e.split(","):
            readers, impl = combo.split(":")
            e2e[combo] = paths[f"platform e2e CUDA, {readers} reader(s), {impl}"] = _e2e_env(path, out, home, bs,
                                                                                             readers, impl)
        results["paths"] = interleave(paths, args.repeat, args.warmup)
    results["e2e stages (s, summed over threads, last run)"] = {
        k: {**v.inner.manifest["stages"], "wall": v.inner.manifest["seconds"]} for k, v in e2e.items()}
    limit = results["paths"]["H2D copy, pinned (torch)"]["rows_per_s_median"]
    results["vs copy limit"] = {k: v["rows_per_s_median"] / limit for k, v in results["paths"].items()}
    # parity: CUDA runner vs CPU session on the same rows
    cpu = open_runtime(model_path, "cpu", bs)
    sample = x[:200_000]
    got = np.concatenate([rt[2].runner.submit({"x_num": c}).result()["logits"] for c in batches(sample, bs)])
    ref = np.concatenate([cpu.runner.submit({"x_num": c}).result()["logits"] for c in batches(sample, bs)])
    results["parity cuda vs cpu"] = {"rows": len(sample), "max_abs_diff_logits": float(np.max(np.abs(got - ref))),
                                     "max_abs_diff_score": float(np.max(np.abs(1 / (1 + np.exp(-got)) - 1 / (1 + np.exp(-ref)))))}
    for v in rt.values():
        v.close()
    assert isinstance(rt[1].runner, CudaRunner)
    return results


def mode_torchfree(args: argparse.Namespace) -> dict[str, Any]:
    """``verticals score`` in a fresh process (no torch anywhere): which provider ran, rows/s."""
    out = Path(args.out)
    build_model(out / "home")  # here, in the parent: the scoring subprocess never imports torch
    path = data_file(out, args.rows)
    script = (
        "import sys, json\n"
        f"sys.path.insert(0, {str(HERE)!r})\n"
        "from score_bench import reference_plugin\n"
        "from verticals.testing import use_plugins\n"
        "from verticals.cli import main\n"
        "with use_plugins({'reference': reference_plugin()}):\n"
        "    try:\n"
        f"        main(['score', {PIPELINE!r}, '--input', {str(path)!r}, '--output', {str(out / 'cli_scores')!r},\n"
        f"              '--home', {str(out / 'home')!r}, '--device', {args.device!r}, '--batch-size', '{args.batch_size}',\n"
        "              '--overwrite', '--json'])\n"
        "    except SystemExit as exc:\n"
        "        assert not exc.code, exc.code\n"
        "print('TORCH_IMPORTED', 'torch' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    text = proc.stdout
    manifest = json.loads(text[text.index("{"): text.rindex("}") + 1]) if "{" in text else {}
    return {"mode": "torchfree", "returncode": proc.returncode, "stderr": proc.stderr[-2000:],
            "torch_imported": "TORCH_IMPORTED True" in text, "provider": manifest.get("provider"),
            "runner": manifest.get("session", {}).get("runner"), "rows_per_second": manifest.get("rows_per_second"),
            "rows_in": manifest.get("rows_in"), "seconds": manifest.get("seconds")}


def _e2e_env(path: Path, out: Path, home: Path, bs: int, readers: str, impl: str) -> Callable[[], int]:
    inner = platform_e2e(path, out / f"scores-{readers}-{impl}", home, "cuda", bs)

    def run() -> int:
        os.environ["VERTICALS_SCORE_READERS"] = readers
        os.environ["VERTICALS_PARQUET_READER"] = impl
        try:
            return inner()
        finally:
            os.environ.pop("VERTICALS_SCORE_READERS", None)
            os.environ.pop("VERTICALS_PARQUET_READER", None)

    run.inner = inner  # type: ignore[attr-defined]
    return run


def table(results: dict[str, Any]) -> str:
    lines = [f"{'path':55s} {'median rows/s':>14s} {'best rows/s':>14s} {'CPU µs/row':>11s}"]
    for name, v in results.get("paths", {}).items():
        lines.append(f"{name:55s} {v['rows_per_s_median']:>14,.0f} {v['rows_per_s_best']:>14,.0f} "
                     f"{v.get('cpu_us_per_row_median', float('nan')):>11.2f}")
    for name, (med, best) in results.get("ratios", {}).items():
        lines.append(f"{name:55s} {med:>14.2f} {best:>14.2f}")
    for name, v in results.get("vs copy limit", {}).items():
        lines.append(f"vs copy limit: {name:40s} {v:>14.2f}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["cpu", "credit", "memory", "copies", "gpu", "torchfree", "e2e", "_memchild"])
    ap.add_argument("--variant", default="auto", help="e2e mode: the variant to score with")
    ap.add_argument("--device", default="auto", help="torchfree mode: the --device to pass")
    ap.add_argument("--out", default=str(HERE / "out"))
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--batch-size", type=int, default=65536)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--sizes", default=None, help="memory mode: input sizes (rows; images for --shape files); "
                                                   "default 1M,10M rows (files: 5k,50k images)")
    ap.add_argument("--shape", default="tabular", choices=["tabular", "files", "manufacturing", "ranking", "retail", "windows"],
                    help="memory mode: which reference pipeline scores (bench/memory_shapes.py)")
    ap.add_argument("--home", help="_memchild: the model store")
    ap.add_argument("--memory-repeat", type=int, default=1)
    ap.add_argument("--e2e", default="1:pyarrow,4:pyarrow,8:pyarrow,4:polars,8:polars",
                    help="gpu mode: end-to-end configurations, readers:parquet-reader")
    ap.add_argument("--credit", action="store_true", help="also benchmark finance.credit_risk (cpu mode)")
    ap.add_argument("--credit-rows", type=int, default=1_000_000)
    ap.add_argument("--input")
    args = ap.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if args.mode == "_memchild":
        mode_memchild(args)
        return
    modes = {"cpu": mode_cpu, "e2e": mode_e2e, "memory": mode_memory, "copies": mode_copies, "gpu": mode_gpu, "torchfree": mode_torchfree,
             "credit": lambda a: {"mode": "credit", "env": environment(), **credit_risk(a, Path(a.out))}}
    results = modes[args.mode](args)
    (Path(args.out) / f"results-{args.mode}.json").write_text(json.dumps(results, indent=2, default=str))
    print(json.dumps({k: v for k, v in results.items() if k not in ("paths",)}, indent=2, default=str))
    print(table(results))


if __name__ == "__main__":
    main()
