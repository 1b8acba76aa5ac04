"""retail.movielens: the learned model against popularity, item-kNN and EASE over several tie seeds.

Each run trains the pipeline through the engine (the split's tie-breaking shuffle follows the run's
seed), so the model and the three baselines share one split and one mask per seed. Prints one JSON
line per run and, at the end, the mean and spread per recommender on validation and test.

    .venv/bin/python bench/retail_bench.py --seeds 0 1 2 --arch mean gru [--epochs 20] [--lambdas 100 300]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def run(arch: str, seed: int, epochs: int | None, home: Path, lambdas: tuple[float, ...] | None = None) -> dict:
    from verticals import engine
    from verticals.testing import use_plugins
    from verticals_retail.plugin import RetailPlugin

    t0 = time.perf_counter()
    options = {"ease_lambdas": tuple(lambdas)} if lambdas else {}
    with use_plugins({"retail": RetailPlugin(arch=arch, **options)}):
        res = engine.train("retail.movielens", seed=seed, epochs=epochs, home=home, progress=False)
    metrics = json.loads((res.report_path.parent / "metrics.json").read_text())
    extras = res.manifest["extras"]
    keys = ("recall@10", "ndcg@10", "coverage@10", "popularity_bias@10")
    return {"arch": arch, "seed": seed, "seconds": round(time.perf_counter() - t0, 1),
            "test": {"model": {k: metrics["test"].get(k) for k in keys},
                     **{n: {k: v.get(k) for k in keys} for n, v in metrics["baselines"].items()}},
            "valid_ndcg@10": extras["validation_ndcg@10"], "ease_lambda": extras["ease_lambda"],
            "best_on_validation": extras["best_on_validation"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arch", nargs="+", default=["mean", "gru"])
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--lambdas", type=float, nargs="+", default=None,
                        help="EASE's λ candidates (default: the pipeline's)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for arch in args.arch:
                row = run(arch, seed, args.epochs, Path(tmp) / f"{arch}-{seed}", args.lambdas)
                rows.append(row)
                print(json.dumps(row), flush=True)
    summary: dict[str, dict[str, str]] = {}
    for arch in args.arch:
        mine = [r for r in rows if r["arch"] == arch]
        for name in mine[0]["test"]:
            label = f"{arch}:model" if name == "model" else name
            if label in summary:
                continue
            summary[label] = {}
            for metric in ("recall@10", "ndcg@10"):
                values = [r["test"][name][metric] for r in mine]
                spread = statistics.pstdev(values) if len(values) > 1 else 0.0
                summary[label][f"test {metric}"] = f"{statistics.mean(values):.4f} ± {spread:.4f}"
            summary[label]["valid ndcg@10"] = f"{statistics.mean(r['valid_ndcg@10'][name] for r in mine):.4f}"
    print(json.dumps({"seeds": args.seeds, "mean ± sd over seeds": summary}, indent=1))


if __name__ == "__main__":
    main()
