"""Points, bands, calibration and reason codes: the numbers a credit officer reads."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from verticals.spec import Batch
from verticals_finance.calibration import apply_platt, fit_platt
from verticals_finance.pipeline import CreditRiskPipeline
from verticals_finance.reasons import reason_codes, used_features
from verticals_finance.scorecard import DEFAULT_BANDS, Scaling, assign_bands, check_bands


def test_pdo_scaling_matches_the_documented_anchor_points() -> None:
    s = Scaling()
    assert s.points(np.array([0.05]))[0] == pytest.approx(600.0)  # 19:1 good:bad
    assert s.points(np.array([1 / 39]))[0] == pytest.approx(650.0)  # 38:1 doubles the odds: +50
    assert s.points(np.array([0.5]))[0] == pytest.approx(s.offset)
    assert s.factor == pytest.approx(72.1348, abs=1e-4)
    assert s.offset == pytest.approx(387.6036, abs=1e-4)
    pd = np.array([0.01, 0.2, 0.7])
    np.testing.assert_allclose(s.pd(s.points(pd)), pd)
    np.testing.assert_allclose(s.points_from_log_odds(np.log(pd / (1 - pd))), s.points(pd))
    assert np.isfinite(s.points(np.array([0.0, 1.0]))).all()  # clipped, not infinite


def test_custom_scaling() -> None:
    s = Scaling(base_points=700, base_odds=50, pdo=20)
    assert s.points(np.array([1 / 51]))[0] == pytest.approx(700.0)
    assert s.points(np.array([1 / 101]))[0] == pytest.approx(720.0)


def test_bands_follow_the_master_scale_boundaries() -> None:
    pd = np.array([0.0, 0.0499, 0.05, 0.0999, 0.1, 0.2, 0.349, 0.35, 0.5, 0.99, 1.0])
    assert assign_bands(pd).tolist() == ["A", "A", "B", "B", "C", "D", "D", "E", "F", "F", "F"]
    with pytest.raises(ValueError):
        check_bands([("A", 0.2), ("B", 0.1), ("C", 1.0)])
    with pytest.raises(ValueError):
        check_bands([("A", 0.2), ("B", 0.9)])
    check_bands(DEFAULT_BANDS)


def test_platt_recovers_a_known_miscalibration() -> None:
    rng = np.random.default_rng(0)
    true_logit = rng.normal(-1.0, 1.5, 20000)
    y = (rng.random(true_logit.size) < 1 / (1 + np.exp(-true_logit))).astype(float)
    model_logit = (true_logit - 0.7) / 2.0  # a model twice too confident-shy and biased
    cal = fit_platt(model_logit, y)
    assert cal["a"] == pytest.approx(2.0, rel=0.05)
    assert cal["b"] == pytest.approx(0.7 * 1.0, abs=0.08)
    z = apply_platt(model_logit, cal)
    # Calibrated: mean PD matches the bad rate, ranking unchanged.
    assert np.mean(1 / (1 + np.exp(-z))) == pytest.approx(y.mean(), abs=0.01)
    assert (np.argsort(z) == np.argsort(model_logit)).all()


def test_platt_never_reverses_the_ranking() -> None:
    rng = np.random.default_rng(1)
    logit = rng.normal(size=500)
    y = (logit < 0).astype(float)  # anti-correlated: a fitted slope would be negative
    cal = fit_platt(logit, y)
    assert cal["a"] == 1.0 and cal["b"] == 0.0 and "note" in cal
    assert "note" in fit_platt(logit, np.zeros(500))


def test_reasons_are_the_largest_positive_costs_of_used_features() -> None:
    lost = np.array([[30.0, -5.0, 12.0, 0.2, 50.0],
                     [-1.0, -2.0, -3.0, -4.0, -5.0],
                     [1.0, 2.0, 3.0, 4.0, 5.0]])
    names = ["income", "age", "debt", "home", "unused"]
    reasons, points, _ = reason_codes(lost, names, used=["income", "age", "debt", "home"], top=2)
    assert reasons.to_list() == [["income", "debt"], [], ["home", "debt"]]
    assert points.to_list() == [[30.0, 12.0], [], [4.0, 3.0]]


def test_used_features_leaves_out_constant_contributions() -> None:
    c = np.array([[0.5, 0.0, 1.0], [-0.5, 0.0, 1.0], [0.1, 0.0, 1.0]])
    assert used_features(c, ["a", "b", "c"]) == ["a"]


def test_postprocess_gives_pd_points_band_and_reasons_in_numpy() -> None:
    pipe = CreditRiskPipeline()
    logits = np.array([-3.0, 0.0, 2.0], dtype=np.float32)
    contributions = np.array([[-1.0, 0.2, 0.0], [0.5, 0.9, 0.0], [2.0, -0.1, 0.0]], dtype=np.float32)
    extras = {"calibration": {"method": "platt", "a": 1.5, "b": -0.2}, "features": ["income", "debt", "home"],
              "used_features": ["income", "debt"], "scaling": Scaling().to_json(), "top_reasons": 4}
    batch = Batch(ids=pl.DataFrame({"id": [1, 2, 3]}), inputs={})
    out = pipe.postprocess({"logits": logits, "contributions": contributions}, batch, extras)
    assert out.columns == ["pd", "points", "band", "reasons", "reason_points", "reason_texts"]
    assert out["reason_texts"].to_list() == out["reasons"].to_list()  # no text table: the names
    z = 1.5 * logits.astype(np.float64) - 0.2
    np.testing.assert_allclose(out["pd"].to_numpy(), 1 / (1 + np.exp(-z)))
    assert out["points"].to_list() == np.rint(Scaling().points_from_log_odds(z)).astype(int).tolist()
    assert out["band"].to_list() == assign_bands(1 / (1 + np.exp(-z))).tolist()
    assert out["reasons"].to_list() == [["debt"], ["debt", "income"], ["income"]]
    factor = 1.5 * Scaling().factor
    assert out["reason_points"].to_list()[1] == [round(0.9 * factor, 1), round(0.5 * factor, 1)]
    # Without extras (during training) the same columns come back, reasons empty.
    bare = pipe.postprocess({"logits": logits, "contributions": contributions}, batch, {})
    assert bare.columns == out.columns and bare["reasons"].to_list() == [[], [], []]


def test_reason_texts_follow_direction_category_and_config() -> None:
    """Texts per reason: numeric high/low/missing against the training median, the applicant's category,
    configured texts first; a protected attribute (left out of used_features) is never a reason."""
    from verticals_finance.reasons import reason_text_table

    class Pre:
        def vocabularies(self):
            return {"home": ["rent", "owner"], "marital": ["single", "married"]}

    info = {"numeric": ["income", "debt_ratio"], "categorical": ["home", "marital"]}
    table = reason_text_table(["income", "debt_ratio", "home", "marital"], info, Pre(),
                              {"debt_ratio": {"high": "Debt is high relative to income"},
                               "home": {"rent": "Applicant rents their home"}}, {"income": "EUR"})
    assert table["numeric"]["income"] == {"high": "Income (EUR) is high", "low": "Income (EUR) is low",
                                          "missing": "Income (EUR) is missing"}
    assert table["categorical"]["home"] == ["Home is a value not seen in training", "Applicant rents their home",
                                            "Home is 'owner'"]
    pipe = CreditRiskPipeline(protected=["marital"])
    extras = {"calibration": {"a": 1.0, "b": 0.0}, "features": ["income", "debt_ratio", "home", "marital"],
              "used_features": ["income", "debt_ratio", "home"], "scaling": Scaling().to_json(),
              "reason_texts": table, "medians": [50.0, 0.3], "top_reasons": 4}
    x_num = np.array([[20.0, 0.9], [np.nan, 0.1], [80.0, 0.5]], dtype=np.float32)
    x_cat = np.array([[1, 2], [2, 1], [1, 1]], dtype=np.int64)
    contributions = np.array([[0.4, 0.6, 0.2, 0.9], [0.5, 0.0, 0.3, 0.9], [-0.2, 0.1, 0.0, 0.9]], dtype=np.float32)
    batch = Batch(ids=pl.DataFrame({"id": [1, 2, 3]}), inputs={"x_num": x_num, "x_cat": x_cat})
    out = pipe.postprocess({"logits": np.zeros(3, dtype=np.float32), "contributions": contributions}, batch, extras)
    assert out["reasons"].to_list() == [["debt_ratio", "income", "home"], ["income", "home"], ["debt_ratio"]]
    assert out["reason_texts"].to_list() == [
        ["Debt is high relative to income", "Income (EUR) is low", "Applicant rents their home"],
        ["Income (EUR) is missing", "Home is 'owner'"],
        ["Debt is high relative to income"]]
