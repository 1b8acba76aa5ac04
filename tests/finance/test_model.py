"""The PD network: monotone by construction, exact contributions, neutral unknown categories, and
the same behaviour in the exported ONNX graph (what scoring runs)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from verticals.export import export_onnx
from verticals.spec import TensorSpec
from verticals_finance.model import CreditRiskNet, build_credit_model

# Feature 3 has a repeated knot (a step, as for a feature that is 0 for many applicants).
KNOTS = [list(np.linspace(-2.0, 2.0, 9)), list(np.linspace(-1.5, 2.5, 17)), list(np.linspace(-2.0, 2.0, 13)),
         [-1.0, 0.0, 0.0, 1.0]]
MONOTONIC = [1, -1, 0, 1]
CARDS = [4, 6]


def _random_model(seed: int = 0) -> CreditRiskNet:
    """A model with random (not trained) weights and a filled background sample."""
    torch.manual_seed(seed)
    model = CreditRiskNet(KNOTS, CARDS, MONOTONIC, background_rows=64)
    with torch.no_grad():
        model.weight.normal_(0.0, 1.0)
        model.embedding.weight.normal_(0.0, 1.0)
        model.bias.fill_(-1.0)
    model.train()
    model(x_num=torch.randn(200, 4), x_cat=torch.stack([torch.randint(1, c, (200,)) for c in CARDS], 1))
    return model.eval()


def _applicants(n: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x_num = torch.randn(n, 4, generator=g) * 1.5
    x_cat = torch.stack([torch.randint(0, c, (n,), generator=g) for c in CARDS], 1)
    return x_num, x_cat


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_constrained_features_are_monotone_for_any_weights(seed: int) -> None:
    model = _random_model(seed)
    x_num, x_cat = _applicants(300, seed)
    grid = torch.linspace(-4, 4, 81)
    with torch.no_grad():
        for j, direction in enumerate(MONOTONIC):
            swept = x_num.repeat_interleave(len(grid), 0)
            swept[:, j] = grid.repeat(len(x_num))
            logits = model(x_num=swept, x_cat=x_cat.repeat_interleave(len(grid), 0))[0].reshape(len(x_num), -1)
            steps = torch.diff(logits, dim=1)
            if direction == 1:
                assert (steps >= -1e-6).all(), f"feature {j} lowered the logit while growing"
            elif direction == -1:
                assert (steps <= 1e-6).all(), f"feature {j} raised the logit while growing"
            else:  # the unconstrained feature really is free to go both ways with these weights
                assert (steps > 1e-4).any() and (steps < -1e-4).any()


def test_contributions_sum_to_logit_minus_a_constant() -> None:
    model = _random_model()
    x_num, x_cat = _applicants(500)
    with torch.no_grad():
        logits, contributions = model(x_num=x_num, x_cat=x_cat)
    assert contributions.shape == (500, 6)
    bias = logits - contributions.sum(1)
    assert torch.allclose(bias, bias[0].expand_as(bias), atol=1e-5)
    # The constant is the mean logit over the background sample (contributions are centred there).
    with torch.no_grad():
        background_logits = model(x_num=model.bg_num, x_cat=model.bg_cat)[0]
    assert bias[0].item() == pytest.approx(background_logits.mean().item(), abs=1e-4)


def test_moving_a_feature_to_the_background_changes_the_logit_by_its_contribution() -> None:
    model = _random_model()
    x_num, x_cat = _applicants(50)
    with torch.no_grad():
        logits, contributions = model(x_num=x_num, x_cat=x_cat)
        top = contributions.argmax(1)
        for i in range(len(x_num)):
            j = int(top[i])
            n = model.bg_num.shape[0]
            num, cat = x_num[i].repeat(n, 1), x_cat[i].repeat(n, 1)
            if j < 4:
                num[:, j] = model.bg_num[:, j]
            else:
                cat[:, j - 4] = model.bg_cat[:, j - 4]
            substituted = model(x_num=num, x_cat=cat)[0]
            # Exact for an additive model: the average drop is the contribution ...
            assert (logits[i] - substituted.mean()).item() == pytest.approx(contributions[i, j].item(), abs=1e-4)
            # ... and the top reason really raised the PD: taking it away lowers the average PD.
            assert torch.sigmoid(substituted).mean() < torch.sigmoid(logits[i])


def test_unknown_category_is_neutral() -> None:
    model = _random_model()
    x_num, x_cat = _applicants(20)
    x_cat[:, 1] = 0
    with torch.no_grad():
        _, contributions = model(x_num=x_num, x_cat=x_cat)
    assert torch.allclose(contributions[:, 4 + 1], torch.zeros(20), atol=1e-6)


def test_terms_are_flat_outside_the_knots_so_extremes_cannot_run_away() -> None:
    model = _random_model()
    x_num, x_cat = _applicants(10)
    with torch.no_grad():
        at_edge = model(x_num=torch.full_like(x_num, 2.5), x_cat=x_cat)[0]
        far_out = model(x_num=torch.full_like(x_num, 1e6), x_cat=x_cat)[0]
    assert torch.allclose(at_edge, far_out)


def test_background_is_filled_from_training_batches_only() -> None:
    model = CreditRiskNet(KNOTS, CARDS, MONOTONIC, background_rows=32)
    x_num, x_cat = _applicants(100)
    model.eval()
    model(x_num=x_num, x_cat=x_cat)
    assert int(model.bg_seen) == 0
    model.train()
    model(x_num=x_num[:20], x_cat=x_cat[:20])
    assert torch.equal(model.bg_num[:20], x_num[:20])
    model(x_num=x_num[20:], x_cat=x_cat[20:])
    assert int(model.bg_seen) == 100
    rows = {tuple(r.tolist()) for r in x_num}
    assert all(tuple(r.tolist()) in rows for r in model.bg_num)


def test_roughness_is_zero_exactly_for_straight_lines_and_the_penalty_is_per_row() -> None:
    model = CreditRiskNet(KNOTS, CARDS, MONOTONIC, background_rows=8, smoothness=2.0)
    with torch.no_grad():  # one slope per feature: w_b = slope * width_b (|w| = w on constrained ones)
        model.weight.copy_(torch.tensor([[0.7], [0.3], [-1.2], [0.5]]) * model.width * model.active)
        assert float(model.roughness()) == pytest.approx(0.0, abs=1e-8)
        grid = torch.linspace(-1.0, 1.0, 21)  # inside every feature's knots: the terms are straight lines
        terms = model.numeric_terms(grid.unsqueeze(1).repeat(1, 4))
        assert torch.allclose(torch.diff(terms, n=2, dim=0), torch.zeros(19, 4), atol=1e-5)
        slopes = model.segment_slopes()
        assert torch.allclose(slopes[1][model.active[1] > 0], torch.full((16,), -0.3))  # decreasing feature
        model.weight[2, 3] += 0.5  # one bend: slope changes on both sides of segment 3 of feature 2
        bend = 0.5 / float(model.width[2, 3])
        assert float(model.roughness()) == pytest.approx(2 * bend ** 2, rel=1e-4)
        assert float(model.penalty(rows=400)) == pytest.approx(2.0 * 2 * bend ** 2 / 400, rel=1e-4)
    assert float(CreditRiskNet(KNOTS, CARDS, MONOTONIC).penalty(rows=10)) == 0.0  # off by default
    with pytest.raises(ValueError, match="smoothness"):
        CreditRiskNet(KNOTS, CARDS, MONOTONIC, smoothness=-1.0)


def _fit(smoothness: float, x_num: torch.Tensor, x_cat: torch.Tensor, y: torch.Tensor) -> CreditRiskNet:
    """A hundred full-batch Adam steps on the log loss plus the model's penalty, as the engine adds it."""
    torch.manual_seed(0)
    model = CreditRiskNet(KNOTS, CARDS, MONOTONIC, background_rows=64, smoothness=smoothness)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    model.train()
    for _ in range(100):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x_num=x_num, x_cat=x_cat)[0], y)
        optimizer.zero_grad()
        (loss + model.penalty(len(y))).backward()
        optimizer.step()
    return model.eval()


def test_smoothing_straightens_noisy_curves_and_keeps_monotonicity_and_contributions() -> None:
    x_num, x_cat = _applicants(300, seed=5)
    g = torch.Generator().manual_seed(6)
    truth = 0.8 * x_num[:, 0] - 0.6 * x_num[:, 1] + 0.3 * x_num[:, 2]  # straight lines
    y = (torch.rand(300, generator=g) < torch.sigmoid(truth)).float()
    rough, smooth = _fit(0.0, x_num, x_cat, y), _fit(30.0, x_num, x_cat, y)
    assert float(smooth.roughness().detach()) < 0.1 * float(rough.roughness().detach())
    with torch.no_grad():
        logits, contributions = smooth(x_num=x_num, x_cat=x_cat)
        reference = logits - contributions.sum(1)
        assert torch.allclose(reference, reference[0].expand_as(reference), atol=1e-4)
        grid = torch.linspace(-3, 3, 61)
        for j, direction in enumerate(MONOTONIC):
            swept = x_num[:50].repeat_interleave(len(grid), 0)
            swept[:, j] = grid.repeat(50)
            steps = torch.diff(smooth(x_num=swept, x_cat=x_cat[:50].repeat_interleave(len(grid), 0))[0]
                               .reshape(50, -1), dim=1)
            assert (direction * steps >= -1e-6).all()
        # The smoothed curve of feature 0 rises along the truth's straight line, not flat.
        assert float(smooth.segment_slopes()[0][smooth.active[0] > 0].mean()) > 0.3


def test_factory_reads_the_preprocessor_info() -> None:
    info = {"numeric": ["a", "b"], "categorical": ["c"], "cardinalities": [3], "monotonic": [1, 0],
            "knots": [[-1.0, 0.0, 1.0], [0.0, 1.0]]}
    model = build_credit_model(info)
    assert model.direction.tolist() == [1.0, 0.0]
    assert model.active.sum().item() == 3  # 2 + 1 segments
    with pytest.raises(ValueError, match="monotonic"):
        build_credit_model({**info, "monotonic": [2, 0]})


def test_exported_onnx_graph_keeps_monotonicity_and_contributions(tmp_path) -> None:
    model = _random_model(3)
    x_num, x_cat = _applicants(64)
    path = export_onnx(None, model, {"x_num": TensorSpec("float32", (-1, 4)), "x_cat": TensorSpec("int64", (-1, 2))},
                       ("logits", "contributions"), {"x_num": x_num.numpy(), "x_cat": x_cat.numpy()},
                       tmp_path / "model.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    base_num = rng.normal(0, 1.5, (400, 4)).astype(np.float32)
    base_cat = np.stack([rng.integers(0, c, 400) for c in CARDS], 1).astype(np.int64)
    grid = np.linspace(-5, 5, 41, dtype=np.float32)
    for j, direction in enumerate(MONOTONIC):
        if direction == 0:
            continue
        swept = np.repeat(base_num, len(grid), 0)
        swept[:, j] = np.tile(grid, len(base_num))
        logits, contributions = session.run(None, {"x_num": swept, "x_cat": np.repeat(base_cat, len(grid), 0)})
        steps = np.diff(logits.reshape(len(base_num), -1), axis=1) * direction
        assert (steps >= -1e-5).all()
        bias = logits - contributions.sum(1)
        np.testing.assert_allclose(bias, bias[0], atol=1e-4)
    with torch.no_grad():
        torch_logits, torch_contrib = model(x_num=torch.from_numpy(base_num), x_cat=torch.from_numpy(base_cat))
    onnx_logits, onnx_contrib = session.run(None, {"x_num": base_num, "x_cat": base_cat})
    np.testing.assert_allclose(onnx_logits, torch_logits.numpy(), atol=1e-4)
    np.testing.assert_allclose(onnx_contrib, torch_contrib.numpy(), atol=1e-4)
