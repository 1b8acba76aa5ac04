"""PR-AUC of the manufacturing pipelines against gradient boosting, over a few seeds.

Trains each pipeline on its generated dataset (dataset seed = training seed) in a temporary model
home and prints, per seed and on average, the network's test PR-AUC next to the baselines' (same run,
same split, same features). Usage::

    python bench/manufacturing_pr_auc.py [--pipelines process_failure failure_risk] [--seeds 0 1 2 3 4]
        [--epochs N] [--models window_wide window_gru window_cnn]

``--models`` trains the pipelines with each of these registered models of the plugin in turn (default:
the pipeline's own; ``--model-options JSON`` passes options to the model factory), on the same data,
split and seed; the baselines come from the same runs (they do not depend on the model: the first
run's are printed). Prints per seed and the mean and standard deviation over seeds, each model's
validation PR-AUC (at its kept epoch: compare models on it, never on test) and its training time.

``--machines 200 400 800`` repeats everything on generated fleets of these sizes (the learning curve of
the fleet network against gradient boosting; default: the built-in size, 800 machines or
``VERTICALS_MANUFACTURING_FLEET_MACHINES``); the summary lines then name the size.

``--training`` does the same with training settings (names of :data:`TRAINING`), e.g.
``--training split groups-k5`` trains the single validation split and 5-fold cross-fitting over
machines on the same data, split and seed. A cross-fitted run also reports
``hist_gradient_boosting_crossfit`` (gradient boosting fitted on the same pooled windows and folds) and
its validation PR-AUC is in-sample (the final model saw the validation period): compare cross-fitted
settings on the out-of-fold PR-AUC (``oof``) instead.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

#: Named training settings for ``--training`` (overrides of the pipeline's TrainingConfig; "default": none).
TRAINING: dict[str, dict] = {
    "default": {},
    "split": {"crossfit_groups": False},
    "groups-k3": {"crossfit_groups": True, "crossfit_folds": 3, "crossfit_final": "bag"},
    "groups-k4": {"crossfit_groups": True, "crossfit_folds": 4, "crossfit_final": "bag"},
    "groups-k5": {"crossfit_groups": True, "crossfit_folds": 5, "crossfit_final": "bag"},
    "groups-k5-refit": {"crossfit_groups": True, "crossfit_folds": 5, "crossfit_final": "refit"},
    "ensemble-1": {"ensemble": 1},
    "ensemble-3": {"ensemble": 3},
    "ensemble-5": {"ensemble": 5},
}


def run(pipeline: str, seed: int, epochs: int | None, model: str | None = None,
        options: dict | None = None, training: dict | None = None, machines: int | None = None) -> dict[str, float]:
    import dataclasses

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
                if options and pipe.name == pipeline:
                    pipe.model_options = lambda dataset, info: dict(options)
                if training and pipe.name == pipeline:
                    pipe.training = dataclasses.replace(pipe.training, **training)
                register(pipe, **kwargs)

            plugin.register_pipelines(with_model)

        @staticmethod
        @plugin.hookimpl
        def register_datasets(register):
            register(datasets.ai4i_dataset(seed=seed))
            register(datasets.fleet_dataset(machines, seed=seed))

    with tempfile.TemporaryDirectory() as home, use_plugins({"manufacturing": Seeded}):
        started = time.perf_counter()
        result = train(f"manufacturing.{pipeline}", home=home, progress=False, variants=(), seed=seed, epochs=epochs)
        seconds = time.perf_counter() - started
        stored = json.loads((result.path / "metrics.json").read_text())
    out = {"model": stored["test"]["pr_auc"], "valid": stored.get("valid", {}).get("pr_auc", float("nan"))}
    crossfit = result.manifest.get("training", {}).get("crossfit")
    if crossfit:
        del out["valid"]  # in-sample: the final model saw the validation period
        out["oof"] = float("nan") if crossfit.get("oof_metric") is None else float(crossfit["oof_metric"])
    for name, metrics in stored.get("baselines", {}).items():
        out[name] = metrics["pr_auc"]
    out["seconds"] = seconds
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipelines", nargs="+", default=["process_failure", "failure_risk"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--models", nargs="+", default=[None],
                        help="registered models of the plugin to train in turn, e.g. window_wide window_gru")
    parser.add_argument("--model-options", type=json.loads, default=None,
                        help='keyword options of the model factory, as JSON, e.g. \'{"dropout": 0.5}\'')
    parser.add_argument("--training", nargs="+", default=["default"], choices=sorted(TRAINING),
                        help="named training settings to train in turn (see TRAINING), e.g. split groups-k5")
    parser.add_argument("--machines", nargs="+", type=int, default=[None],
                        help="fleet sizes to repeat everything on (failure_risk), e.g. 200 400 800")
    args = parser.parse_args()
    for pipeline, machines in [(p, m) for p in args.pipelines for m in args.machines]:
        if machines is not None and pipeline != "failure_risk":
            if machines != args.machines[0]:
                continue
            machines = None  # the process table has no fleet size
        report(pipeline if machines is None else f"{pipeline} [{machines} machines]", pipeline, machines, args)


def report(title: str, pipeline: str, machines: int | None, args: argparse.Namespace) -> None:
    """Train ``pipeline`` on every seed (and model / training setting), print per seed and the summary."""
    rows: list[dict[str, float]] = []
    for seed in args.seeds:
        row: dict[str, float] = {}
        for model, setting in [(m, t) for m in args.models for t in args.training]:
            out = run(pipeline, seed, args.epochs, model, args.model_options, TRAINING[setting], machines)
            label = (model or "model") + ("" if setting == "default" else f" [{setting}]")
            row[label], row[f"{label} seconds"] = out.pop("model"), out.pop("seconds")
            for kind in ("valid", "oof"):
                if kind in out:
                    row[f"{label} {kind}"] = out.pop(kind)
            for name, value in out.items():
                row.setdefault(name, value)
        rows.append(row)
        print(f"{title} seed {seed}: " + ", ".join(f"{k} {v:.4f}" if "seconds" not in k else f"{k} {v:.0f}"
                                                    for k, v in row.items()), flush=True)
    keys = [k for k in rows[0] if "seconds" not in k and all(k in r for r in rows)]
    summary = ", ".join(f"{k} {statistics.mean(r[k] for r in rows):.4f}"
                        + (f" ± {statistics.stdev(r[k] for r in rows):.4f}" if len(rows) > 1 else "") for k in keys)
    print(f"{title} mean over {len(rows)} seeds (± SD): {summary}", flush=True)
    if len(rows) > 1 and len(keys) > 1:
        gbm = "hist_gradient_boosting"
        for k in keys:
            if k != gbm and gbm in rows[0] and not k.endswith((" valid", " oof")):
                diffs = [r[k] - r[gbm] for r in rows]
                print(f"{title} {k} − {gbm}: mean {statistics.mean(diffs):+.4f}, per seed "
                      + ", ".join(f"{d:+.3f}" for d in diffs), flush=True)
    for k in rows[0]:
        if "seconds" in k:
            print(f"{title} {k}: median {statistics.median(r[k] for r in rows):.0f} s (train() end to end: "
                  "data, fit, baselines, evaluation, export, report)", flush=True)


if __name__ == "__main__":
    main()
