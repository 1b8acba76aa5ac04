"""The shared helpers (atomic writes, file hashes, JSON coercion, ORT sessions, column dtypes) and the
guarantee that each exists once."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from verticals.errors import VerticalsError
from verticals.fsutil import sha256_file, write_json_atomic, write_text_atomic
from verticals.jsonutil import json_default, plain_json

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [*sorted((ROOT / "core/src").rglob("*.py")), *sorted((ROOT / "flows/src").rglob("*.py")),
           *sorted((ROOT / "plugins").glob("*/src/**/*.py"))]


def test_plain_json_coerces_what_pipelines_put_in_manifests():
    value = {"a": np.float32(0.5), "b": np.arange(3), "c": Path("/x/y"), "d": {3, 1, 2},
             "e": dt.date(2026, 1, 2), "f": [np.int64(7), float("nan")], "g": np.bool_(True)}
    out = plain_json(value)
    assert out["a"] == 0.5 and out["b"] == [0, 1, 2] and out["c"] == "/x/y" and out["d"] == [1, 2, 3]
    assert out["e"] == "2026-01-02" and out["f"][0] == 7 and math.isnan(out["f"][1]) and out["g"] is True
    assert type(out["f"][0]) is int
    with pytest.raises(TypeError, match="object is not JSON serializable"):
        plain_json({"x": object()})
    with pytest.raises(TypeError, match="Decimal"):
        json_default(__import__("decimal").Decimal("1.5"))


def test_atomic_json_write_replaces_whole_files_and_leaves_nothing_behind(tmp_path):
    path = tmp_path / "state.json"
    write_json_atomic(path, {"n": np.int32(1), "where": tmp_path})
    assert json.loads(path.read_text()) == {"n": 1, "where": str(tmp_path)}
    assert path.read_text().endswith("}\n")
    with pytest.raises(TypeError):
        write_json_atomic(path, {"n": object()})
    assert json.loads(path.read_text())["n"] == 1  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temporary file left
    write_text_atomic(path, "2\n")
    assert path.read_text() == "2\n"


def test_sha256_file_hashes_one_file_or_several_together(tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"x" * 3_000_000)  # more than one read chunk
    b.write_bytes(b"tail")
    assert sha256_file(a).hexdigest() == hashlib.sha256(a.read_bytes()).hexdigest()
    assert sha256_file(a, fsync=True).hexdigest() == hashlib.sha256(a.read_bytes()).hexdigest()
    both = sha256_file(b, sha256_file(a)).hexdigest()
    assert both == hashlib.sha256(a.read_bytes() + b.read_bytes()).hexdigest()


def test_open_session_runs_a_model_and_names_a_file_it_cannot_load(tmp_path):
    from onnx import TensorProto, helper
    from verticals.ort import open_session, session_options

    graph = helper.make_graph([helper.make_node("Neg", ["x"], ["y"])], "neg",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)
    path = tmp_path / "neg.onnx"
    path.write_bytes(model.SerializeToString())
    for source in (path, str(path), model.SerializeToString()):
        session = open_session(source, options=session_options(threads=1))
        np.testing.assert_array_equal(session.run(None, {"x": np.array([1.0, -2.0], np.float32)})[0], [-1.0, 2.0])
        assert session.get_providers() == ["CPUExecutionProvider"]
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(VerticalsError) as err:
        open_session(broken)
    assert str(err.value).count("\n") == 0
    assert f"onnxruntime cannot load {broken}:" in str(err.value) and "(fix: re-export the model" in str(err.value)


def test_column_dtype_maps():
    import polars as pl
    from verticals.data.dtypes import id_dtype, output_dtype

    assert id_dtype("int") == pl.Int64 and id_dtype("category") == pl.String and id_dtype("bool") == pl.Boolean
    assert id_dtype("datetime") == pl.Datetime("us") and id_dtype("float") == pl.Float64
    assert id_dtype("image") is None
    assert output_dtype("list[int]") == pl.List(pl.Int64) and output_dtype("float") == pl.Float64
    assert output_dtype("anything else") == pl.String


@pytest.mark.parametrize(("pattern", "home"), [
    (r"InferenceSession\(", "core/src/verticals/ort.py"),
    (r"SessionOptions\(", "core/src/verticals/ort.py"),
    (r"def \w*json_default\b", "core/src/verticals/jsonutil.py"),
    (r"def \w*(write_json|write_text)\w*\(", "core/src/verticals/fsutil.py"),
    (r"def \w*sha256\w*\(", "core/src/verticals/fsutil.py"),
    (r"\"int\": (pl\.)?\"?Int64", "core/src/verticals/data/dtypes.py"),
])
def test_each_helper_exists_once(pattern, home):
    found = [str(p.relative_to(ROOT)) for p in SOURCES if re.search(pattern, p.read_text())]
    assert found == [home], f"{pattern!r} should be in {home} only, found in {found}"
