"""The repeated-id check over a run's output runs in hash buckets (bounded memory) and finds what one
pass over all ids finds."""

from __future__ import annotations

import polars as pl


def test_duplicate_id_check_in_buckets_finds_what_one_pass_finds(tmp_path):
    from verticals.scoring.checks import duplicate_ids

    files = []
    for i in range(3):
        ids = [*range(i * 1000, i * 1000 + 1000), 7, 7, 1500, 2999, None]  # repeats within and across files
        path = tmp_path / f"part-{i}.parquet"
        pl.DataFrame({"id": ids, "k": [i % 2] * len(ids)}, schema={"id": pl.Int64, "k": pl.Int64}).write_parquet(path)
        files.append(path)
    for cols in (["id"], ["id", "k"]):
        one = duplicate_ids(files, cols, rows=3015)
        for bucket_rows in (400, 1000, 5000):
            assert duplicate_ids(files, cols, rows=3015, bucket_rows=bucket_rows) == one
    assert one["ids"] >= 3 and one["examples"][0]["count"] >= 2
