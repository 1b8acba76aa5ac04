"""The core's v2 scoring path with a minimal grouping pipeline: input grouped by the core (bounded
memory), context across batches, rows without output, preprocessor rejects, named artifacts and side
outputs committed with their part — and identical output however the input is laid out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from verticals.engine import train
from verticals.hookspecs import hookimpl
from verticals.pipeline import Pipeline
from verticals.scoring import score
from verticals.spec import (
    CONTEXT,
    Batch,
    Column,
    DatasetSpec,
    ModelSpec,
    OutputColumn,
    Preprocessor,
    Schema,
    SplitSpec,
    TensorSpec,
    TrainingConfig,
)
from verticals.testing import use_plugins

WINDOW = 3
BAD = -999.0


class LagPreprocessor(Preprocessor):
    """One example per reading with WINDOW - 1 earlier readings of its machine: the last WINDOW values."""

    rowwise = False
    materialize = False
    group_by = "machine"
    order_by = "t"
    context_rows = WINDOW - 1
    workers = 2

    def fit(self, frame):
        pass

    def transform(self, frame, *, with_target):
        context = frame[CONTEXT].to_numpy() if CONTEXT in frame.columns else np.zeros(frame.height, bool)
        x = frame["x"].to_numpy().astype(np.float32)
        machines = frame["machine"].to_numpy()
        inputs, ids, targets, rejects = [], [], [], []
        skipped = 0
        for i in range(frame.height):
            if context[i]:
                continue
            if x[i] == BAD:
                rejects.append((i, f"reading {frame['t'][i]} of {machines[i]} is the sensor's error code"))
                continue
            lo = i - WINDOW + 1
            if lo < 0 or machines[lo] != machines[i]:
                skipped += 1
                continue
            window = x[lo:i + 1]
            if (window == BAD).any():
                skipped += 1
                continue
            inputs.append(window)
            ids.append((machines[i], int(frame["t"][i])))
            if with_target:
                targets.append(float(frame["y"][i]))
        batch = Batch(
            ids=pl.DataFrame(ids, schema={"machine": pl.String, "t": pl.Int64}, orient="row"),
            inputs={"x": np.asarray(inputs, dtype=np.float32).reshape(-1, WINDOW)},
            target=np.asarray(targets, dtype=np.float32) if with_target else None,
            rejects=pl.DataFrame(rejects, schema={"_row": pl.Int64, "_reason": pl.String}, orient="row"),
            skipped={f"fewer than {WINDOW} readings": skipped} if skipped else {})
        return batch

    def signature(self):
        return {"x": TensorSpec("float32", (-1, WINDOW))}

    def info(self):
        return {}

    def state(self):
        return {}

    def load_state(self, state):
        pass


def factory(info, **options):
    import torch

    class Lag(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(WINDOW, 1)

        def forward(self, x):
            return self.linear(x).squeeze(1)

    return Lag()


class LagPipeline(Pipeline):
    name = "lag"
    dataset = "readings"
    model = "linear"
    task = "regression"
    score_column = "score"
    primary_metric = "mse"
    greater_is_better = False
    output_columns = (OutputColumn("score", "float"), OutputColumn("scaled", "float"),
                      OutputColumn("note", "string"))
    training = TrainingConfig(epochs=2, batch_size=64, class_weighting=False)

    def preprocessor(self, dataset):
        return LagPreprocessor()

    def metrics(self, y_true, y_score):
        return {"mse": float(np.mean((y_true - y_score) ** 2))}

    def artifacts(self, context):
        return {"scale": np.array([2.0], dtype=np.float64)}

    def postprocess(self, outputs, batch, extras):
        score_ = outputs["value"].reshape(-1).astype(np.float64)
        scale = float(extras.artifacts["scale"][0]) if "scale" in extras.artifacts else 1.0  # not during training
        notes = [""] * len(batch)
        if extras.writes_side_outputs:
            for i, (machine, t) in enumerate(batch.ids.iter_rows()):
                path, rel = extras.side_output(f"{machine}-{t}.txt")
                Path(path).write_text(f"{score_[i]:.6f}\n")
                notes[i] = rel
        return pl.DataFrame({"score": score_, "scaled": score_ * scale, "note": notes})


class LagPlugin:
    @hookimpl
    def register_datasets(self, register):
        register(DatasetSpec("readings", lambda: readings(12, 40, seed=0).lazy(), Schema((
            Column("machine", "string", role="group"), Column("t", "int", role="time"),
            Column("x", "float"), Column("y", "float", role="target"))),
            split=SplitSpec("group_time", test_fraction=0.2, valid_fraction=0.2, gap=2)))

    @hookimpl
    def register_models(self, register):
        register(ModelSpec("linear", factory, outputs=("value",)))

    @hookimpl
    def register_pipelines(self, register):
        register(LagPipeline())


def readings(machines: int, per: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for m in range(machines):
        x = rng.normal(size=per).cumsum()
        for t in range(per):
            rows.append({"machine": f"m{m:02d}", "t": t, "x": float(x[t]), "y": float(x[max(0, t - 1)])})
    return pl.DataFrame(rows)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    with use_plugins({"shapes": LagPlugin()}):
        result = train("shapes.lag", home=home, progress=False, variants=())
    return home, result


def _score(home, frame: pl.DataFrame, tmp: Path, name: str, row_group: int | None = None) -> tuple[pl.DataFrame, dict]:
    src = tmp / f"{name}.parquet"
    frame.write_parquet(src, row_group_size=row_group or max(1, frame.height))
    out = tmp / f"{name}-out"
    with use_plugins({"shapes": LagPlugin()}):
        manifest = score("shapes.lag", src, out, home=home, progress=False)
    parts = pl.concat([pl.read_parquet(p) for p in sorted(out.glob("part-*.parquet"))])
    return parts.sort("machine", "t"), manifest | {"_out": out}


def test_training_streams_grouped_examples_and_stores_artifacts(trained):
    _home, result = trained
    assert "named_artifacts" in result.manifest and "scale" in result.manifest["named_artifacts"]
    assert (result.path / result.manifest["named_artifacts"]["scale"]["file"]).is_file()
    assert result.manifest["training_data"]["splits"]["test"] > 0


def test_interleaved_input_in_many_row_groups_scores_like_one_grouped_piece(trained, tmp_path):
    home, _ = trained
    frame = readings(6, 25, seed=1).with_columns(
        pl.when((pl.col("machine") == "m02") & (pl.col("t") == 10)).then(BAD).otherwise(pl.col("x")).alias("x"))
    frame = frame.vstack(pl.DataFrame({"machine": ["short"] * 2, "t": [0, 1], "x": [0.1, 0.2], "y": [0.0, 0.0]}))
    grouped, m1 = _score(home, frame, tmp_path, "grouped")
    # An event log: sorted by time, machines interleaved, cut into many small row groups.
    interleaved = frame.sort("t", "machine")
    scattered, m50 = _score(home, interleaved, tmp_path, "scattered", row_group=3)
    assert grouped.drop("note", "model_version").equals(scattered.drop("note", "model_version"))
    # Exact accounting: every input row is scored or rejected; rows without a window are counted.
    for m in (m1, m50):
        assert m["rows_in"] == frame.height == m["rows_scored"] + m["rows_rejected"]
        assert m["rows_rejected"] == 1
        # each machine's first WINDOW-1 readings, the 2-reading machine, and the windows over the bad reading
        assert m["rows_no_output"] == 6 * (WINDOW - 1) + 2 + (WINDOW - 1)
        assert m["rows_out"] == m["rows_scored"] - m["rows_no_output"] == grouped.height
        assert m["no_output_reasons"] == {f"fewer than {WINDOW} readings": m["rows_no_output"]}
    rejects = pl.read_parquet(m50["_out"] / "_rejects.parquet")
    assert rejects.height == 1 and "error code" in rejects["_reason"][0]
    src_row = interleaved.with_row_index().filter(pl.col("x") == BAD)["index"][0]
    assert rejects["_row"][0] == src_row and rejects["_source"][0].endswith("scattered.parquet")
    # Artifacts reach postprocess; side outputs are committed with their part and named relative to the output.
    assert np.allclose(scattered["scaled"], 2 * scattered["score"])
    for rel, value in scattered.select("note", "score").iter_rows():
        assert abs(float((m50["_out"] / rel).read_text()) - value) < 1e-5
    assert not list(m50["_out"].glob(".state*"))


def test_grouped_csv_input_is_read_like_any_scoring_input(trained, tmp_path):
    """A grouped pipeline's CSV goes through the reader that training and row-wise scoring use: any
    encoding, and a ragged row fails in one line naming the file and the line."""
    from verticals.data.files import CsvOptions
    from verticals.errors import DataValidationError

    home, _ = trained
    frame = readings(3, 8, seed=2).sort("t", "machine")
    expected, _ = _score(home, frame, tmp_path, "reference")
    text = frame.with_columns(pl.col("machine").str.replace("m", "mé")).write_csv()
    latin = tmp_path / "latin.csv"
    latin.write_bytes(text.encode("latin-1"))
    out = tmp_path / "latin-out"
    with use_plugins({"shapes": LagPlugin()}):
        manifest = score("shapes.lag", latin, out, home=home, progress=False, csv=CsvOptions(encoding="latin-1"))
    scored = pl.concat([pl.read_parquet(p) for p in sorted(out.glob("part-*.parquet"))]).sort("machine", "t")
    assert manifest["rows_in"] == frame.height
    assert scored["machine"].str.replace("mé", "m").to_list() == expected["machine"].to_list()
    assert np.allclose(scored["score"].to_numpy(), expected["score"].to_numpy())

    ragged = tmp_path / "ragged.csv"
    ragged.write_text(frame.write_csv() + "m09,3\n")
    with use_plugins({"shapes": LagPlugin()}), pytest.raises(DataValidationError) as err:
        score("shapes.lag", ragged, tmp_path / "ragged-out", home=home, progress=False)
    assert f"line {frame.height + 2} has 2 fields but the header has 4" in str(err.value)


def test_windows_across_batch_boundaries_get_their_context(trained, tmp_path, monkeypatch):
    """A group larger than a batch is cut into pieces that carry the previous WINDOW-1 readings."""
    home, _ = trained
    frame = readings(2, 300, seed=2)
    whole, _ = _score(home, frame, tmp_path, "whole")
    src = tmp_path / "small.parquet"
    frame.write_parquet(src)
    with use_plugins({"shapes": LagPlugin()}):
        manifest = score("shapes.lag", src, tmp_path / "small-out", home=home, progress=False, batch_size=16)
    small = pl.concat([pl.read_parquet(p) for p in sorted((tmp_path / "small-out").glob("part-*.parquet"))])
    assert small.sort("machine", "t").drop("note").equals(whole.drop("note"))
    assert manifest["rows_no_output"] == 2 * (WINDOW - 1)
    saved = json.loads((tmp_path / "small-out" / "_manifest.json").read_text())
    assert saved["rows_in"] == saved["rows_scored"] == 600


def test_batch_size_is_bounded_by_bytes():
    from verticals.scoring.session import batch_rows

    images = {"inputs": {"pixels": {"dtype": "float32", "shape": [-1, 3, 224, 224]}}}
    rows = batch_rows(65536, images, budget=256 << 20)
    assert rows == (256 << 20) // (3 * 224 * 224 * 4) == 445
    tabular = {"inputs": {"x_num": {"dtype": "float32", "shape": [-1, 16]}}}
    assert batch_rows(65536, tabular, budget=256 << 20) == 65536


def test_conformance_kit_takes_a_grouping_pipeline_through(tmp_path):
    from verticals.testing.conformance import check_pipeline

    with use_plugins({"shapes": LagPlugin()}):
        report = check_pipeline("shapes.lag", home=tmp_path, epochs=1, sample_rows=100)
    assert "layout-independent scoring" in report.checks and "deterministic scoring" in report.checks
    assert report.rows_in == report.rows_scored + report.rows_rejected > 0


def test_input_above_the_bucket_size_is_grouped_in_hash_buckets_with_the_same_output(trained, tmp_path,
                                                                                     monkeypatch):
    """Above ``BUCKET_ROWS`` input rows the core sorts the input one hash bucket of groups at a time
    (bounded memory): the scores, the accounting, the rejects (file and row) and the side outputs are
    those of the one-sort path, from a folder holding a Parquet file in many row groups and a CSV file."""
    from verticals.scoring import grouping

    home, _ = trained
    bad = pl.when((pl.col("machine") == "m03") & (pl.col("t") == 7)).then(BAD).otherwise(pl.col("x")).alias("x")
    first = readings(9, 20, seed=3).with_columns(bad).sort("t", "machine")
    second = readings(4, 12, seed=4).with_columns(pl.col("machine").str.replace("m", "n")).sort("t", "machine")
    folder = tmp_path / "in"
    folder.mkdir()
    first.write_parquet(folder / "a.parquet", row_group_size=7)
    second.write_csv(folder / "b.csv")

    def run(name: str) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
        with use_plugins({"shapes": LagPlugin()}):
            manifest = score("shapes.lag", folder, tmp_path / name, home=home, progress=False)
        parts = pl.concat([pl.read_parquet(p) for p in sorted((tmp_path / name).glob("part-*.parquet"))])
        notes = [(tmp_path / name / rel).read_text() for rel in parts["note"]]
        return (parts.with_columns(pl.Series("note", notes)).sort("machine", "t"),
                pl.read_parquet(tmp_path / name / "_rejects.parquet"), manifest)

    one, one_rejects, m1 = run("one-sort")
    cut = []
    original = grouping._bucket_files
    monkeypatch.setattr(grouping, "_bucket_files", lambda *a, **k: cut.append(a[4]) or original(*a, **k))
    monkeypatch.setattr(grouping, "BUCKET_ROWS", 40)
    monkeypatch.setattr(grouping, "ROWS_PER_PART", 30)
    bucketed, bucketed_rejects, m2 = run("bucketed")
    assert cut == [-(-(first.height + second.height) // 40)]  # the bucketed path ran, in 6 buckets
    assert m2["rows_in"] == first.height + second.height == m2["rows_scored"] + m2["rows_rejected"]
    assert len(m2["parts"]) > len(m1["parts"])  # cut into more, smaller partitions
    for key in ("rows_in", "rows_scored", "rows_rejected", "rows_out", "rows_no_output", "no_output_reasons"):
        assert m1[key] == m2[key], key
    assert bucketed.drop("model_version").equals(one.drop("model_version"))
    assert bucketed_rejects.equals(one_rejects) and bucketed_rejects.height == 1
    assert bucketed_rejects["_source"][0].endswith("a.parquet")
    assert bucketed_rejects["_row"][0] == first.with_row_index().filter(pl.col("x") == BAD)["index"][0]
    assert not list(tmp_path.glob(".bucketed*")) and not list(tmp_path.rglob(".bucket-*"))
