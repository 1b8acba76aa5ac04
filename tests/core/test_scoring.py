"""Batch scoring: Parquet/CSV in, part files + rejects + manifest out, with a real exported model."""

from __future__ import annotations

import itertools
import json
import os
import pickle
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
    composed_module,
    make_rows,
    read_output,
    reference_scores,
    register_model,
    write_parquet,
)
from verticals.errors import NotFoundError, UserError, VerticalsError
from verticals.scoring import (
    ScoringSession,
    finalize,
    plan_partitions,
    prepare_staging,
    score,
    score_partition,
    staging_dir,
)
from verticals.scoring.runtime import cuda_device_count
from verticals.testing import use_plugins


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    return cached_model(tmp_path_factory)


@pytest.fixture
def plugin():
    p = ScoringTestPlugin()
    with use_plugins({"scoretest": p}):
        yield p


@pytest.fixture
def home(tmp_path, model_files):
    home = tmp_path / "home"
    register_model(home, model_files)
    return home


def test_parquet_scores_match_the_model_and_account_for_every_row(tmp_path, home, plugin, model_files):
    frame = make_rows(2500, seed=3)
    data = write_parquet(frame, tmp_path / "in.parquet", row_group=1000)
    out = tmp_path / "out"

    manifest = score(PIPELINE, data, out, home=home, batch_size=400, device="cpu", progress=True)

    scores, rejects, written = read_output(out)
    assert written == manifest
    assert manifest["rows_in"] == 2500 == manifest["rows_scored"] + manifest["rows_rejected"]
    assert manifest["rows_rejected"] == 0 and rejects.height == 0
    assert [p["file"] for p in manifest["parts"]] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert manifest["model_version"] == 1 and manifest["pipeline"] == PIPELINE
    assert manifest["device"] == "cpu" and manifest["provider"] == "CPUExecutionProvider"
    assert manifest["seconds"] > 0 and manifest["rows_per_second"] > 0
    assert scores.columns == ["id", "score", "flags", "model_version"]
    assert scores.schema["id"] == pl.Int64 and scores.schema["score"] == pl.Float64
    assert scores["model_version"].unique().to_list() == [1]
    # model_version is one value per part: dictionary-encoded (a value and run lengths), not 8 bytes a row
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(out / "part-00000.parquet").metadata
    column = meta.schema.names.index("model_version")
    assert any("DICTIONARY" in e for e in meta.row_group(0).column(column).encodings)
    assert sorted(scores["id"].to_list()) == list(range(2500))
    expected = reference_scores(model_files, frame)
    joined = scores.join(expected, on="id")
    assert joined.height == 2500
    np.testing.assert_allclose(joined["score"], joined["expected"], rtol=1e-5, atol=1e-6)
    # every batch was reported to plugins, with consistent counts
    assert sum(b["rows_in"] for b in plugin.batches) == 2500
    assert {b["version"] for b in plugin.batches} == {1}
    # nothing but the output is left next to it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "in.parquet", "out"]


def test_scores_match_torch_eager(tmp_path, home, plugin, model_files):
    import torch

    frame = make_rows(700, seed=4)
    out = tmp_path / "out"
    score(PIPELINE, write_parquet(frame, tmp_path / "in.parquet"), out, home=home, device="cpu", progress=False)
    module, pre = composed_module(model_files)
    inputs = pre.transform(frame, with_target=False).inputs
    with torch.no_grad():
        logits = module(*(torch.from_numpy(np.ascontiguousarray(inputs[n])) for n in pre.signature()))[0]
    eager = torch.sigmoid(logits).numpy()
    scores = read_output(out)[0].sort("id")
    assert np.max(np.abs(scores["score"].to_numpy() - eager)) < 1e-5


def test_csv_file_and_mixed_folder_give_the_same_scores(tmp_path, home, plugin):
    frame = make_rows(1200, seed=5)
    write_parquet(frame.head(700), tmp_path / "mixed" / "a.parquet", row_group=300)
    frame.tail(500).write_csv(tmp_path / "mixed" / "b.csv")
    (tmp_path / "mixed" / "_SUCCESS").write_text("")  # ignored, like other tools' markers
    frame.write_csv(tmp_path / "all.csv")

    folder = score(PIPELINE, tmp_path / "mixed", tmp_path / "out1", home=home, device="cpu", progress=False)
    single = score(PIPELINE, tmp_path / "all.csv", tmp_path / "out2", home=home, device="cpu", progress=False,
                   batch_size=256)

    assert folder["rows_in"] == single["rows_in"] == 1200
    assert len(folder["parts"]) == 4  # three row groups and one CSV file
    a = read_output(tmp_path / "out1")[0].sort("id")
    b = read_output(tmp_path / "out2")[0].sort("id")
    assert a["id"].to_list() == b["id"].to_list() == list(range(1200))
    np.testing.assert_allclose(a["score"], b["score"], rtol=1e-6)


def test_rules_impute_flag_or_reject_with_reasons(tmp_path, home, plugin, model_files):
    frame = make_rows(12, seed=6).with_columns(pl.col("x1").cast(pl.Float64), pl.col("x5").cast(pl.Float64))
    rows = frame.to_dicts()
    rows[0]["x1"] = float("nan")        # imputed, scored, not flagged
    rows[1]["x2"] = 250.0               # clipped to 100 and flagged
    rows[2]["x3"] = 11.0                # rejected: outside [-10, 10]
    rows[3]["x4"] = None                # rejected: missing with rule reject
    rows[4]["x5"] = None                # imputed and flagged
    rows[5]["cat"] = "zzz"              # unknown category: flagged
    rows[6]["kind"] = "k9"              # unknown category with rule reject
    rows[7]["x1"] = float("inf")        # infinity cannot be clipped without a bound: rejected
    rows[8]["x2"] = float("-inf")       # clipped to 0 and flagged
    data = write_parquet(pl.DataFrame(rows, schema=frame.schema), tmp_path / "in.parquet")

    manifest = score(PIPELINE, data, tmp_path / "out", home=home, device="cpu", progress=False)

    scores, rejects, _ = read_output(tmp_path / "out")
    assert (manifest["rows_in"], manifest["rows_scored"], manifest["rows_rejected"]) == (12, 8, 4)
    reasons = dict(zip(rejects["id"].to_list(), rejects["_reason"].to_list(), strict=True))
    assert set(reasons) == {"2", "3", "6", "7"}
    assert "x3" in reasons["2"] and "outside [-10, 10]" in reasons["2"]
    assert "x4" in reasons["3"] and "missing" in reasons["3"]
    assert "kind" in reasons["6"] and "k9" in reasons["6"]
    assert "x1" in reasons["7"] and "inf" in reasons["7"]
    assert rejects.columns[-3:] == ["_row", "_source", "_reason"]
    assert all(dtype == pl.String for dtype in rejects.drop("_row").dtypes)
    assert rejects.sort("_row")["_row"].to_list() == [2, 3, 6, 7]
    assert set(rejects["_source"].to_list()) == {str(data)}
    flags = dict(zip(scores["id"].to_list(), scores["flags"].to_list(), strict=True))
    assert flags[0] == "" and flags[1] == "x2:out_of_range" and flags[4] == "x5:missing"
    assert flags[5] == "cat:unknown" and flags[8] == "x2:out_of_range"
    assert np.isfinite(scores["score"].to_numpy()).all()
    # the clipped row scores like the same row with the bound written in
    fixed = pl.DataFrame(rows, schema=frame.schema).with_columns(
        pl.when(pl.col("id") == 1).then(100.0).when(pl.col("id") == 8).then(0.0).otherwise(pl.col("x2")).alias("x2"))
    expected = reference_scores(model_files, fixed)
    joined = scores.join(expected, on="id")
    np.testing.assert_allclose(joined["score"], joined["expected"], rtol=1e-5, atol=1e-6)


def test_building_blocks_are_idempotent_and_resume(tmp_path, home, plugin):
    data = write_parquet(make_rows(1500, seed=7), tmp_path / "in.parquet", row_group=500)
    out = tmp_path / "out"
    partitions = plan_partitions(data)
    assert [(p.kind, p.row_group, p.row_offset, p.rows) for p in partitions] == [
        ("parquet", 0, 0, 500), ("parquet", 1, 500, 500), ("parquet", 2, 1000, 500)]
    with ScoringSession.open(PIPELINE, None, "cpu", 256, home) as session:
        staging = prepare_staging(session, partitions, out)
        assert staging == staging_dir(out) == tmp_path / ".out.partial"
        first = score_partition(session, partitions[1], staging)
        part = staging / first.file
        stamp = part.stat().st_mtime_ns
        again = score_partition(session, partitions[1], staging)
        assert again.reused and not first.reused
        assert (again.rows_in, again.rows_scored) == (first.rows_in, first.rows_scored) == (500, 500)
        assert part.stat().st_mtime_ns == stamp  # not rewritten
        results = [score_partition(session, p, staging) for p in partitions]
        assert [r.reused for r in results] == [False, True, False]
        assert not out.exists()
        manifest = finalize(session, staging, out, results, started=0.0, input=data)
    assert not staging.exists() and manifest["rows_in"] == 1500
    assert sorted(p.name for p in out.iterdir()) == [
        "_manifest.json", "_rejects.parquet", "part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]


def test_partitions_scored_with_another_model_are_not_reused(tmp_path, model_files, plugin):
    home = tmp_path / "home"
    register_model(home, model_files, times=2)
    data = write_parquet(make_rows(300, seed=8), tmp_path / "in.parquet")
    out = tmp_path / "out"
    partitions = plan_partitions(data)
    with ScoringSession.open(PIPELINE, "1", "cpu", 256, home) as v1:
        score_partition(v1, partitions[0], staging_dir(out))
    with ScoringSession.open(PIPELINE, "v2", "cpu", 256, home) as v2:
        result = score_partition(v2, partitions[0], staging_dir(out))
    assert not result.reused
    manifest = score(PIPELINE, data, out, home=home, device="cpu", progress=False)  # default: latest = v2
    assert manifest["model_version"] == 2
    assert read_output(out)[0]["model_version"].unique().to_list() == [2]


def test_overwrite_replaces_the_old_output_only_when_the_new_one_is_complete(tmp_path, home, plugin, monkeypatch):
    data = write_parquet(make_rows(400, seed=9), tmp_path / "in.parquet", row_group=200)
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("previous run")
    from verticals.scoring import output

    def broken(self, frame):
        raise OSError("disk full")

    monkeypatch.setattr(output.AtomicParquet, "write", broken)
    with pytest.raises(OSError, match="disk full"):
        score(PIPELINE, data, out, home=home, overwrite=True, device="cpu", progress=False)
    assert (out / "old.txt").read_text() == "previous run"  # untouched by the failed run
    monkeypatch.undo()

    manifest = score(PIPELINE, data, out, home=home, overwrite=True, device="cpu", progress=False)
    assert not (out / "old.txt").exists() and manifest["rows_scored"] == 400
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_session_pickles_as_its_arguments(home, plugin):
    with ScoringSession.open(PIPELINE, None, "cpu", 128, home) as session:
        clone = pickle.loads(pickle.dumps(session))
        try:
            assert clone.model_version == session.model_version == 1
            assert clone.batch_size == 128 and clone.provider == "CPUExecutionProvider"
        finally:
            clone.close()


def test_variants_and_devices_are_checked(home, plugin):
    with pytest.raises(NotFoundError, match="no int8 model file; usable variants: fp32"):
        ScoringSession.open(PIPELINE, None, "cpu", 128, home, variant="int8")
    with pytest.raises(UserError, match="unknown model variant"):
        ScoringSession.open(PIPELINE, None, "cpu", 128, home, variant="int4")
    with pytest.raises(UserError, match="unknown device"):
        ScoringSession.open(PIPELINE, None, "tpu", 128, home)
    with ScoringSession.open(PIPELINE, None, "cpu", 128, home, variant="auto") as session:
        assert session.variant == "fp32"  # no accepted int8 variant in this model


@pytest.mark.skipif(cuda_device_count() > 0, reason="checks the CPU-only behaviour")
def test_asking_for_cuda_without_a_gpu_fails_and_auto_falls_back(home, plugin):
    with pytest.raises(VerticalsError, match="--device cuda"):
        ScoringSession.open(PIPELINE, None, "cuda", 128, home)
    with ScoringSession.open(PIPELINE, None, "auto", 128, home) as session:
        assert session.device == "cpu" and session.provider == "CPUExecutionProvider"


@pytest.mark.gpu
@pytest.mark.skipif(cuda_device_count() == 0, reason="needs a CUDA GPU")
def test_cuda_iobinding_matches_cpu(tmp_path, home, plugin):
    frame = make_rows(20000, seed=10)
    data = write_parquet(frame, tmp_path / "in.parquet", row_group=1000)
    gpu = score(PIPELINE, data, tmp_path / "gpu", home=home, device="cuda", batch_size=700, progress=False)
    score(PIPELINE, data, tmp_path / "cpu", home=home, device="cpu", batch_size=700, progress=False)
    assert gpu["provider"] == "CUDAExecutionProvider" and "IOBinding" in gpu["session"]["runner"]
    a = read_output(tmp_path / "gpu")[0].sort("id")
    b = read_output(tmp_path / "cpu")[0].sort("id")
    assert a["id"].to_list() == b["id"].to_list()
    assert np.max(np.abs(a["score"].to_numpy() - b["score"].to_numpy())) < 1e-5


@pytest.mark.gpu
@pytest.mark.skipif(cuda_device_count() == 0, reason="needs a CUDA GPU")
def test_cuda_lanes_return_each_batch_its_own_outputs(home, plugin):
    """Many batches in flight at once on the CUDA runner, repeated and odd sizes: each matches the CPU."""
    from verticals.data.validation import validate

    with ScoringSession.open(PIPELINE, None, "cuda", 4096, home) as gpu, \
            ScoringSession.open(PIPELINE, None, "cpu", 4096, home) as cpu:
        frame = make_rows(60000, seed=14)
        valid = validate(frame, gpu.schema, stage="score", vocabularies=gpu.vocabularies).valid
        inputs = gpu.model_inputs(gpu.preprocessor.transform(valid, with_target=False).inputs)
        rng = np.random.default_rng(0)
        # same-size batches with new rows each time (a bound buffer must be re-read), and odd sizes
        sizes = [4096] * 6 + [int(v) for v in rng.integers(1, 4096, 10)] + [4096] * 4
        cuts = [int(c) for c in np.cumsum([0, *sizes]) if c <= len(valid)]
        chunks = [{k: v[s:e] for k, v in inputs.items()} for s, e in itertools.pairwise(cuts)]
        futures = [gpu.runtime.runner.submit(c) for c in chunks]
        for chunk, future in zip(chunks, futures, strict=True):
            got = future.result()["logits"]
            want = cpu.runtime.runner.submit(chunk).result()["logits"]
            assert got.shape == want.shape
            assert np.max(np.abs(got - want)) < 1e-4


def test_folder_of_other_files_plans_file_partitions(tmp_path):
    for i in range(5):
        (tmp_path / "images" / f"cls{i % 2}").mkdir(parents=True, exist_ok=True)
        (tmp_path / "images" / f"cls{i % 2}" / f"img{i}.png").write_bytes(b"\x89PNG")
    parts = plan_partitions(tmp_path / "images", files_per_partition=2)
    assert [p.kind for p in parts] == ["files"] * 3 and [p.rows for p in parts] == [2, 2, 1]
    from verticals.scoring.partitions import read_partition
    from verticals.spec import Column, Schema

    frames = list(read_partition(parts[0], Schema((Column("path", "path", "id"),)), batch_size=10))
    assert [Path(p).name for p in frames[0]["path"]] == ["img0.png", "img2.png"]


def test_cli_scores_without_importing_torch(tmp_path, home):
    """The CLI in a fresh process: one-line summary, output written, torch never imported."""
    data = write_parquet(make_rows(900, seed=11), tmp_path / "in.parquet", row_group=300)
    out = tmp_path / "out"
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from scoring_support import ScoringTestPlugin
        from verticals.testing import use_plugins
        from verticals.cli import main
        with use_plugins({{"scoretest": ScoringTestPlugin()}}):
            try:
                main(["score", {PIPELINE!r}, "--input", {str(data)!r}, "--output", {str(out)!r},
                      "--home", {str(home)!r}, "--no-progress", "--batch-size", "256"])
            except SystemExit as exc:
                assert not exc.code, exc.code
        print("TORCH", "torch" in sys.modules)
    """)
    env = {**os.environ, "VERTICALS_HOME": str(home)}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "TORCH False" in proc.stdout
    assert "scored 900 rows" in proc.stdout and "CPUExecutionProvider" in proc.stdout
    assert json.loads((out / "_manifest.json").read_text())["rows_scored"] == 900


def test_iobinding_lanes_reuse_buffers_and_keep_order(home, plugin):
    """The GPU runner's binding logic (lanes, reused buffers, a short last batch), here on the CPU provider."""
    import onnxruntime as ort
    from verticals.scoring.runtime import CudaRunner

    with ScoringSession.open(PIPELINE, None, "cpu", 300, home) as session:
        path = session.version.file("model.onnx")
        runner = CudaRunner(ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]), 300, ["logits"],
                            {"x_num": "float32", "x_cat": "int64"}, lanes=2)
        try:
            frame = make_rows(1000, seed=12)
            from verticals.data.validation import validate

            valid = validate(frame, session.schema, stage="score", vocabularies=session.vocabularies).valid
            inputs = session.model_inputs(session.preprocessor.transform(valid, with_target=False).inputs)
            chunks = [{k: v[s:s + 300] for k, v in inputs.items()} for s in range(0, 1000, 300)]
            futures = [runner.submit(c) for c in chunks]  # 4 batches, 2 lanes: buffers are reused
            got = np.concatenate([f.result()["logits"] for f in futures])
            want = np.concatenate([session.runtime.runner.submit(c).result()["logits"] for c in chunks])
            assert got.shape == (1000,)
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
            assert all(lane.bound_rows in (300, 100) for lane in runner.lanes)
            with pytest.raises(VerticalsError, match="exceeds the runner's capacity"):
                runner.submit({k: v[:301] for k, v in inputs.items()})
        finally:
            runner.close()


def test_schema_without_ids_numbers_rows_in_their_source(tmp_path, home, plugin, model_files):
    """A model whose schema has no id column: outputs carry each row's number and file instead."""
    import json as _json

    from verticals.store import ModelStore

    manifest = _json.loads((model_files.parent / "manifest.json").read_text())
    manifest["input_schema"] = [c for c in manifest["input_schema"] if c["name"] != "id"]
    ModelStore(home).register(PIPELINE, model_files, manifest)  # v2
    frame = make_rows(50, seed=13).with_columns(
        pl.when(pl.col("id") == 7).then(99.0).otherwise(pl.col("x3")).alias("x3"))  # row 7 is rejected
    data = write_parquet(frame.drop("id"), tmp_path / "in.parquet", row_group=20)
    manifest = score(PIPELINE, data, tmp_path / "out", home=home, model="2", device="cpu", progress=False,
                     batch_size=8)
    scores, rejects, _ = read_output(tmp_path / "out")
    assert manifest["rows_scored"] == 49 and rejects["_row"].to_list() == [7]
    assert scores.columns[:2] == ["_row", "_source"]
    assert scores["_row"].to_list() == [i for i in range(50) if i != 7]
    assert set(scores["_source"]) == {str(data)}


@pytest.mark.parametrize("lanes", ["1", "2"])
def test_partitions_scored_from_several_threads_share_one_session(tmp_path, home, plugin, monkeypatch, lanes,
                                                                   model_files):
    """What the Prefect flow does with a thread pool: score_partition concurrently on one session."""
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setenv("VERTICALS_SCORE_LANES", lanes)
    frame = make_rows(3000, seed=15)
    data = write_parquet(frame, tmp_path / "in.parquet", row_group=500)
    out = tmp_path / "out"
    partitions = plan_partitions(data)
    with ScoringSession.open(PIPELINE, None, "cpu", 200, home) as session:
        assert session.runtime.runner.depth == int(lanes)
        staging = staging_dir(out)
        with ThreadPoolExecutor(3) as pool:
            results = list(pool.map(lambda p: score_partition(session, p, staging), partitions))
        finalize(session, staging, out, results, started=0.0, input=data)
    scores = read_output(out)[0]
    expected = reference_scores(model_files, frame)
    joined = scores.join(expected, on="id")
    assert joined.height == 3000
    np.testing.assert_allclose(joined["score"], joined["expected"], rtol=1e-5, atol=1e-6)



def test_rejects_of_every_partition_reach_the_output(tmp_path, home, plugin):
    """Four row groups (four partitions), each with its own bad rows: every one of them is in
    _rejects.parquet with its row number, none is scored, and the counts agree."""
    frame = make_rows(1000)
    bad = [3, 7, 260, 499, 500, 742, 751, 999]  # two in each row group of 250
    frame = frame.with_columns(pl.when(pl.col("id").is_in(bad)).then(pl.lit(55.0)).otherwise(pl.col("x3")).alias("x3"))
    data = write_parquet(frame, tmp_path / "in.parquet", row_group=250)
    manifest = score(PIPELINE, data, tmp_path / "out", home=home, device="cpu", progress=False, batch_size=100)
    scores, rejects, _ = read_output(tmp_path / "out")
    assert len(manifest["parts"]) == 4 and [p["rows_rejected"] for p in manifest["parts"]] == [2, 2, 2, 2]
    assert manifest["rows_rejected"] == rejects.height == len(bad)
    assert sorted(int(i) for i in rejects["id"].to_list()) == bad
    assert sorted(rejects["_row"].to_list()) == bad  # ids equal row numbers in this file
    assert set(rejects["_source"].to_list()) == {str(data)}
    assert all("column 'x3'" in r for r in rejects["_reason"].to_list())
    assert not set(bad) & set(scores["id"].to_list()) and scores.height == 1000 - len(bad)
