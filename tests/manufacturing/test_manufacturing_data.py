"""The generators follow their documented rules, and the physics features are the same in numpy and in
the exported graph's torch module; horizon labels and windows are exact on hand-made telemetry."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from verticals.spec import CONTEXT
from verticals_manufacturing.ai4i import (
    AI4I_COLUMNS,
    AIR,
    MODES,
    PROCESS,
    SPEED,
    TORQUE,
    WEAR,
    failure_modes,
    generate_ai4i,
)
from verticals_manufacturing.evaluation import (
    choose_threshold,
    cost_curve,
    decode_target,
    encode_target,
    recall_at_fpr,
)
from verticals_manufacturing.fleet import generate_fleet
from verticals_manufacturing.risk import WindowPreprocessor, horizon_labels


@pytest.fixture(scope="module")
def ai4i():
    return generate_ai4i(10_000, seed=3)


def test_ai4i_layout_and_seeding(ai4i):
    assert tuple(ai4i.columns) == AI4I_COLUMNS
    assert generate_ai4i(500, seed=3).equals(generate_ai4i(500, seed=3))
    assert not generate_ai4i(500, seed=3).equals(generate_ai4i(500, seed=4))
    assert ai4i["UDI"].to_list() == list(range(1, 10_001))
    assert ai4i["Product ID"].n_unique() == ai4i.height
    assert all(pid[0] == t for pid, t in zip(ai4i["Product ID"], ai4i["Type"], strict=True))


def test_ai4i_marginals_follow_the_released_file(ai4i):
    mix = ai4i["Type"].value_counts(normalize=True).sort("Type")
    share = dict(zip(mix["Type"], mix["proportion"], strict=True))
    assert share["L"] == pytest.approx(0.6, abs=0.02) and share["H"] == pytest.approx(0.1, abs=0.015)
    described = generate_ai4i(10_000, seed=3, released=False)["Type"].value_counts(normalize=True)
    assert dict(zip(described["Type"], described["proportion"], strict=True))["H"] == pytest.approx(0.2, abs=0.02)
    torque, speed = ai4i[TORQUE].to_numpy(), ai4i[SPEED].to_numpy()
    assert torque.mean() == pytest.approx(40, abs=0.5) and torque.std() == pytest.approx(10, abs=0.5)
    assert speed.mean() == pytest.approx(1539, abs=8) and speed.std() == pytest.approx(179, abs=8)
    assert np.corrcoef(torque, speed)[0, 1] == pytest.approx(-0.875, abs=0.02)
    assert torque.min() >= 3.8
    difference = (ai4i[PROCESS] - ai4i[AIR]).to_numpy()
    assert difference.mean() == pytest.approx(10, abs=0.6)  # an AR(1) walk: few independent stretches
    assert ai4i[AIR].mean() == pytest.approx(300, abs=1.5)


def test_ai4i_failure_rules_hold_exactly_on_the_written_values(ai4i):
    types = ai4i["Type"].to_numpy()
    hdf, pwf, osf = failure_modes(types, *(ai4i[c].to_numpy().astype(float) for c in (AIR, PROCESS, SPEED, TORQUE, WEAR)))
    assert np.array_equal(hdf, ai4i["HDF"].to_numpy() == 1)
    assert np.array_equal(pwf, ai4i["PWF"].to_numpy() == 1)
    assert np.array_equal(osf, ai4i["OSF"].to_numpy() == 1)
    # Tool wear: +2/3/5 per process for L/M/H, reset at the replacement point (200-240 min).
    wear = ai4i[WEAR].to_numpy()
    step = np.select([types == "L", types == "M", types == "H"], [2, 3, 5])
    grows = np.diff(wear) == step[:-1]
    reset = np.diff(wear) < 0
    assert (grows | reset).all()
    assert wear[:-1][reset].min() >= 200 and wear.max() <= 245
    twf = ai4i["TWF"].to_numpy() == 1
    assert twf.sum() > 20 and (wear[twf] >= 200).all()
    # Machine failure is any of TWF/HDF/PWF/OSF ...
    deterministic = (ai4i.select(pl.any_horizontal([pl.col(m) == 1 for m in ("TWF", "HDF", "PWF", "OSF")]))
                     .to_series().to_numpy())
    failure = ai4i["Machine failure"].to_numpy() == 1
    assert failure[deterministic].all()
    assert 0.02 < failure.mean() < 0.06
    # ... and, as in the released file, RNF mostly comes without a failure and some failures have no mode.
    rnf = ai4i["RNF"].to_numpy() == 1
    assert 3 <= rnf.sum() <= 25 and (rnf & ~failure).sum() >= rnf.sum() - 3
    assert (failure & ~deterministic & ~rnf).sum() >= 1


def test_physics_features_are_the_same_in_numpy_and_in_the_graph():
    import torch
    from verticals_manufacturing.graph import ProcessGraph
    from verticals_manufacturing.physics import FEATURES, physics_features

    frame = generate_ai4i(300, seed=1)
    x = frame.select(AIR, PROCESS, SPEED, TORQUE, WEAR).to_numpy().astype(np.float32)
    x[5, 2] = np.nan  # a speed dropout: imputed with the median in both
    types = frame["Type"].replace_strict({"L": 0, "M": 1, "H": 2}).to_numpy().astype(np.int64)
    medians = np.nanmedian(x, axis=0)
    expected = physics_features(np.where(np.isnan(x), medians, x), types)
    graph = ProcessGraph(medians.tolist(), [0.0] * len(FEATURES), [1.0] * len(FEATURES))
    got = graph(torch.from_numpy(x), torch.from_numpy(types))["features"].numpy()
    assert np.allclose(got, expected, rtol=1e-5, atol=1e-3)
    # power in kW at 40 Nm and 1,500 rpm; the overstrain ratio of an H product
    assert physics_features(np.array([[300, 310, 1500, 40, 200]]), np.array([2]))[0, 6] == pytest.approx(6.2832, 1e-4)
    assert physics_features(np.array([[300, 310, 1500, 40, 200]]), np.array([2]))[0, 8] == pytest.approx(8000 / 13000)


def test_target_encoding_round_trips_failures_and_modes():
    failure = np.array([0, 1, 1, 1, 0], dtype=bool)
    bits = np.array([3, 0, 1, 0b10110, 0])
    target = encode_target(failure, bits)
    got_failure, got_bits = decode_target(target)
    assert np.array_equal(got_failure, failure)
    assert got_bits.tolist() == [0, 0, 1, 0b10110, 0]  # a non-failure's modes are dropped
    assert ((target > 0.5) == failure).all()


def test_cost_threshold_minimises_expected_cost():
    rng = np.random.default_rng(0)
    y = rng.random(2000) < 0.05
    score = np.clip(0.6 * y + rng.normal(0.2, 0.15, 2000), 0, 1)
    thresholds, cost = cost_curve(y, score, 100.0, 5.0)
    brute = [(100.0 * (y & (score < t)).sum() + 5.0 * (~y & (score >= t)).sum()) / y.size for t in thresholds]
    assert np.allclose(cost, brute)
    chosen = choose_threshold(y, score, 100.0, 5.0)
    assert chosen["expected_cost"] == pytest.approx(min(brute))
    # a dearer miss never raises the threshold
    assert choose_threshold(y, score, 1000.0, 5.0)["threshold"] <= chosen["threshold"]
    assert recall_at_fpr(y, score, 0.01) <= recall_at_fpr(y, score, 0.1) <= 1.0


def test_fleet_generator_is_seeded_and_failures_have_modes():
    fleet = generate_fleet(12, seed=5, min_cycles=100, max_cycles=200)
    assert fleet.equals(generate_fleet(12, seed=5, min_cycles=100, max_cycles=200))
    assert fleet["machine_id"].n_unique() == 12
    assert fleet.group_by("machine_id").agg(pl.col("cycle").diff().drop_nulls().eq(1).all())["cycle"].all()
    failures = fleet.filter(pl.col("failure") == 1)
    assert failures.height > 0 and failures["failure_mode"].is_in(list(MODES)).all()
    assert fleet.filter(pl.col("failure") == 0)["failure_mode"].null_count() == fleet.filter(pl.col("failure") == 0).height


def _telemetry(machine: str, cycles: int, failures: dict[int, str] | None = None) -> pl.DataFrame:
    failures = failures or {}
    return pl.DataFrame({
        "machine_id": [machine] * cycles, "cycle": list(range(cycles)),
        "air_temperature": [300.0] * cycles, "process_temperature": [310.0] * cycles,
        "rotational_speed": [1500.0 + c for c in range(cycles)], "torque": [40.0] * cycles,
        "tool_wear": [float(c) for c in range(cycles)], "vibration": [2.0] * cycles,
        "failure": [1 if c in failures else 0 for c in range(cycles)],
        "failure_mode": [failures.get(c) for c in range(cycles)],
    })


def test_horizon_labels_look_ahead_h_cycles_and_censor_the_end():
    frame = _telemetry("A", 40, {20: "HDF+PWF"})
    labelled = horizon_labels(frame.sample(fraction=1.0, shuffle=True, seed=1), horizon=5).sort("cycle")
    label = labelled["_failure_within_h"].to_list()
    assert label[14] == 0 and label[15:20] == [1] * 5 and label[20] == 0  # (t, t+H]
    assert label[35:] == [None] * 5 and label[34] == 0  # readings end within H: censored
    assert labelled["_mode_bits"][17] == (1 << MODES.index("HDF")) | (1 << MODES.index("PWF"))
    assert labelled["_next_failure"][15] == 20 and labelled["_next_failure"][14] is None


def test_windows_are_the_last_w_readings_and_short_machines_are_counted():
    pre = WindowPreprocessor(window=4)
    frame = horizon_labels(pl.concat([_telemetry("A", 12, {8: "TWF"}), _telemetry("B", 3)]), horizon=2)
    pre.fit(frame)
    batch = pre.transform(frame.sample(fraction=1.0, shuffle=True, seed=2), with_target=True)
    assert batch.ids["machine_id"].to_list() == ["A"] * 7  # cycles 3..9 (10, 11 censored)
    assert batch.ids["cycle"].to_list() == list(range(3, 10))
    speed = batch.inputs["window"][:, :, 2]
    assert np.array_equal(speed[0], [1500, 1501, 1502, 1503])
    assert batch.skipped == {"first 3 readings of a machine (no full window yet)": 3,
                             "machine 'B' has 3 valid reading(s), fewer than a window of 4": 3,
                             "no label: the machine's readings end within the horizon (censored)": 2}
    assert (batch.labels > 0.5).tolist() == [False, False, False, True, True, False, False]
    assert batch.aux["TWF"].to_list() == [0, 0, 0, 1, 1, 0, 0]
    # Context rows are read, never turned into examples.
    ctx = frame.filter(pl.col("machine_id") == "A").with_columns(pl.Series(CONTEXT, [True] * 6 + [False] * 6))
    assert pre.transform(ctx, with_target=True).ids["cycle"].to_list() == [6, 7, 8, 9]


def test_auxiliary_horizons_are_labelled_without_looking_into_the_next_split():
    from verticals.data.splits import Splits
    from verticals_manufacturing.risk import auxiliary_labels

    # Failures at 32 (inside the gap before validation) and at 45 (validation); H = 5, horizons 5 and 15.
    frame = horizon_labels(_telemetry("A", 60, {32: "TWF", 45: "HDF"}), horizon=5, future=True)
    train = frame.filter(pl.col("cycle") < 30)
    valid = frame.filter(pl.col("cycle") < 60).with_columns((pl.col("cycle") < 35).alias(CONTEXT))
    splits = auxiliary_labels(Splits(train, valid, frame.clear().with_columns(pl.lit(False).alias(CONTEXT)),
                                     strategy="group_time"), horizon=5, fractions=(1.0, 3.0))
    assert "_next_failure_any" not in splits.train.columns and "_last_reading" not in splits.valid.columns
    pre = WindowPreprocessor(window=4, horizons=(1.0, 3.0))
    pre.fit(splits.train)
    train_target = pre.transform(splits.train, with_target=True)
    at = dict(zip(train_target.ids["cycle"].to_list(), train_target.target.tolist(), strict=True))
    assert at[20] == [0.0, 0.0, 1.0]   # the failure at 32 (in the gap) is 12 cycles ahead: seen at 15, not at 5
    assert at[27][0] > 0.5 and at[27][1:] == [1.0, 1.0]
    assert at[14] == [0.0, 0.0, 0.0]  # (14, 29]: no failure, and it ends before validation begins (35)
    # No training label looks into the validation period (from 35 on) — the failure at 45 included.
    train_only = horizon_labels(_telemetry("A", 60, {45: "HDF"}), horizon=5, future=True)
    cut = auxiliary_labels(Splits(train_only.filter(pl.col("cycle") < 30),
                                  train_only.filter(pl.col("cycle") >= 35).with_columns(pl.lit(False).alias(CONTEXT)),
                                  train_only.clear().with_columns(pl.lit(False).alias(CONTEXT)), strategy="group_time"),
                           horizon=5, fractions=(1.0, 3.0))
    long = pre.transform(cut.train, with_target=True)
    by_cycle = dict(zip(long.ids["cycle"].to_list(), long.target[:, 2].tolist(), strict=True))
    assert by_cycle[19] == 0.0 and by_cycle[20] == -1.0 and by_cycle[29] == -1.0  # (20, 35] reaches validation
    # Validation is the last part here: its horizons end with the machine's readings.
    valid_target = pre.transform(splits.valid, with_target=True)
    v = dict(zip(valid_target.ids["cycle"].to_list(), valid_target.target.tolist(), strict=True))
    assert v[40][1:] == [1.0, 1.0] and v[50][1:] == [0.0, -1.0]  # 50: 9 readings left, fewer than 15
    # Without the split's columns (a frame labelled by hand) the horizons are unknown, not negative.
    plain = pre.transform(horizon_labels(_telemetry("A", 30), horizon=5), with_target=True)
    assert (plain.target[:, 1:] == -1).all()


def test_window_gru_horizon_head_trains_but_is_never_exported():
    import torch
    from verticals_manufacturing.evaluation import failure_loss
    from verticals_manufacturing.graph import WindowGRU

    torch.manual_seed(0)
    model = WindowGRU(channels=9, n_modes=5, relative=4, horizons=3)
    window = torch.randn(6, 9, 24)
    assert len(model.train()(window)) == 3 and len(model.eval()(window)) == 2
    outputs = model.train()(window)
    label = torch.tensor([0.0, 1.0 + 2 / 64, 0.0, 0.0, 1.0, 0.0])
    unknown = torch.column_stack([label, torch.full((6, 3), -1.0)])
    # Unknown horizon labels add nothing; the loss on the label alone is the same as without them.
    assert torch.allclose(failure_loss(outputs, unknown, 5), failure_loss(outputs[:2], label, 5))
    known = unknown.clone()
    known[:, 1:] = torch.tensor([[0.0, 0.0, 1.0]]).expand(6, 3)
    assert failure_loss(outputs, known, 5) > failure_loss(outputs[:2], label, 5)
    # The recurrence reads every channel and its change since the window's first 4 steps.
    assert model.gru.input_size == 18 and WindowGRU(channels=9, n_modes=5).gru.input_size == 9


def test_report_says_what_the_fleet_network_is():
    from types import SimpleNamespace

    from verticals.ensemble import AveragedModel
    from verticals_manufacturing.graph import WindowGRU
    from verticals_manufacturing.report import _network
    from verticals_manufacturing.risk import AUX_HORIZONS, FailureRiskPipeline

    pipe = FailureRiskPipeline()
    pre = SimpleNamespace(horizons=AUX_HORIZONS)
    plain = SimpleNamespace(model=WindowGRU(9, 5), preprocessor=pre, crossfit=None)
    assert _network(pipe, plain) == ""
    three = SimpleNamespace(model=AveragedModel([WindowGRU(9, 5, relative=4, horizons=10) for _ in range(3)]),
                            preprocessor=pre, crossfit=None)
    text = _network(pipe, three)
    assert "average of 3 copies trained with consecutive seeds" in text
    assert "fails within each of 10 horizons (2 cycles to 30 cycles" in text


def test_contradictory_labels_are_learned_as_the_failure_column_says():
    from verticals_manufacturing.process import ProcessPreprocessor, label_issues

    frame = generate_ai4i(40, seed=4).with_columns(pl.lit(0).alias(m) for m in MODES).with_columns(
        pl.lit(0).alias("Machine failure"))
    rows = frame.to_dicts()
    rows[0]["HDF"] = 1                                    # a mode flag without a failure
    rows[1]["Machine failure"] = 1                        # a failure without a mode
    rows[2]["Machine failure"], rows[2]["OSF"] = 1, 1     # a failure with its mode
    rows[3][AIR] = 26.85                                  # °C
    frame = pl.DataFrame(rows)
    assert label_issues(frame) == {"mode_without_failure": 1, "failure_without_mode": 1}
    pre = ProcessPreprocessor()
    pre.fit(frame)
    batch = pre.transform(frame, with_target=True)
    assert batch.rejects["_row"].to_list() == [3] and "Celsius" in batch.rejects["_reason"][0]
    failure, bits = decode_target(batch.target)
    assert failure[:3].tolist() == [False, True, True] and not failure[3:].any()
    assert bits[:3].tolist() == [0, 0, 1 << MODES.index("OSF")]
    assert batch.aux["HDF"][0] == 1  # still visible to reports, never a positive
    assert batch.ids["UDI"].to_list() == [r["UDI"] for i, r in enumerate(rows) if i != 3]


def test_fleet_channels_and_window_summaries_are_the_same_in_numpy_and_in_the_graph():
    """What the baselines see (window_design) is what window_wide computes in the exported graph:
    the physics channels (power, wear × torque, temperature difference) and the window summaries."""
    import torch
    from verticals_manufacturing.graph import window_summaries
    from verticals_manufacturing.layout import FLEET_LAYOUT
    from verticals_manufacturing.risk import window_design

    assert FLEET_LAYOUT.channels[-3:] == ("power_kw", "wear_torque", "temperature_difference")
    frame = horizon_labels(pl.concat([_telemetry("A", 30, {20: "HDF"}), _telemetry("B", 26)]), horizon=3)
    pre = WindowPreprocessor(window=6)
    pre.fit(frame)
    windows = pre.transform(frame, with_target=True).inputs["window"].copy()
    windows[2, 3, 1] = np.nan  # a dropout: the training median in both
    graph = pre.graph_module()
    scaled = graph(torch.from_numpy(windows))["window"]  # [N, C, W], standardised
    got = window_summaries(scaled).numpy() * np.tile(pre.stds, 5) + np.r_[np.tile(pre.means, 4), np.zeros(len(pre.means))]
    assert np.allclose(got, window_design(windows, pre.medians), rtol=1e-5, atol=1e-3)
    process_minus_air = window_design(windows, pre.medians)[:, len(FLEET_LAYOUT.channels) - 1]  # last reading's
    assert np.allclose(process_minus_air, 10.0)
    # Summary statistics for window_wide: 5 summaries per channel, 16 rising thresholds each.
    assert len(pre.summary_means) == 5 * len(FLEET_LAYOUT.channels) == len(pre.summary_quantiles)
    assert all(len(q) == 16 and q == sorted(q) for q in pre.summary_quantiles)
    restored = WindowPreprocessor()
    restored.load_state(pre.state())
    assert restored.info()["summary_quantiles"] == pre.summary_quantiles


def test_a_layout_without_two_temperatures_has_no_temperature_difference():
    from verticals_manufacturing.layout import TelemetryLayout

    one = TelemetryLayout(temperatures=("air_temperature",))
    assert "temperature_difference" not in one.physics and one.channels[-1] == "wear_torque"
