"""The partition stream (one reader pool reading ahead across a run's partitions, results handed out
per partition) and the default variant (int8 where the CPU has fast int8 and the gate accepted it)."""

from __future__ import annotations

import json
import shutil
import threading

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
from verticals.errors import DataValidationError
from verticals.scoring import (
    ScoringSession,
    finalize,
    plan_partitions,
    prepare_staging,
    score,
    score_partitions,
)
from verticals.scoring.run import ScoringCancelled
from verticals.scoring.stream import PartitionStream
from verticals.testing import use_plugins


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    return cached_model(tmp_path_factory)


@pytest.fixture
def plugin():
    with use_plugins({"scoretest": ScoringTestPlugin()}):
        yield


@pytest.fixture
def home(tmp_path, model_files):
    home = tmp_path / "home"
    register_model(home, model_files)
    return home


def _parts(folder):
    return {p.name: pl.read_parquet(p) for p in sorted(folder.glob("part-*.parquet"))}


def test_stream_commits_what_score_partitions_commits_and_hands_out_each_result(tmp_path, home, plugin):
    data = write_parquet(make_rows(2400, seed=3), tmp_path / "in.parquet", row_group=400)
    partitions = plan_partitions(data)
    with ScoringSession.open(PIPELINE, None, "cpu", 256, home) as session:
        ref_staging = prepare_staging(session, partitions, tmp_path / "ref")
        reference = score_partitions(session, partitions, ref_staging)
        staging = prepare_staging(session, partitions, tmp_path / "out")
        seen = []
        with PartitionStream(session, partitions, staging) as stream:
            # asked for out of order, as tasks of a flow may be: each waits for its own commit
            for p in reversed(partitions):
                r = stream.result(p, timeout=60)
                assert r is not None and r.index == p.index and (staging / r.file).exists()
                seen.append(r)
        assert stream.error is None and stream.finished
    got = sorted(seen, key=lambda r: r.index)
    assert [(r.rows_in, r.rows_scored, r.rows_rejected) for r in got] == \
        [(r.rows_in, r.rows_scored, r.rows_rejected) for r in reference]
    ref_parts, parts = _parts(ref_staging), _parts(staging)
    assert ref_parts.keys() == parts.keys() and len(parts) == 6
    for name in parts:
        assert parts[name].equals(ref_parts[name])


def test_a_cancelled_stream_keeps_only_whole_parts_and_a_rerun_resumes(tmp_path, home, plugin):
    data = write_parquet(make_rows(3000, seed=4), tmp_path / "in.parquet", row_group=300)
    partitions = plan_partitions(data)
    out = tmp_path / "out"
    with ScoringSession.open(PIPELINE, None, "cpu", 100, home) as session:
        staging = prepare_staging(session, partitions, out)
        stream = PartitionStream(session, partitions, staging).start()
        assert stream.result(partitions[0], timeout=60) is not None
        stream.close()  # cancels whatever is not committed yet
        assert stream.finished
        committed = {p.index for p in partitions if stream.result(p, timeout=1) is not None}
        assert 0 in committed
        if len(committed) < len(partitions):
            assert isinstance(stream.error, ScoringCancelled)
        # no half-written part: every part file present belongs to a committed partition
        assert {int(p.stem.split("-")[1]) for p in staging.glob("part-*.parquet")} == committed
        again = score_partitions(session, partitions, staging)
        assert [r.reused for r in again] == [p.index in committed for p in partitions]
        manifest = finalize(session, staging, out, again, started=0.0, input=data)
    assert manifest["rows_in"] == manifest["rows_scored"] + manifest["rows_rejected"] == 3000
    scores, _, _ = read_output(out)
    assert scores.height == manifest["rows_scored"] and scores["id"].n_unique() == scores.height


def test_a_failing_partition_ends_the_stream_and_callers_score_theirs_directly(tmp_path, home, plugin):
    folder = tmp_path / "in"
    folder.mkdir()
    write_parquet(make_rows(600, seed=5), folder / "a.parquet", row_group=300)
    write_parquet(make_rows(600, seed=6, start=600), folder / "b.parquet", row_group=300)
    partitions = plan_partitions(folder)
    (folder / "b.parquet").write_bytes((folder / "b.parquet").read_bytes()[:-200])  # damaged after planning
    with ScoringSession.open(PIPELINE, None, "cpu", 128, home) as session:
        staging = prepare_staging(session, partitions, tmp_path / "out")
        with PartitionStream(session, partitions, staging) as stream:
            results = {p.index: stream.result(p, timeout=60) for p in partitions}
        assert stream.error is not None
        assert all(results[p.index] is None for p in partitions if p.source.name == "b.parquet")
        with pytest.raises(DataValidationError, match=r"b\.parquet"):
            score_partitions(session, [p for p in partitions if p.source.name == "b.parquet"], staging)


def _with_int8(home, model_files, tmp_path, accepted=True, **int8):
    from verticals.export import quantize_int8
    from verticals.store import ModelStore

    files = tmp_path / "int8-files"
    shutil.copytree(model_files, files)
    quantize_int8(files / "model.onnx", files / "model.int8.onnx")
    manifest = json.loads((model_files.parent / "manifest.json").read_text())
    manifest["variants"] = {"int8": {"file": "model.int8.onnx" if accepted else None, "accepted": accepted,
                                     "reason": "|Δ auc| = 0.0003 ≤ 0.005 on CPUExecutionProvider", **int8}}
    if not accepted:
        (files / "model.int8.onnx").unlink()
    return ModelStore(home).register(PIPELINE, files, manifest)


def test_default_variant_is_int8_only_with_fast_int8_and_an_accepted_variant(tmp_path, home, model_files, plugin,
                                                                            monkeypatch):
    version = _with_int8(home, model_files, tmp_path)
    data = write_parquet(make_rows(500, seed=8), tmp_path / "in.parquet", row_group=250)
    monkeypatch.setenv("VERTICALS_FAST_INT8", "1")
    m = score(PIPELINE, data, tmp_path / "o1", home=home, progress=False, model=version.version)
    assert m["variant"] == "int8" and "int8 accepted" in m["variant_reason"] and "VERTICALS_FAST_INT8" in m["variant_reason"]
    monkeypatch.setenv("VERTICALS_FAST_INT8", "0")
    m = score(PIPELINE, data, tmp_path / "o2", home=home, progress=False, model=version.version)
    assert m["variant"] == "fp32" and "no fast int8" in m["variant_reason"]
    m = score(PIPELINE, data, tmp_path / "o3", home=home, progress=False, model=version.version, variant="fp32")
    assert m["variant"] == "fp32" and m["variant_reason"] == "asked for"
    monkeypatch.setenv("VERTICALS_FAST_INT8", "1")
    rejected = _with_int8(home, model_files, tmp_path / "r", accepted=False)
    m = score(PIPELINE, data, tmp_path / "o4", home=home, progress=False, model=rejected.version)
    assert m["variant"] == "fp32" and "no accepted int8" in m["variant_reason"]


def test_auto_keeps_fp32_where_registration_timed_int8_no_faster(tmp_path, home, model_files, plugin, monkeypatch):
    import verticals.scoring.runtime as runtime

    detect = runtime.fast_int8
    monkeypatch.delenv("VERTICALS_FAST_INT8", raising=False)
    monkeypatch.setattr(runtime, "fast_int8", lambda: "avx512_vnni")
    data = write_parquet(make_rows(300, seed=9), tmp_path / "in.parquet")
    cases = {"slow": (1.02, "avx512_vnni, 4000 rows per call", "fp32"),
             "fast": (1.8, "avx512_vnni, 4000 rows per call", "int8"),
             "timed_without_vnni": (1.02, "no fast int8 kernels, 4000 rows per call", "int8")}
    versions = {}
    for name, (speedup, timed_on, want) in cases.items():
        versions[name] = _with_int8(home, model_files, tmp_path / name, speedup=speedup, timed_on=timed_on)
        m = score(PIPELINE, data, tmp_path / f"out-{name}", home=home, progress=False,
                  model=versions[name].version)
        assert m["variant"] == want, (name, m["variant_reason"])
    slow = score(PIPELINE, data, tmp_path / "again", home=home, progress=False, model=versions["slow"].version)
    assert "ran only 1.02x fp32 when timed at registration (avx512_vnni" in slow["variant_reason"]
    monkeypatch.setattr(runtime, "fast_int8", detect)
    monkeypatch.setenv("VERTICALS_FAST_INT8", "1")  # forcing int8 skips the timing check
    forced = score(PIPELINE, data, tmp_path / "forced", home=home, progress=False, model=versions["slow"].version)
    assert forced["variant"] == "int8"


def test_fast_int8_reads_the_cpu_flags(monkeypatch):
    from verticals.scoring.runtime import INT8_FLAGS, fast_int8

    monkeypatch.delenv("VERTICALS_FAST_INT8", raising=False)
    text = open("/proc/cpuinfo").read()
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines()
                  if line.startswith(("flags", "Features"))), [])
    expected = next((f for f in INT8_FLAGS if f in flags), None)
    assert fast_int8() == expected


def test_stream_results_can_be_awaited_from_several_threads(tmp_path, home, plugin):
    data = write_parquet(make_rows(1200, seed=9), tmp_path / "in.parquet", row_group=200)
    partitions = plan_partitions(data)
    with ScoringSession.open(PIPELINE, None, "cpu", 128, home) as session:
        staging = prepare_staging(session, partitions, tmp_path / "out")
        got: dict[int, object] = {}
        with PartitionStream(session, partitions, staging) as stream:
            threads = [threading.Thread(target=lambda p=p: got.__setitem__(p.index, stream.result(p, timeout=60)))
                       for p in partitions]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    assert sorted(got) == [p.index for p in partitions] and all(v is not None for v in got.values())


def test_the_summary_line_says_which_variant_scored_and_why_auto_chose_it():
    from verticals.cli.score import summary

    base = {"rows_in": 10, "rows_scored": 10, "rows_rejected": 0, "pipeline": "p.q", "model_version": 2,
            "provider": "CPUExecutionProvider", "rows_per_second": 5.0, "seconds": 2.0, "output": "/o", "parts": []}
    auto = summary({**base, "variant": "int8",
                    "variant_reason": "auto: int8 accepted (|Δ auc| = 0.0003 ≤ 0.005), CPU has avx512_vnni"})[0]
    assert "(int8; auto: int8 accepted" in auto and "avx512_vnni) on CPUExecutionProvider" in auto
    asked = summary({**base, "variant": "fp32", "variant_reason": "asked for"})[0]
    assert "(fp32) on CPUExecutionProvider" in asked


def test_every_no_output_reason_is_in_the_side_file_and_the_manifest_lists_the_largest(tmp_path, home, plugin):
    from verticals.cli.score import summary
    from verticals.scoring.output import NO_OUTPUT, NO_OUTPUT_LISTED

    data = write_parquet(make_rows(1200, seed=5), tmp_path / "in.parquet", row_group=600)
    partitions = plan_partitions(data)
    out = tmp_path / "out"
    with ScoringSession.open(PIPELINE, None, "cpu", 100, home) as session:
        staging = prepare_staging(session, partitions, out)
        results = score_partitions(session, partitions, staging)
        assert len(results) == 2
        # A windows pipeline names each short machine: the number of reasons grows with the data.
        for r in results:
            r.no_output = {f"machine 'm{r.index}-{i}' has {i % 4 + 1} reading(s)": i % 4 + 1 for i in range(30)}
        r.no_output["shared reason"] = 9
        results[0].no_output["shared reason"] = 2
        manifest = finalize(session, staging, out, results, started=0.0, input=data)
    every = pl.read_parquet(out / NO_OUTPUT)
    assert every.columns == ["reason", "rows"] and every.height == 61 == manifest["no_output_reason_count"]
    assert every["rows"].sum() == manifest["rows_no_output"] == 2 * 73 + 11
    assert every.row(0) == ("shared reason", 11)  # merged across parts, most rows first
    listed = manifest["no_output_reasons"]
    assert len(listed) == NO_OUTPUT_LISTED and list(listed) == every["reason"].head(NO_OUTPUT_LISTED).to_list()
    assert manifest["no_output_file"] == NO_OUTPUT
    assert json.loads((out / "_manifest.json").read_text())["no_output_reasons"] == listed
    lines = summary(manifest)
    assert "shared reason: 11" in lines[1] and "and 58 more reason(s) for" in lines[1] and NO_OUTPUT in lines[1]
    assert len(lines[1]) < 400  # one readable line, not every machine


def test_a_run_without_no_output_rows_writes_no_reasons_file(tmp_path, home, plugin):
    from verticals.scoring.output import NO_OUTPUT

    data = write_parquet(make_rows(300, seed=6), tmp_path / "in.parquet")
    manifest = score(PIPELINE, data, tmp_path / "out", home=home, progress=False)
    assert manifest["no_output_reasons"] == {} and manifest["no_output_file"] is None
    assert not (tmp_path / "out" / NO_OUTPUT).exists()
