"""PR-AUC of the manufacturing pipelines against gradient boosting, over a few seeds.

Trains each pipeline on its generated dataset (dataset seed = training seed) in a temporary model
home and prints, per seed and on average, the network's test PR-AUC next to the baselines' (same run,
same split, same features). Usage::

    python bench/manufacturing_pr_auc.py [--pipelines process_failure failure_risk] [--seeds 0 1 2]
        [--epochs N] [--model window_cnn]

``--model`` trains the pipelines with another registered model of the plugin (e.g. ``window_cnn``
against the default ``window_gru`` for ``failure_risk``): same data, split, seeds and baselines.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time


def run(pipeline: str, seed: int, epochs: int | None, model: str | None = None) -> dict[str, float]:
    import verticals_manufacturing.plugin as plugin
    from verticals.engine import train
    from verticals.testing import use_plugins
    from verticals_manufacturing import datasets

    class Seeded:
        """The plugin with its datasets generated from ``seed``."""

        register_models = staticmethod(plugin.register_models)

        @staticmethod
        @plugin.hookimpl
        def register_pipelines(register):
            def with_model(pipe, **kwargs):
                if model is not None and pipe.name == pipeline:
                    pipe.model = model
                register(pipe, **kwargs)

            plugin.register_pipelines(with_model)

        @staticmethod
        @plugin.hookimpl
        def register_datasets(register):
            register(datasets.ai4i_dataset(seed=seed))
            register(datasets.fleet_dataset(seed=seed))

    with tempfile.TemporaryDirectory() as home, use_plugins({"manufacturing": Seeded}):
        started = time.perf_counter()
        result = train(f"manufacturing.{pipeline}", home=home, progress=False, variants=(), seed=seed, epochs=epochs)
        seconds = time.perf_counter() - started
        stored = json.loads((result.path / "metrics.json").read_text())
    out = {"model": stored["test"]["pr_auc"]}
    for name, metrics in stored.get("baselines", {}).items():
        out[name] = metrics["pr_auc"]
    out["seconds"] = seconds
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipelines", nargs="+", default=["process_failure", "failure_risk"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--model", default=None, help="another registered model of the plugin, e.g. window_cnn")
    args = parser.parse_args()
    for pipeline in args.pipelines:
        rows = []
        for seed in args.seeds:
            row = run(pipeline, seed, args.epochs, args.model)
            rows.append(row)
            print(f"{pipeline} seed {seed}: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items()), flush=True)
        keys = [k for k in rows[0] if k != "seconds"]
        means = {k: statistics.mean(r[k] for r in rows) for k in keys}
        print(f"{pipeline} mean over {len(rows)} seeds: " + ", ".join(f"{k} {v:.4f}" for k, v in means.items()),
              flush=True)


if __name__ == "__main__":
    main()
