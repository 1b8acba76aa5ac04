"""Scoring throughput of retail.movielens in users per second, full catalogue, against a numpy floor.

In one process: trains the pipeline for one epoch on MovieLens (throughput does not depend on how well
it ranks), builds ``--users`` users by repeating MovieLens histories under new ids, then times,
interleaved (``--repeat`` rounds after one warm-up):

* ``score``: ``verticals.scoring.score`` on a time-sorted interaction log (validation, grouping by
  user, histories, ONNX Runtime, ids, Parquet output);
* ``onnx``: the exported graph alone (ORT, CPU) on the same inputs: logits over the whole catalogue,
  seen items masked, ``TopK`` inside;
* ``numpy``: the same model as plain numpy matrix products (the trained weights, the same masking, a
  top-k by ``argpartition``): the floor a hand-written scorer would reach.

``--torch-gpu`` also times the trained torch module on CUDA (with the same top-k); written for a GPU
machine and not verified on one. Name the CPU's flags (AVX2, AVX-512, VNNI) next to the figures::

    python bench/retail_throughput.py --users 20000 --repeat 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--arch", default="mean")
    parser.add_argument("--torch-gpu", action="store_true", help="also time torch on CUDA (unverified)")
    args = parser.parse_args()

    import numpy as np
    import polars as pl
    from verticals.engine import train
    from verticals.ort import open_session
    from verticals.scoring import score
    from verticals.testing import use_plugins
    from verticals_retail.data import movielens_interactions
    from verticals_retail.model import MASKED
    from verticals_retail.plugin import RetailPlugin
    from verticals_retail.preprocess import HistoryPreprocessor

    log = movielens_interactions()
    copies = -(-args.users // log.get_column("user").n_unique())
    many = pl.concat([log.with_columns(pl.format("{}-{}", pl.col("user"), pl.lit(c)).alias("user"))
                      for c in range(copies)]).sort("timestamp", maintain_order=True)
    keep = many.get_column("user").unique(maintain_order=True).head(args.users)
    many = many.filter(pl.col("user").is_in(keep.implode()))
    with tempfile.TemporaryDirectory() as tmp, use_plugins({"retail": RetailPlugin(arch=args.arch,
                                                                                   ease_lambdas=(300.0,))}):
        home = Path(tmp) / "home"
        import verticals.engine.run as stages

        fit, captured = stages.fit, {}

        def keep_fit(*a, **kw):  # the trained weights, for the numpy floor and torch
            captured["fit"] = fit(*a, **kw)
            return captured["fit"]

        stages.fit = keep_fit
        try:
            result = train("retail.movielens", home=home, epochs=1, progress=False)
        finally:
            stages.fit = fit
        fitted = captured["fit"]
        src = Path(tmp) / "log.parquet"
        many.write_parquet(src, row_group_size=65536)
        pre = HistoryPreprocessor()
        pre.load_state(result.manifest["preprocessor"])
        inputs = pre.transform(many, with_target=False).inputs
        users = len(inputs["history"])
        session = open_session(result.path / "model.onnx")
        k = int(pre.k)
        weights = {name: np.asarray(v) for name, v in fitted.weights.items()}

        def run_score(i: int) -> int:
            manifest = score("retail.movielens", src, Path(tmp) / f"out-{i}", model=str(result.version),
                             home=home, progress=False, device="cpu")
            return int(manifest["rows_out"])

        def run_onnx(_: int) -> int:
            for start in range(0, users, args.batch):
                session.run(None, {n: np.ascontiguousarray(a[start:start + args.batch]) for n, a in inputs.items()})
            return users

        def run_numpy(_: int) -> int:
            emb, out, bias = weights["embed.weight"], weights["output"], weights["bias"]
            proj_w, proj_b, slot, pop = (weights["project.weight"], weights["project.bias"], weights["slot"],
                                         weights["popularity"])
            for start in range(0, users, args.batch):
                h = inputs["history"][start:start + args.batch]
                m = inputs["mask"][start:start + args.batch]
                seen = inputs["seen"][start:start + args.batch]
                w = np.exp(slot)[None, :] * m
                user = (emb[h] * w[..., None]).sum(1) / np.maximum(w.sum(1, keepdims=True), 1e-6)
                logits = (user @ proj_w.T + proj_b) @ out.T + bias
                logits = np.where(m.sum(1, keepdims=True) > 0, logits, pop[None, :])
                logits[seen > 0] = MASKED
                top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
                np.take_along_axis(logits, top, axis=1).argsort(axis=1)
            return users

        runs = {"score": run_score, "onnx": run_onnx}
        if args.arch == "mean":
            runs["numpy"] = run_numpy
        if args.torch_gpu:
            runs["torch-cuda"] = torch_runner(fitted, inputs, args.batch, users)
        times: dict[str, list[float]] = {key: [] for key in runs}
        counts: dict[str, int] = {}
        for round_ in range(args.repeat + 1):
            for key, fn in runs.items():
                started = time.perf_counter()
                counts[key] = fn(round_)
                if round_:
                    times[key].append(time.perf_counter() - started)
        print(f"{users} users, {many.height} interactions, catalogue {len(pre.items)} items, top {k}; "
              f"providers {session.get_providers()}")
        for key, values in times.items():
            print(f"{key}: {counts[key] / min(values):,.0f} users/s (best), "
                  f"{counts[key] / statistics.median(values):,.0f} (median of {len(values)})")


def torch_runner(fitted, inputs, batch: int, users: int):
    """The trained torch module on CUDA with the graph's masking and top-k (unverified: no GPU here)."""
    import torch
    from verticals_retail.model import recommender_factory, top_k_scorer

    model = recommender_factory(fitted.info, **fitted.model_options)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in fitted.weights.items()})
    module = top_k_scorer(model).eval().to("cuda")
    tensors = {n: torch.from_numpy(a).pin_memory() for n, a in inputs.items()}

    def run(_: int) -> int:
        with torch.inference_mode():
            for start in range(0, users, batch):
                module(**{n: t[start:start + batch].to("cuda", non_blocking=True) for n, t in tensors.items()})
            torch.cuda.synchronize()
        return users

    return run


if __name__ == "__main__":
    main()
