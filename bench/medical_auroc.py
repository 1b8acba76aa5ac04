"""medical.imaging on its embedded default at full size: test AUROC against the pixel-logistic baseline.

    VERTICALS_PSEUDONYM_KEY=... .venv/bin/python bench/medical_auroc.py [--home DIR] [--seed 42]

Trains the registered pipeline exactly as ``verticals train medical.imaging`` does (120 synthetic
patients × 4 CT slices, patient-level split 60/20/20 %, 64-pixel inputs, early stopping on validation
AUROC) into a temporary model store, and prints the test metrics, the baseline, the operating point and
the wall time. The goal is a test AUROC of at least 0.95.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--home", default=None, help="model store (default: a temporary folder)")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    os.environ.setdefault("VERTICALS_PSEUDONYM_KEY", "bench-only-key-not-secret-0123456789")
    home = args.home or tempfile.mkdtemp(prefix="medical-auroc-")
    os.environ["VERTICALS_HOME"] = home
    import torch
    from verticals.engine import train

    t0 = time.perf_counter()
    result = train("medical.imaging", home=home, seed=args.seed, progress=False, variants=())
    seconds = time.perf_counter() - t0
    metrics = json.loads((result.path / "metrics.json").read_text())
    test = metrics["test"]
    manifest = json.loads((result.path / "manifest.json").read_text())
    print(json.dumps({
        "test_auroc": test.get("auroc"), "pixel_logistic_auroc": metrics["baselines"]["pixel_logistic"]["auroc"],
        "sensitivity": test.get("sensitivity"), "specificity": test.get("specificity"),
        "operating_point": manifest["extras"].get("operating_point"), "confusion": test.get("confusion"),
        "brier": test.get("calibration", {}).get("brier"), "epochs_run": manifest["training"]["epochs_run"],
        "best_epoch": manifest["training"]["best_epoch"], "fit_seconds": manifest["training"]["seconds"],
        "seconds": round(seconds, 1), "torch_threads": torch.get_num_threads(), "model": str(result.path),
    }, indent=2))


if __name__ == "__main__":
    main()
