"""Scoring with bad input: every case fails with a one-line error naming what and where, or scores the
good rows and reports the others; none leaves output that looks complete."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scoring_support import (
    PIPELINE,
    ScoringTestPlugin,
    cached_model,
    make_rows,
    read_output,
    register_model,
    write_parquet,
)
from verticals.errors import DataValidationError, ModelIntegrityError, NotFoundError, UserError
from verticals.scoring import output as scoring_output
from verticals.scoring import score
from verticals.testing import use_plugins


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    return cached_model(tmp_path_factory)


@pytest.fixture(autouse=True)
def plugin():
    with use_plugins({"scoretest": ScoringTestPlugin()}):
        yield


@pytest.fixture
def home(tmp_path, model_files):
    home = tmp_path / "home"
    register_model(home, model_files)
    return home


def run(data, out, home, **kw):
    return score(PIPELINE, data, out, home=home, device="cpu", progress=False, **kw)


def only_inputs_left(tmp_path: Path, *inputs: str) -> None:
    """No output and no staging folder exist next to the inputs (nothing that looks complete)."""
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["home", *inputs])


def test_missing_input_file(tmp_path, home):
    with pytest.raises(NotFoundError, match=r"input .*nope\.parquet does not exist"):
        run(tmp_path / "nope.parquet", tmp_path / "out", home)
    only_inputs_left(tmp_path)


def test_truncated_parquet_is_named(tmp_path, home):
    data = write_parquet(make_rows(500), tmp_path / "in.parquet")
    blob = data.read_bytes()
    data.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataValidationError, match=r"in\.parquet: cannot read as Parquet"):
        run(data, tmp_path / "out", home)
    only_inputs_left(tmp_path, "in.parquet")


def test_file_that_is_not_parquet(tmp_path, home):
    (tmp_path / "in.parquet").write_text("id,x1\n1,2\n")
    with pytest.raises(DataValidationError, match=r"in\.parquet: cannot read as Parquet"):
        run(tmp_path / "in.parquet", tmp_path / "out", home)


def test_unreadable_parquet_pages(tmp_path, home):
    """Damage inside the data pages (footer intact): the read fails naming the row group."""
    data = write_parquet(make_rows(3000), tmp_path / "in.parquet", row_group=3000)
    import pyarrow.parquet as pq

    col = pq.ParquetFile(data).metadata.row_group(0).column(1)  # x1
    blob = bytearray(data.read_bytes())
    start = col.data_page_offset
    blob[start:start + 64] = b"\xff" * 64  # page header garbage
    data.write_bytes(bytes(blob))
    with pytest.raises(DataValidationError, match=r"in\.parquet row group 0: cannot read Parquet data"):
        run(data, tmp_path / "out", home)
    only_inputs_left(tmp_path, "in.parquet")


def test_missing_required_column_is_named_before_anything_is_scored(tmp_path, home):
    good = write_parquet(make_rows(300), tmp_path / "in" / "a.parquet")
    write_parquet(make_rows(300, start=300).drop("x3"), tmp_path / "in" / "b.parquet")
    with pytest.raises(DataValidationError, match=r"b\.parquet: missing required column\(s\) 'x3'"):
        run(tmp_path / "in", tmp_path / "out", home)
    only_inputs_left(tmp_path, "in")
    assert good.exists()


def test_column_of_an_unusable_type(tmp_path, home):
    frame = make_rows(50).with_columns(pl.col("x2").map_elements(lambda v: [v], return_dtype=pl.List(pl.Float64)))
    data = write_parquet(frame, tmp_path / "in.parquet")
    with pytest.raises(DataValidationError, match=r"column 'x2' has type List\(Float64\), which cannot be read as float"):
        run(data, tmp_path / "out", home)
    only_inputs_left(tmp_path, "in.parquet")


def test_wrong_value_types_reject_those_rows_only(tmp_path, home):
    frame = make_rows(20).with_columns(pl.col("x1").cast(pl.String), pl.col("x5").cast(pl.String))
    frame = frame.with_columns(
        pl.when(pl.col("id") == 3).then(pl.lit("abc")).otherwise(pl.col("x1")).alias("x1"),
        pl.when(pl.col("id") == 4).then(pl.lit("12 apples")).otherwise(pl.col("x5")).alias("x5"))
    data = write_parquet(frame, tmp_path / "in.parquet")
    manifest = run(data, tmp_path / "out", home)
    scores, rejects, _ = read_output(tmp_path / "out")
    assert (manifest["rows_scored"], manifest["rows_rejected"]) == (18, 2)
    reasons = dict(zip(rejects["id"].to_list(), rejects["_reason"].to_list(), strict=True))
    assert reasons == {"3": "column 'x1': cannot read abc as float", "4": "column 'x5': cannot read 12 apples as int"}
    assert sorted(scores["id"].to_list()) == [i for i in range(20) if i not in (3, 4)]


def test_extra_columns_are_ignored_with_a_warning(tmp_path, home):
    frame = make_rows(100).with_columns(pl.lit("x").alias("comment"), pl.lit(1).alias("branch_code"))
    data = write_parquet(frame, tmp_path / "in.parquet")
    with pytest.warns(UserWarning, match="ignoring column.*comment, branch_code"):
        manifest = run(data, tmp_path / "out", home)
    assert manifest["rows_scored"] == 100
    assert any("comment" in w for w in manifest["warnings"])
    assert "comment" not in read_output(tmp_path / "out")[0].columns


def test_nan_and_infinity_are_imputed_or_rejected_never_scored_as_garbage(tmp_path, home):
    frame = make_rows(40)
    x1 = frame["x1"].to_numpy().copy()
    x1[[1, 2]] = np.nan
    x1[[5]] = np.inf
    x3 = frame["x3"].to_numpy().copy()
    x3[[6]] = -np.inf
    data = write_parquet(frame.with_columns(pl.Series("x1", x1), pl.Series("x3", x3)), tmp_path / "in.parquet")
    manifest = run(data, tmp_path / "out", home)
    scores, rejects, _ = read_output(tmp_path / "out")
    assert (manifest["rows_scored"], manifest["rows_rejected"]) == (38, 2)
    assert sorted(rejects["id"].to_list()) == ["5", "6"]
    assert {1, 2} <= set(scores["id"].to_list())
    assert np.isfinite(scores["score"].to_numpy()).all()
    assert ((scores["score"] > 0) & (scores["score"] < 1)).all()


def test_empty_files_give_an_empty_but_complete_output(tmp_path, home):
    empty = make_rows(0)
    write_parquet(empty, tmp_path / "in" / "empty.parquet")
    (tmp_path / "in" / "zero.csv").write_text("")
    empty.write_csv(tmp_path / "in" / "header_only.csv")
    manifest = run(tmp_path / "in", tmp_path / "out", home)
    assert (manifest["rows_in"], manifest["rows_scored"], manifest["rows_rejected"]) == (0, 0, 0)
    assert any("no rows" in w for w in manifest["warnings"])
    scores, rejects, _ = read_output(tmp_path / "out")
    assert len(manifest["parts"]) == 3 and scores.height == 0 and rejects.height == 0
    assert pl.read_parquet(tmp_path / "out" / "part-00000.parquet").columns == ["id", "score", "flags", "model_version"]


def test_csv_with_a_broken_row(tmp_path, home):
    path = tmp_path / "in.csv"
    make_rows(10).write_csv(path)
    with open(path, "a") as fh:
        fh.write("1,2,3\n")  # too few fields
    with pytest.raises(DataValidationError, match=r"in\.csv: line 12 has 3 fields but the header has 9"):
        run(path, tmp_path / "out", home)
    only_inputs_left(tmp_path, "in.csv")


def test_unknown_pipeline_and_model_version(tmp_path, home):
    data = write_parquet(make_rows(10), tmp_path / "in.parquet")
    with pytest.raises(NotFoundError, match=r"unknown pipeline 'scoretest\.nope'"):
        score("scoretest.nope", data, tmp_path / "out", home=home, progress=False)
    with pytest.raises(NotFoundError, match="has no version 7; versions: v1"):
        run(data, tmp_path / "out", home, model="7")
    with pytest.raises(NotFoundError, match="no alias 'staging'"):
        run(data, tmp_path / "out", home, model="staging")
    only_inputs_left(tmp_path, "in.parquet")


def test_modified_model_file_is_refused(tmp_path, home):
    data = write_parquet(make_rows(10), tmp_path / "in.parquet")
    model = home / "models" / PIPELINE / "v1" / "model.onnx"
    with open(model, "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ModelIntegrityError, match=r"'model.onnx'.*has changed"):
        run(data, tmp_path / "out", home)
    only_inputs_left(tmp_path, "in.parquet")


def test_existing_output_is_refused_without_overwrite(tmp_path, home):
    data = write_parquet(make_rows(10), tmp_path / "in.parquet")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match=r"out already exists.*--overwrite"):
        run(data, tmp_path / "out", home)
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def test_interrupted_write_leaves_no_output_and_a_rerun_completes(tmp_path, home, monkeypatch):
    data = write_parquet(make_rows(3000), tmp_path / "in.parquet", row_group=1000)
    out = tmp_path / "out"
    real_write = scoring_output.AtomicParquet.write
    calls = {"n": 0}

    def write_then_die(self, frame):
        if self.path.name == "part-00001.parquet":
            calls["n"] += 1
            if calls["n"] == 2:  # midway through the second partition's part file
                raise KeyboardInterrupt
        return real_write(self, frame)

    monkeypatch.setattr(scoring_output.AtomicParquet, "write", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        run(data, out, home, batch_size=400)
    assert not out.exists()
    staging = tmp_path / ".out.partial"
    assert sorted(p.name for p in staging.iterdir() if p.suffix == ".parquet") == ["part-00000.parquet"]
    assert not list(staging.glob(".*.tmp"))  # the half-written part was removed
    monkeypatch.undo()

    manifest = run(data, out, home, batch_size=400)
    assert manifest["rows_in"] == manifest["rows_scored"] == 3000
    assert [p["reused"] for p in manifest["parts"]] == [True, False, False]
    assert sorted(read_output(out)[0]["id"].to_list()) == list(range(3000))
    assert not staging.exists()


def test_bad_batch_size(tmp_path, home):
    data = write_parquet(make_rows(10), tmp_path / "in.parquet")
    with pytest.raises(UserError, match="invalid batch size"):
        run(data, tmp_path / "out", home, batch_size=0)


def test_cli_reports_errors_in_one_line_with_exit_codes(tmp_path, home):
    data = write_parquet(make_rows(10), tmp_path / "in.parquet")
    (tmp_path / "taken").mkdir()
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from scoring_support import ScoringTestPlugin
        from verticals.testing import use_plugins
        from verticals.cli import main
        args = sys.argv[1:]
        with use_plugins({{"scoretest": ScoringTestPlugin()}}):
            main(["score", {PIPELINE!r}, "--home", {str(home)!r}, "--no-progress", *args])
    """)

    def cli(*args):
        return subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                              env={**os.environ, "VERTICALS_HOME": str(home)}, timeout=120)

    missing = cli("--input", str(tmp_path / "nope.parquet"), "--output", str(tmp_path / "o1"))
    taken = cli("--input", str(data), "--output", str(tmp_path / "taken"))
    tampered_model = home / "models" / PIPELINE / "v1" / "model.onnx"
    tampered_model.write_bytes(tampered_model.read_bytes() + b"\0")
    tampered = cli("--input", str(data), "--output", str(tmp_path / "o2"))
    assert (missing.returncode, taken.returncode, tampered.returncode) == (2, 2, 4)
    for proc, words in ((missing, "does not exist"), (taken, "already exists"), (tampered, "has changed")):
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], proc.stderr


def test_rejects_never_carry_the_values_of_sensitive_columns():
    from verticals.scoring.run import redact
    from verticals.spec import Column, Schema

    schema = Schema((Column("path", "path"), Column("patient", "string", "group", sensitive=True)))
    rejects = pl.DataFrame({"path": ["a.dcm", "b.dcm", "c.dcm"], "patient": ["MRN-1", None, "MRN-3"],
                            "_row": [0, 1, 2], "_reason": ["a.dcm: corrupt", "b.dcm: no pixel data",
                                                           "column 'patient' = MRN-3 is not allowed"]})
    out = redact(rejects, schema)
    assert out["patient"].null_count() == 3 and out["path"].to_list() == ["a.dcm", "b.dcm", "c.dcm"]
    assert out["_reason"].to_list() == ["a.dcm: corrupt", "b.dcm: no pixel data",
                                        "column 'patient' = <redacted> is not allowed"]
    assert redact(rejects.drop("patient"), schema).equals(rejects.drop("patient"))
