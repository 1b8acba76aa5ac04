"""Built-in credit pipeline against its baselines over several split seeds (docs/finance.md, "Results").

Trains ``finance.credit_risk`` on ``credit_data`` once per split seed (42 is the default split) into a
temporary model store and prints test AUC and Brier score of the model, logistic regression and
gradient boosting, fitted by the same run on the same split.

Run: ``.venv/bin/python bench/finance_credit_seeds.py [--seeds 42 1 2 3 4 5 6 7]``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2, 3, 4, 5, 6, 7])
    parser.add_argument("--pipeline", default="finance.credit_risk")
    args = parser.parse_args()
    os.environ.setdefault("VERTICALS_HOME", tempfile.mkdtemp(prefix="verticals-seeds-"))

    from verticals.engine import train

    header = ("seed", "auc", "auc_lr", "auc_gb", "vs_best", "brier", "brier_lr", "brier_gb")
    print(" ".join(f"{h:>9}" for h in header), flush=True)
    rows = []
    for seed in args.seeds:
        result = train(args.pipeline, seed=seed, progress=False, variants=())
        test = result.metrics["test"]
        base = json.loads((result.path / "metrics.json").read_text())["baselines"]
        lr, gb = base["logistic_regression"], base["hist_gradient_boosting"]
        row = (seed, test["auc"], lr["auc"], gb["auc"], test["auc"] - max(lr["auc"], gb["auc"]),
               test["brier"], lr["brier"], gb["brier"])
        rows.append(row)
        print(" ".join(f"{v:>9.4f}" if isinstance(v, float) else f"{v:>9}" for v in row), flush=True)
    mean = [sum(r[i] for r in rows) / len(rows) for i in range(1, len(header))]
    print(" ".join([f"{'mean':>9}"] + [f"{v:>9.4f}" for v in mean]))


if __name__ == "__main__":
    main()
