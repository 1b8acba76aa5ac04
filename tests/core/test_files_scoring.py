"""Scoring a folder of images with the files reference pipeline: undecodable files are rejected with their
path and reason while the partition goes on, every scored image gets its heat map committed with its part,
and the accounting is exact."""

from __future__ import annotations

import functools
import io
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image
from verticals import engine
from verticals.testing import use_plugins
from verticals.testing.files import FilesPlugin, make_images

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

NAME = "files.shapes"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory):
    """One model trained on 160 images; a fresh folder of 40 images (3 undecodable, one text file) to score."""
    base = tmp_path_factory.mktemp("files-scoring")
    plugin = FilesPlugin(root=base / "train", images=160, seed=4)
    with use_plugins({"files": plugin}):
        result = engine.train(NAME, epochs=2, seed=1, device="cpu", home=base / "home", progress=False,
                              variants=())
    inbox = base / "inbox"
    frame = make_images(inbox / "batch-a", 40, seed=11, corrupt=3)
    (inbox / "batch-a" / "notes.txt").write_text("not an image\n")
    yield {"base": base, "plugin": plugin, "home": base / "home", "version": result.version, "inbox": inbox,
           "frame": frame, "bad": [*frame["path"].to_list()[-3:], str(inbox / "batch-a" / "notes.txt")]}


@pytest.fixture(scope="module")
def scored(model):
    """The inbox folder scored in one partition."""
    out = model["base"] / "scores"
    return out, _score(model, model["inbox"], out)


def _score(model, source: Path, out: Path, **kwargs):
    from verticals.scoring import score

    with use_plugins({"files": model["plugin"]}):
        return score(NAME, source, out, device="cpu", home=model["home"], progress=False, **kwargs)


def _parts(out: Path) -> pl.DataFrame:
    return pl.concat([pl.read_parquet(p).with_columns(pl.lit(p.stem).alias("_part"))
                      for p in sorted(out.glob("part-*.parquet"))])


def test_a_folder_scores_with_rejects_side_outputs_and_exact_accounting(model, scored) -> None:
    out, manifest = scored
    assert manifest["rows_in"] == 41  # 40 images and the text file; the generator's index file is hidden
    assert manifest["rows_rejected"] == 4 and manifest["rows_scored"] == 37 == manifest["rows_out"]
    assert manifest["rows_in"] == manifest["rows_scored"] + manifest["rows_rejected"]

    rejects = pl.read_parquet(out / "_rejects.parquet")
    assert sorted(rejects["path"].to_list()) == sorted(model["bad"])
    for path, reason in rejects.select("path", "_reason").iter_rows():
        assert reason.startswith(f"cannot decode image file {path}: ") and "\n" not in reason

    table = _parts(out)
    assert table.height == 37 and table["path"].n_unique() == 37
    assert not set(table["path"]) & set(model["bad"])
    assert table["heatmap"].null_count() == 0
    referenced = set()
    for part, relative in table.select("_part", "heatmap").iter_rows():
        assert relative.startswith(f"{part}/")  # in the folder of its own part
        file = out / relative
        with Image.open(io.BytesIO(file.read_bytes())) as img:
            assert img.size == (32, 32) and img.mode == "L"
        referenced.add(file)
    on_disk = {p for p in out.rglob("*.png")}
    assert on_disk == referenced  # nothing written for rejected files, nothing left over
    assert set(table["label"]) <= {"square", "disc"}
    assert ((table["score"] >= 0.5) == (table["label"] == "disc")).all()


def test_every_partition_commits_its_own_side_outputs(model, scored, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cut into partitions of 8 files: each part's heat maps sit in that part's folder, the rows and the
    maps' content are those of the one-partition run, and the rejected files land in _rejects."""
    from verticals.scoring import partitions, run

    single = scored[0]
    monkeypatch.setattr(run, "plan_partitions", functools.partial(partitions.plan_partitions,
                                                                  files_per_partition=8))
    out = model["base"] / "scores-cut"
    manifest = _score(model, model["inbox"], out)
    assert len(manifest["parts"]) == 6
    assert manifest["rows_in"] == 41 and manifest["rows_rejected"] == 4 and manifest["rows_out"] == 37
    for part in manifest["parts"]:
        assert part["rows_in"] == part["rows_scored"] + part["rows_rejected"]
        stem = Path(part["file"]).stem
        rows = pl.read_parquet(out / part["file"])
        if rows.height:
            assert part["side_outputs"] == stem
            assert sorted(p.name for p in (out / stem).iterdir()) == sorted(Path(h).name for h in rows["heatmap"])
    cut, whole = _parts(out).sort("path"), _parts(single).sort("path")
    assert cut["path"].to_list() == whole["path"].to_list()
    assert np.array_equal(cut["score"].to_numpy(), whole["score"].to_numpy())
    for a, b in zip(cut["heatmap"], whole["heatmap"], strict=True):
        assert (out / a).read_bytes() == (single / b).read_bytes()
    assert sorted(pl.read_parquet(out / "_rejects.parquet")["path"]) == sorted(model["bad"])


def test_a_parquet_listing_of_the_files_scores_like_the_folder(model, scored) -> None:
    listing = model["base"] / "listing.parquet"
    paths = [str(p) for p in sorted((model["inbox"] / "batch-a").glob("img-*.png"))]
    pl.DataFrame({"path": paths}).write_parquet(listing)
    out = model["base"] / "scores-listing"
    manifest = _score(model, listing, out)
    assert manifest["rows_in"] == 40 and manifest["rows_rejected"] == 3
    rejects = pl.read_parquet(out / "_rejects.parquet")
    assert sorted(rejects["_row"].to_list()) == [37, 38, 39]  # row numbers of the listing
    listed = _parts(out).join(_parts(scored[0]), on="path", suffix="_folder")
    assert listed.height == 37 and np.array_equal(listed["score"].to_numpy(), listed["score_folder"].to_numpy())


def test_verticals_score_cli_on_a_folder(model, capsys: pytest.CaptureFixture) -> None:
    from verticals.cli import main

    out = model["base"] / "scores-cli"
    with use_plugins({"files": model["plugin"]}):
        main(["score", NAME, "--input", str(model["inbox"]), "--output", str(out), "--device", "cpu",
              "--no-progress", "--home", str(model["home"])])
    text = capsys.readouterr().out
    assert "scored 41 rows" in text and "37 scored, 4 rejected" in text and "_rejects.parquet" in text
    written = json.loads((out / "_manifest.json").read_text())
    assert written["rows_out"] == 37 and written["parts"][0]["side_outputs"] == "part-00000"


def test_a_run_killed_mid_partition_leaves_no_side_outputs_behind(model, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The third partition fails after writing some heat maps: its files never reach the output; the
    rerun reuses the committed partitions, redoes the rest, and the output holds exactly one heat map
    per scored image."""
    from verticals.scoring import partitions, run
    from verticals.testing.files import ShapesPipeline

    monkeypatch.setattr(run, "plan_partitions", functools.partial(partitions.plan_partitions,
                                                                  files_per_partition=8))
    original = ShapesPipeline.postprocess
    failing = {"on": True}

    def postprocess(self, outputs, batch, extras):
        frame = original(self, outputs, batch, extras)
        if failing["on"] and any(p.endswith("img-00017.png") for p in batch.ids["path"]):
            raise OSError("disk full (simulated)")
        return frame

    monkeypatch.setattr(ShapesPipeline, "postprocess", postprocess)
    out = tmp_path / "scores"
    with pytest.raises(Exception, match="disk full"):
        _score(model, model["inbox"], out)
    assert not out.exists()
    staging = out.parent / f".{out.name}.partial"
    # Which partitions committed before the third failed depends on timing (readers and lanes run ahead;
    # one still in flight is not waited for). Committed ones keep their heat maps in the staging folder,
    # not in the output; the failed one leaves neither a marker nor files.
    committed = sorted(p.name for p in (staging / "_state").glob("part-*.json"))
    assert "part-00002.json" not in committed
    assert not (staging / "part-00002").exists()
    for marker in committed:
        assert list((staging / marker.removesuffix(".json")).glob("heatmap-*.png")), marker

    failing["on"] = False
    manifest = _score(model, model["inbox"], out)
    reused = [p["reused"] for p in manifest["parts"]]
    # Every committed partition is reused, and the failed part itself is always redone.
    assert sum(reused) == len(committed) and reused[2] is False, (reused, committed)
    assert manifest["rows_out"] == 37 and manifest["rows_rejected"] == 4
    table = _parts(out)
    assert {out / h for h in table["heatmap"]} == set(out.rglob("*.png"))
    assert not staging.exists()


def test_summaries_and_the_input_folder_reach_the_pipeline(model, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """``Pipeline.summarize`` sees every part and its tables land next to them (listed in the manifest);
    postprocess learns the scored folder (``ScoringContext.input_root``) to name files relative to it."""
    from verticals.errors import PluginError
    from verticals.testing.files import ShapesPipeline

    roots = []
    original = ShapesPipeline.postprocess

    def postprocess(self, outputs, batch, extras):
        roots.append(extras.input_root)
        return original(self, outputs, batch, extras)

    def summarize(self, parts, context):
        rows = pl.concat([pl.read_parquet(p) for p in parts])
        return {"by_label": rows.group_by("label").agg(pl.len().alias("images")).sort("label")}

    monkeypatch.setattr(ShapesPipeline, "postprocess", postprocess)
    monkeypatch.setattr(ShapesPipeline, "summarize", summarize)
    manifest = _score(model, model["inbox"], tmp_path / "out")
    assert set(roots) == {str(model["inbox"])}
    assert manifest["summaries"]["by_label"]["file"] == "_by_label.parquet"
    table = pl.read_parquet(tmp_path / "out" / "_by_label.parquet")
    assert table["images"].sum() == manifest["rows_out"]
    assert table.height == manifest["summaries"]["by_label"]["rows"] == 2
    monkeypatch.setattr(ShapesPipeline, "summarize", lambda self, parts, context: {"../escape": pl.DataFrame()})
    with pytest.raises(PluginError, match=r"summarize returned table '\.\./escape'"):
        _score(model, model["inbox"], tmp_path / "out2")
