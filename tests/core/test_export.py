"""ONNX export: one file, dynamic batch, names from the signature, parity at another batch size, variants."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from verticals import export as ex
from verticals.spec import TensorSpec

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

SIGNATURE = {"x_num": TensorSpec("float32", (-1, 16)), "x_cat": TensorSpec("int64", (-1, 2))}


def _inputs(rows: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x_num = (rng.normal(10, 5, (rows, 16))).astype(np.float32)
    x_num[rng.random(rows) < 0.1, 3] = np.nan  # imputed inside the graph
    # Column-major, like TabularPreprocessor.transform's output.
    return {"x_num": np.asfortranarray(x_num), "x_cat": rng.integers(0, 6, (rows, 2)).astype(np.int64)}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from verticals.data.tabular_graph import TabularGraph
    from verticals.testing.reference import mlp_factory

    torch.manual_seed(0)
    graph = TabularGraph([10.0] * 16, [10.0] * 16, [5.0] * 16)
    model = mlp_factory({"numeric": [f"f{i}" for i in range(16)], "cardinalities": [6, 13]}, hidden=(32, 16))
    path = tmp_path_factory.mktemp("export") / "model.onnx"
    ex.export_onnx(graph, model, SIGNATURE, ("logits",), _inputs(64, 0), path)
    return {"path": path, "graph": graph, "model": model}


def test_one_file_named_inputs_outputs_dynamic_batch(exported: dict) -> None:
    path: Path = exported["path"]
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.onnx"]  # no external .data file
    proto = onnx.load(str(path))
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [ex.OPSET]
    assert ex.onnx_exporter(path) == "dynamo"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["x_num", "x_cat"]
    assert [o.name for o in session.get_outputs()] == ["logits"]
    for meta in (*session.get_inputs(), *session.get_outputs()):
        assert isinstance(meta.shape[0], str), f"{meta.name} has a fixed batch axis {meta.shape}"
    for rows in (1, 7, 300):  # batch sizes other than the example's 64
        out = session.run(None, {k: np.ascontiguousarray(v) for k, v in _inputs(rows, rows).items()})[0]
        assert out.shape == (rows,) and np.isfinite(out).all()


def test_parity_passes_at_another_batch_size(exported: dict) -> None:
    module = ex.compose(exported["graph"], exported["model"], list(SIGNATURE))
    parity = ex.check_parity(exported["path"], module, _inputs(333, 1))
    assert parity["passed"] is True and parity["rows"] == 333
    assert parity["max_abs_diff"] <= 1e-5
    assert parity["tolerance"] == ex.PARITY_TOLERANCE == 1e-4
    assert set(parity["outputs"]) == {"logits"} and parity["provider"] == "CPUExecutionProvider"


def test_parity_fails_when_the_graph_differs_from_torch(exported: dict) -> None:
    # PyTorch without the in-graph imputation and scaling: what a forgotten graph module looks like.
    parity = ex.check_parity(exported["path"], ex.compose(None, exported["model"], list(SIGNATURE)), _inputs(200, 2))
    assert parity["passed"] is False
    assert parity["max_abs_diff"] > 1e-2


def test_example_of_one_row_is_refused(exported: dict, tmp_path: Path) -> None:
    with pytest.raises(ex.ExportError, match="at least 2 rows"):
        ex.export_onnx(None, exported["model"], SIGNATURE, ("logits",), _inputs(1, 0), tmp_path / "m.onnx")


def test_variants_are_kept_only_within_tolerance(exported: dict, tmp_path: Path) -> None:
    import shutil

    source = tmp_path / "model.onnx"
    shutil.copyfile(exported["path"], source)
    sample = {k: np.ascontiguousarray(v) for k, v in _inputs(2000, 3).items()}
    fp32 = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"]).run(None, sample)[0]
    target = (fp32 > np.median(fp32)).astype(np.float64)  # a metric the fp32 model gets perfect

    def accuracy(path: Path, providers) -> tuple[float, str]:
        session = ort.InferenceSession(str(path), providers=list(providers))
        out = session.run(None, sample)[0]
        return float(np.mean((out > np.median(fp32)) == target)), session.get_providers()[0]

    records = ex.build_variants(source, accuracy, 1.0, metric_name="accuracy", sample=sample)
    int8 = records["int8"]
    assert int8["provider"] == "CPUExecutionProvider" and int8["metric"] is not None
    if int8["accepted"]:  # timed against fp32 on the sample, for ``auto``
        assert int8["speedup"] > 0 and "rows per call" in int8["timed_on"], int8
    assert int8["accepted"] == (abs(int8["delta"]) <= ex.VARIANT_TOLERANCE)
    assert (tmp_path / "model.int8.onnx").exists() == int8["accepted"]
    assert int8["file"] == ("model.int8.onnx" if int8["accepted"] else None)
    fp16 = records["fp16"]
    if fp16["provider"] != "CUDAExecutionProvider":  # a CPU check does not verify GPU fp16 arithmetic
        assert fp16["accepted"] is False and fp16["file"] is None and "not verified" in fp16["reason"]
        assert not (tmp_path / "model.fp16.onnx").exists()

    # A stricter tolerance than the variant achieves: the variant is recorded, not registered.
    strict = ex.build_variants(source, lambda p, prov: (accuracy(p, prov)[0] - 0.01, "CPUExecutionProvider"),
                               1.0, kinds=("int8",), metric_name="accuracy")["int8"]
    assert strict["accepted"] is False and strict["file"] is None and ">" in strict["reason"]
    assert not (tmp_path / "model.int8.onnx").exists()


def test_unknown_variant_is_a_user_error(exported: dict) -> None:
    from verticals.errors import UserError

    with pytest.raises(UserError, match="unknown model variant"):
        ex.build_variants(exported["path"], lambda p, prov: (0.0, "CPUExecutionProvider"), 0.0, kinds=("int4",))


class _Shifted(torch.nn.Module):
    """The exported module with every output moved by ``delta``: a finite, known disagreement."""

    def __init__(self, inner: torch.nn.Module, delta: float) -> None:
        super().__init__()
        self.inner, self.delta = inner, delta

    def forward(self, *inputs):
        out = self.inner(*inputs)
        return tuple(o + self.delta for o in out) if isinstance(out, (tuple, list)) else out + self.delta


def test_parity_limit_is_1e4_of_the_output_scale(exported: dict) -> None:
    """A disagreement just under 1e-4 x max(1, max|y|) passes, just over it fails (a limit made looser by
    any factor, or measured differently, fails this test; a NaN would not tell)."""
    module = ex.compose(exported["graph"], exported["model"], list(SIGNATURE)).eval()
    sample = _inputs(257, 4)
    with torch.no_grad():
        out = module(*(torch.from_numpy(np.ascontiguousarray(sample[n])) for n in SIGNATURE))
    reference = (out[0] if isinstance(out, (tuple, list)) else out).numpy()
    limit = 1e-4 * max(1.0, float(np.abs(reference).max()))  # computed here, not read from the result
    assert ex.PARITY_TOLERANCE == 1e-4
    below = ex.check_parity(exported["path"], _Shifted(module, 0.9 * limit), sample)
    above = ex.check_parity(exported["path"], _Shifted(module, 1.1 * limit), sample)
    assert below["passed"] is True, below
    assert above["passed"] is False, above
    assert math.isclose(above["outputs"]["logits"]["limit"], limit, rel_tol=1e-6)
    assert 1.05 * limit < above["max_abs_diff"] < 1.15 * limit


class _Wide(torch.nn.Module):
    """16 inputs → ``width`` hidden units → 1: about ``width`` × 4 bytes × 2 of activations per row."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(16, width), torch.nn.ReLU(), torch.nn.Linear(width, 1))

    def forward(self, x_num: torch.Tensor) -> torch.Tensor:
        return self.net(x_num).squeeze(1)


def _can_reset_peak_memory() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _can_reset_peak_memory(), reason="measures with Linux's /proc/self/clear_refs")
def test_working_memory_per_example_is_measured_not_read_off_the_inputs(exported: dict, tmp_path: Path) -> None:
    """Models with about the same input rows: one with 4,096 hidden units needs ~32 kB per row in a call,
    the small MLP (32 and 16 units) almost nothing. Scoring sizes its batches with these figures."""
    sample = _inputs(300, 5)
    path = ex.export_onnx(None, _Wide(4096).eval(), {"x_num": TensorSpec("float32", (-1, 16))}, ("logits",),
                          {"x_num": sample["x_num"][:4]}, tmp_path / "wide.onnx")
    wide = ex.memory_per_example(path, {"x_num": sample["x_num"]})
    narrow = ex.memory_per_example(exported["path"], sample)
    assert 16_000 <= wide["bytes_per_example"] <= 100_000, wide
    assert narrow["bytes_per_example"] < 4_000 and "examples per call" in narrow["memory_measured_on"], narrow
    assert ex.memory_per_example(path, {})["bytes_per_example"] is None


def test_batch_rows_count_the_measured_working_memory() -> None:
    from verticals.scoring.session import batch_rows

    windows = {"inputs": {"window": {"dtype": "float32", "shape": [-1, 24, 6]}}}
    assert batch_rows(65536, windows, budget=256 << 20) == 65536  # inputs alone: 576 bytes a window
    measured = {**windows, "bytes_per_example": 16_000}  # a GRU's gate buffers, measured at registration
    assert batch_rows(65536, measured, budget=256 << 20) == (256 << 20) // (576 + 16_000)
