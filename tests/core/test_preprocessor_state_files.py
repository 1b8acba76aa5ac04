"""A preprocessor's large fitted state (numpy arrays, polars DataFrames) is stored as files of the model
version, not as manifest JSON: round trip, checks at training, integrity when scoring opens it."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from verticals import artifacts
from verticals.crossfit import _same_state
from verticals.engine.common import _state_ready
from verticals.errors import ModelIntegrityError, PluginError
from verticals.store import ModelStore


def _state():
    return {"format": 1, "columns": ["a", "b"], "medians": [1.5, np.float32(2.0)],
            "codes": np.arange(6, dtype=np.int32).reshape(2, 3),
            "known": pl.DataFrame({"user": ["u1", "u2"], "items": [[1, 2], [3]]})}


def test_large_values_become_files_and_come_back_as_the_same_types(tmp_path):
    ready = _state_ready(_state(), "p.q")
    assert list(ready) == ["format", "columns", "medians", "codes", "known"]  # order kept
    assert ready["medians"] == [1.5, 2.0] and isinstance(ready["codes"], np.ndarray)
    stored = artifacts.save_state(ready, tmp_path)
    json.dumps(stored)  # the manifest's part is plain JSON
    assert stored["codes"] == {"$file": "preprocessor/codes.npy", "kind": "npy"}
    assert stored["known"] == {"$file": "preprocessor/known.parquet", "kind": "parquet"}
    back = artifacts.load_state(json.loads(json.dumps(stored)), tmp_path)
    assert back["format"] == 1 and back["medians"] == [1.5, 2.0]
    assert back["codes"].dtype == np.int32 and np.array_equal(back["codes"], ready["codes"])
    assert back["known"].equals(ready["known"])
    assert artifacts.load_state({"format": 1}, tmp_path) == {"format": 1}  # nothing stored: unchanged


def test_state_that_cannot_be_stored_is_refused_at_training_naming_the_key():
    with pytest.raises(PluginError, match="'ids' is a numpy array of Python objects"):
        _state_ready({"ids": np.array(["a", None], dtype=object)}, "p.q")
    with pytest.raises(PluginError, match=r"preprocessor state key '\.\./up'"):
        _state_ready({"../up": np.zeros(2)}, "p.q")
    with pytest.raises(PluginError, match="preprocessor state is not JSON"):
        _state_ready({"when": object()}, "p.q")
    with pytest.raises(PluginError, match="preprocessor state is list"):
        _state_ready([1, 2], "p.q")


def test_a_missing_or_escaping_state_file_is_an_integrity_error(tmp_path):
    stored = artifacts.save_state(_state_ready(_state(), "p.q"), tmp_path)
    (tmp_path / "preprocessor" / "codes.npy").unlink()
    with pytest.raises(ModelIntegrityError, match=r"artifact 'codes' .* is missing"):
        artifacts.load_state(stored, tmp_path)
    with pytest.raises(ModelIntegrityError, match="points outside its model version"):
        artifacts.load_state({"known": {"$file": "../../x.parquet", "kind": "parquet"}}, tmp_path)


def test_a_changed_state_file_is_caught_before_scoring(tmp_path):
    store = ModelStore(tmp_path / "home")
    staging = tmp_path / "v"
    staging.mkdir()
    (staging / "model.onnx").write_bytes(b"onnx")
    stored = artifacts.save_state(_state_ready(_state(), "p.q"), staging)
    version = store.register("p.q", staging, {"pipeline": "p.q", "preprocessor": stored})
    assert "preprocessor/known.parquet" in version.manifest["artifacts"]
    store.load("p.q", version.version)
    frame = pl.read_parquet(version.path / "preprocessor" / "known.parquet")
    frame.with_columns(pl.lit("intruder").alias("user")).write_parquet(version.path / "preprocessor" / "known.parquet")
    with pytest.raises(ModelIntegrityError, match=r"known\.parquet"):
        store.load("p.q", version.version)


def test_cross_fitting_compares_large_state_values_exactly():
    a, b = _state(), _state()
    assert _same_state(a, b)
    b["codes"] = b["codes"].copy()
    b["codes"][0, 0] = 9
    assert not _same_state(a, b)
    c = _state()
    c["known"] = c["known"].with_columns(pl.col("user").str.to_uppercase())
    assert not _same_state(a, c)
    assert not _same_state({"x": np.zeros(2)}, {"x": [0.0, 0.0]})
    assert _same_state({"x": np.array([np.nan, 1.0])}, {"x": np.array([np.nan, 1.0])})
