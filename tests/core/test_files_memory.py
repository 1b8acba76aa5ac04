"""Peak memory of training on a folder of images does not grow with the number of images.

One child process trains the files reference pipeline (load → validate → split → fit → evaluate, one
epoch) on 200 images, then on 2,000, and reports its peak resident set size after each
(``bench/files_train_memory.py --one-process``; the benchmark itself compares 300 and 3,000 images in
separate processes, and its ``--materialize`` control shows the growth this test would catch: holding
each split's pixels and activations at once adds well over 100 MB at 2,000 images).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("torch")

BENCH = Path(__file__).resolve().parents[2] / "bench" / "files_train_memory.py"
SMALL, LARGE = 200, 2000
ALLOWED_GROWTH_MB = 40


@pytest.mark.slow
def test_training_peak_memory_does_not_grow_with_the_number_of_images(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("files_train_memory", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    small, large = bench.measure([SMALL, LARGE], one_process=True, root=tmp_path)
    assert (small["images"], large["images"]) == (SMALL, LARGE)
    assert not small["materialize"] and large["test_auc"] > 0.8  # it did train on the larger folder
    growth = large["peak_rss_mb"] - small["peak_rss_mb"]
    assert growth < ALLOWED_GROWTH_MB, (
        f"peak RSS grew by {growth:.0f} MB from {SMALL} to {LARGE} images "
        f"({small['peak_rss_mb']} → {large['peak_rss_mb']} MB): training holds something per image")
