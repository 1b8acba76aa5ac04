"""TabularPreprocessor: fitted statistics, vocabularies, target encoding, state, and the ONNX graph part."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import polars as pl
import pytest
from verticals.data.tabular import STD_FLOOR, TabularPreprocessor, UnsupportedFeatureError
from verticals.data.validation import validate
from verticals.errors import DataValidationError, PluginError
from verticals.spec import Column, Schema
from verticals.testing.reference import make_frame, reference_schema


def small_schema(**target) -> Schema:
    return Schema((
        Column("id", "int", "id"),
        Column("x", "float", monotonic=1),
        Column("n", "int"),
        Column("flag", "bool"),
        Column("city", "category"),
        Column("y", **({"dtype": "string", "role": "target"} | target)),
    ))


def small_frame() -> pl.DataFrame:
    return pl.DataFrame({
        "id": [1, 2, 3, 4, 5, 6],
        "x": [1.0, None, 3.0, 10.0, 5.0, 4.0],
        "n": [1, 2, 2, None, 7, 3],
        "flag": [True, False, None, True, True, False],
        "city": ["b", "a", "b", None, "c", "  "],
        "y": ["bad", "good", "good", "bad", "good", "good"],
    })


def fitted(schema: Schema | None = None, frame: pl.DataFrame | None = None, **kwargs) -> tuple:
    schema = schema or small_schema()
    frame = validate(frame if frame is not None else small_frame(), schema, stage="train").valid
    pre = TabularPreprocessor(schema, **kwargs)
    pre.fit(frame)
    return pre, frame


def test_fit_imputes_with_median_then_standardises_on_imputed_values():
    pre, _ = fitted(positive="bad")
    x = np.array([1.0, 3.0, 10.0, 5.0, 4.0])
    med = np.median(x)
    imputed = np.r_[x, med]
    state = {c["name"]: c for c in pre.state()["numeric"]}
    assert state["x"]["median"] == pytest.approx(med)
    assert state["x"]["mean"] == pytest.approx(imputed.mean())
    assert state["x"]["std"] == pytest.approx(imputed.std())
    # bool becomes 0/1: True, False, (missing), True, True, False → median 1
    assert state["flag"]["median"] == pytest.approx(1.0)


def test_vocabulary_is_ordered_by_frequency_then_value_and_zero_means_unknown_or_missing():
    pre, _ = fitted(positive="bad")
    assert pre.vocabularies() == {"city": ["b", "a", "c"]}  # b twice; a, c once; blank and null excluded
    scoring = pl.DataFrame({"id": [1, 2, 3, 4, 5], "x": [1.0] * 5, "n": [1] * 5, "flag": [True] * 5,
                            "city": ["a", "b", "zzz", None, "c"]})
    batch = pre.transform(validate(scoring, small_schema().without_target(), stage="score").valid,
                          with_target=False)
    assert batch.inputs["x_cat"][:, 0].tolist() == [2, 1, 0, 0, 3]
    assert batch.target is None


def test_transform_gives_raw_values_with_nan_and_the_signature_it_declares():
    pre, frame = fitted(positive="bad")
    batch = pre.transform(frame, with_target=True)
    x_num = batch.inputs["x_num"]
    assert x_num.dtype == np.float32 and x_num.shape == (6, 3)
    assert np.isnan(x_num[1, 0]) and x_num[3, 0] == 10.0  # raw, not standardised
    assert np.isnan(x_num[3, 1])
    assert x_num[:, 2][~np.isnan(x_num[:, 2])].tolist() == [1.0, 0.0, 1.0, 1.0, 0.0]
    assert batch.inputs["x_cat"].dtype == np.int64
    for name, spec in pre.signature().items():
        assert batch.inputs[name].dtype == np.dtype(spec.dtype)
        assert batch.inputs[name].shape[1] == spec.shape[1] and spec.shape[0] == -1
    assert batch.ids["id"].to_list() == [1, 2, 3, 4, 5, 6]
    assert len(batch) == 6
    c_order = TabularPreprocessor(small_schema(), positive="bad", order="C")
    c_order.load_state(pre.state())
    same = c_order.transform(frame, with_target=False).inputs["x_num"]
    assert same.flags["C_CONTIGUOUS"] and np.array_equal(same, x_num, equal_nan=True)


def test_info_reports_sizes_and_monotonic_constraints():
    pre, _ = fitted(positive="bad")
    info = pre.info()
    assert info["numeric"] == ["x", "n", "flag"]
    assert info["categorical"] == ["city"]
    assert info["cardinalities"] == [4]
    assert info["monotonic"] == [1, 0, 0]


def test_inputs_without_features_of_a_kind_are_left_out():
    schema = Schema((Column("x", "float"), Column("y", "int", "target")))
    pre, frame = fitted(schema, pl.DataFrame({"x": [1.0, 2.0], "y": [0, 1]}))
    assert set(pre.signature()) == {"x_num"}
    batch = pre.transform(frame, with_target=True)
    assert set(batch.inputs) == {"x_num"}
    assert batch.ids.height == 2  # no id columns: a row number stands in


def test_binary_target_uses_the_positive_label():
    pre, frame = fitted(positive="bad")
    assert pre.transform(frame, with_target=True).target.tolist() == [1, 0, 0, 1, 0, 0]
    assert pre.transform(frame, with_target=True).target.dtype == np.float32
    pre, frame = fitted(small_schema(categories=("good", "bad")))  # last declared category
    assert pre.transform(frame, with_target=True).target.tolist() == [1, 0, 0, 1, 0, 0]


def test_binary_numeric_target_defaults_to_one():
    schema = reference_schema(n_numeric=2, n_categorical=0)
    pre, frame = fitted(schema, make_frame(200, n_numeric=2, n_categorical=0))
    target = pre.transform(frame, with_target=True).target
    assert pre.task == "binary"
    assert target.tolist() == frame["target"].to_list()


def test_binary_string_target_without_positive_is_a_clear_error():
    with pytest.raises(PluginError, match="target_positive"):
        fitted()


def test_multiclass_target_is_an_index_in_the_sorted_labels_and_unseen_labels_fail():
    schema = small_schema()
    frame = small_frame().with_columns(pl.Series("y", ["b", "c", "a", "c", "b", "a"]))
    pre, valid = fitted(schema, frame, task="multiclass")
    batch = pre.transform(valid, with_target=True)
    assert batch.target.dtype == np.int64
    assert batch.target.tolist() == [1, 2, 0, 2, 1, 0]
    assert pre.info()["classes"] == ["a", "b", "c"]
    with pytest.raises(DataValidationError, match="'d'"):
        pre.transform(valid.with_columns(pl.lit("d").alias("y")), with_target=True)


def test_regression_target_is_float32():
    schema = Schema((Column("x", "float"), Column("y", "float", "target")))
    pre, frame = fitted(schema, pl.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0.5, 1.5, 2.5]}))
    assert pre.task == "regression"
    target = pre.transform(frame, with_target=True).target
    assert target.dtype == np.float32 and target.tolist() == [0.5, 1.5, 2.5]


def test_constant_column_gets_the_std_floor_and_rare_categories_are_capped():
    schema = Schema((Column("k", "float"), Column("c", "category"), Column("y", "int", "target")))
    frame = pl.DataFrame({"k": [2.0] * 6, "c": ["a", "a", "a", "b", "b", "z"], "y": [0, 1] * 3})
    pre, valid = fitted(schema, frame, max_categories=2)
    assert pre.state()["numeric"][0]["std"] == STD_FLOOR
    assert pre.vocabularies()["c"] == ["a", "b"]
    assert pre.transform(valid, with_target=False).inputs["x_cat"][:, 0].tolist() == [1, 1, 1, 2, 2, 0]


def test_state_round_trips_through_json():
    pre, frame = fitted(positive="bad")
    again = TabularPreprocessor(small_schema())
    again.load_state(json.loads(json.dumps(pre.state())))
    a, b = pre.transform(frame, with_target=True), again.transform(frame, with_target=True)
    for name in a.inputs:
        assert np.array_equal(a.inputs[name], b.inputs[name], equal_nan=True)
    assert np.array_equal(a.target, b.target)
    assert again.info() == pre.info()


def test_use_before_fit_and_datetime_features_are_errors():
    with pytest.raises(PluginError, match="before fit"):
        TabularPreprocessor(small_schema()).transform(small_frame(), with_target=False)
    with pytest.raises(UnsupportedFeatureError, match="'when'") as caught:
        TabularPreprocessor(Schema((Column("when", "datetime"),)))
    assert isinstance(caught.value, ValueError)


def test_graph_module_imputes_and_standardises():
    torch = pytest.importorskip("torch")
    pre, frame = fitted(positive="bad")
    batch = pre.transform(frame, with_target=False)
    graph = pre.graph_module()
    assert not list(graph.parameters())
    out = graph(**{k: torch.from_numpy(v) for k, v in batch.inputs.items()})
    stats = pre.state()["numeric"]
    med, mean, std = (np.array([c[k] for c in stats], dtype=np.float32) for k in ("median", "mean", "std"))
    x = batch.inputs["x_num"]
    expected = (np.where(np.isnan(x), med, x) - mean) / std
    np.testing.assert_allclose(out["x_num"].numpy(), expected, rtol=1e-6)
    assert torch.equal(out["x_cat"], torch.from_numpy(batch.inputs["x_cat"]))


def test_graph_module_with_model_exports_to_onnx_and_matches_onnxruntime(tmp_path):
    torch = pytest.importorskip("torch")
    ort = pytest.importorskip("onnxruntime")
    from verticals.testing.reference import mlp_factory

    schema = reference_schema(n_numeric=6, n_categorical=2)
    pre, frame = fitted(schema, make_frame(300, n_numeric=6, n_categorical=2))
    torch.manual_seed(0)
    model = mlp_factory(pre.info(), hidden=(8,))

    class Scorer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.prep, self.model = pre.graph_module(), model  # not "graph": FX reserves it

        def forward(self, x_num, x_cat):
            return self.model(**self.prep(x_num=x_num, x_cat=x_cat))

    scorer = Scorer().eval()
    example = {k: torch.from_numpy(np.ascontiguousarray(v[:4]))
               for k, v in pre.transform(frame.head(4), with_target=False).inputs.items()}
    batch = torch.export.Dim("batch")
    program = torch.onnx.export(scorer, (), kwargs=example, dynamo=True, verbose=False,
                                dynamic_shapes={"x_num": {0: batch}, "x_cat": {0: batch}})
    path = tmp_path / "m.onnx"
    program.save(str(path), external_data=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = pre.transform(frame, with_target=False).inputs  # 300 rows, column-major, with NaN
    assert np.isnan(inputs["x_num"]).any()
    got = session.run(None, inputs)[0]
    with torch.no_grad():
        want = scorer(**{k: torch.from_numpy(v) for k, v in inputs.items()}).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_data_modules_import_without_torch():
    code = ("import sys, verticals.data.tabular, verticals.data.splits, verticals.metrics, "
            "verticals.postprocess, verticals.drift, verticals.training; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_pipeline_default_preprocessor_takes_the_datasets_positive_label_and_the_task():
    from verticals.pipeline import Pipeline
    from verticals.spec import DatasetSpec

    class Credit(Pipeline):
        name, dataset, model, task = "credit", "d", "m", "binary"

    dataset = DatasetSpec(name="d", loader=lambda: None, schema=small_schema(), target_positive="bad")
    pre = Credit().preprocessor(dataset)
    frame = validate(small_frame(), dataset.schema, stage="train").valid
    pre.fit(frame)
    assert pre.transform(frame, with_target=True).target.tolist() == [1, 0, 0, 1, 0, 0]
