"""Small data, lever "calibrate the average": does the bag of fold models need a steeper Platt slope?

The final small-data model averages the logits of 10 fold models (5 folds × 2 runs); Platt scaling is
fitted on the out-of-fold logits, where each row's logit is the mean of only 2 models (one per run). If
the members disagree, an average of more of them has less member noise, and by regression dilution its
best Platt slope is steeper than the one fitted on the 2-model average. This bench measures that
without the test split, then reports what the test split says:

* out of fold: the slope fitted on one run's logits (one model per row, ``a1``), on the 2-run mean
  (``a``, what the pipeline uses), and the slope the dilution model predicts for the 2-run mean from
  ``a1`` and the runs' disagreement (``a2_pred``). If ``a2_pred`` matches ``a``, extrapolating to the
  10-model average (slope × ``factor``) is supported;
* test: Brier score with the pipeline's calibration (``brier``), with the slope corrected for the bag
  (``brier_bag_slope``), and with a Platt fit on the test split itself (``brier_test_fit``: a bound no
  calibration can beat, never a setting).

Only the fit stage runs (no export, no report): a few seconds per seed. Same data, splits and seeds as
``bench/finance_small_data.py``.

Run: ``.venv/bin/python bench/finance_small_calibration.py [--seeds 5] [--smoothness 3] [--out DIR]``
(``--smoothness 0`` gives the previous release's fold models).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--smoothness", type=float, default=None,
                        help="smoothness penalty on small data (default: the pipeline's; 0: none)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="verticals-small-cal-"))
    out.mkdir(parents=True, exist_ok=True)
    os.environ["VERTICALS_HOME"] = str(out / "home")
    os.environ["VERTICALS_DATA_CONFIG"] = str(out / "small.toml")
    sys.path.insert(0, str(Path(__file__).parent))
    import finance_small_data as small  # the same sample and config

    csv = small.sample(args.rows, 7, out / "loans.csv")
    (out / "small.toml").write_text(small.CONFIG.format(data=csv))

    import numpy as np
    import polars as pl
    from verticals.engine import fit, load_data, split_data, validate_data
    from verticals.training import predict_outputs
    from verticals_finance.calibration import apply_platt, fit_platt, match_mean
    from verticals_finance.pipeline import CreditRiskPipeline

    if args.smoothness is not None:
        CreditRiskPipeline.small_data_smoothness = args.smoothness or None
    name = "finance.small_lender"

    def brier(z: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean((1.0 / (1.0 + np.exp(-z)) - y) ** 2))

    header = ("seed", "a1", "a2_pred", "a", "factor", "a_test", "brier", "brier_bag_slope", "brier_test_fit")
    print(" ".join(f"{h:>15}" for h in header))
    rows = []
    for seed in range(1, args.seeds + 1):
        splits = split_data(name, validate_data(name, load_data(name)), seed)
        fitted = fit(name, splits, seed=seed, progress=False)
        pre, graph, model = fitted.modules()
        record = fitted.crossfit
        pool = pre.transform(pl.concat([splits.train, splits.valid], how="vertical_relaxed"), with_target=True)
        test = pre.transform(splits.test, with_target=True)
        logits = {k: predict_outputs(model, graph, b, device="cpu", batch_size=65536,
                                     names=("logits", "contributions"))["logits"].reshape(-1).astype(np.float64)
                  for k, b in (("pool", pool), ("test", test))}
        y_oof, y_test = np.asarray(record.target, np.float64), np.asarray(test.target, np.float64)
        oof = np.asarray(record.outputs["logits"], np.float64).reshape(-1)
        runs = np.stack([np.asarray(r["logits"], np.float64).reshape(-1) for r in record.repeat_outputs])
        r, m = runs.shape[0], record.models
        noise = float(np.mean(np.var(runs, axis=0, ddof=1)))  # one member's disagreement, per row
        signal = max(float(np.var(oof)) - noise / r, 1e-12)
        a1 = fit_platt(runs[0], y_oof)["a"]
        a2_pred = a1 * (signal + noise) / (signal + noise / r)
        factor = (signal + noise / r) / (signal + noise / m)
        cal = fit_platt(oof, y_oof)
        used = match_mean(cal, logits["pool"], y_oof)  # what the pipeline scores with
        steeper = match_mean({**cal, "a": cal["a"] * factor}, logits["pool"], y_oof)
        on_test = fit_platt(logits["test"], y_test)
        row = (seed, a1, a2_pred, cal["a"], factor, on_test["a"], brier(apply_platt(logits["test"], used), y_test),
               brier(apply_platt(logits["test"], steeper), y_test), brier(apply_platt(logits["test"], on_test), y_test))
        rows.append(row)
        print(" ".join(f"{v:>15.5f}" if isinstance(v, float) else f"{v:>15}" for v in row), flush=True)
    print(" ".join([f"{'mean':>15}"] + [f"{float(np.mean([x[i] for x in rows])):>15.5f}"
                                         for i in range(1, len(header))]))


if __name__ == "__main__":
    main()
