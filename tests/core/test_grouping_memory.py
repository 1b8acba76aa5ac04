"""Peak memory of grouping a scoring input does not grow with the input.

A grouping pipeline's input is sorted by (group, order) before it is scored. Sorting it in one piece
held the whole input in memory (10M interactions: 2.2 GB); above ``BUCKET_ROWS`` rows the core now cuts
it into hash buckets of groups and sorts one at a time. Each size here is grouped in a fresh process
(``grouped_partitions`` alone, no model) and its peak resident memory (``VmHWM``) read; the bucket size
is lowered so that 10× the rows means 10× the buckets. ``bench/score_bench.py memory --shape ranking``
measures the whole scoring run at 1M and 10M interactions.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
SMALL, LARGE = 100_000, 1_000_000
BUCKET_ROWS = 25_000  # and row groups (input and grouped) of 8,192 rows: both sizes hold many of each
PART_ROWS = 8_192
ALLOWED_GROWTH_MB = 50  # seen: +7 to +16 MB bucketed (40 buckets against 4); +92 to +170 MB in one sort

CHILD = r"""
import json, sys
from pathlib import Path
from types import SimpleNamespace
from verticals.scoring import grouping
from verticals.scoring.partitions import plan_partitions
from verticals.testing.ranking import interactions_schema

source, staging, bucket_rows, part_rows = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
grouping.BUCKET_ROWS, grouping.ROWS_PER_PART = bucket_rows, part_rows
session = SimpleNamespace(preprocessor=SimpleNamespace(rowwise=False, group_by="user", order_by="timestamp"),
                          schema=interactions_schema(), version=SimpleNamespace(label="ranking v1"))
parts = grouping.grouped_partitions(session, plan_partitions(source), staging)
status = Path("/proc/self/status").read_text().splitlines()
peak = next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM:"))
print(json.dumps({"peak_rss_mb": peak, "rows": sum(p.rows for p in parts), "partitions": len(parts)}))
"""


def _group(source: Path, staging: Path, bucket_rows: int = BUCKET_ROWS) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(source), str(staging), str(bucket_rows), str(PART_ROWS)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc")
def test_grouping_peak_memory_does_not_grow_with_the_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sys.path.insert(0, str(BENCH))
    try:
        import memory_shapes
        from memory_shapes import _ranking_input
    finally:
        sys.path.remove(str(BENCH))
    monkeypatch.setattr(memory_shapes, "CHUNK_ROWS", PART_ROWS)
    catalogue = SimpleNamespace(manifest={"preprocessor": {"items": [f"sku-{i:03d}" for i in range(80)]}})
    small = _group(_ranking_input(tmp_path, SMALL, catalogue), tmp_path / "small")
    large = _group(_ranking_input(tmp_path, LARGE, catalogue), tmp_path / "large")
    assert (small["rows"], large["rows"]) == (SMALL, LARGE)  # every row grouped, none lost or repeated
    growth = large["peak_rss_mb"] - small["peak_rss_mb"]
    assert growth < ALLOWED_GROWTH_MB, (
        f"grouping {SMALL:,} then {LARGE:,} rows: peak RSS grew by {growth:.0f} MB "
        f"({small['peak_rss_mb']:.0f} → {large['peak_rss_mb']:.0f} MB): the sort holds the whole input again")
