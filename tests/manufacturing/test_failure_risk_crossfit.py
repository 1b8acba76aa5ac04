"""manufacturing.failure_risk cross-fitted over machines (``TrainingConfig.crossfit_groups``): the alert
threshold comes from the out-of-fold windows, gradient boosting is fitted on the same folds, and the
bagged GRU exports with parity."""

from __future__ import annotations

import dataclasses
import json
from typing import ClassVar

import numpy as np
import pytest
import verticals_manufacturing.plugin as plugin
from manufacturing_support import SmallPlugin
from verticals.hookspecs import hookimpl
from verticals.testing import use_plugins

pytestmark = pytest.mark.slow


class CrossFitted(SmallPlugin):
    """The small fleet with failure_risk cross-fitted over 3 folds of machines; keeps what fit_extras saw."""

    seen: ClassVar[list] = []

    @hookimpl
    def register_pipelines(self, register):
        seen = self.seen

        def with_crossfit(pipe, **kwargs):
            if pipe.name == "failure_risk":
                pipe.training = dataclasses.replace(pipe.training, crossfit_groups=True, crossfit_folds=3,
                                                    crossfit_final="bag")
                fit_extras = pipe.fit_extras

                def spy(context):
                    seen.append(context.crossfit)
                    return fit_extras(context)

                pipe.fit_extras = spy
            register(pipe, **kwargs)

        plugin.register_pipelines(with_crossfit)


def test_threshold_from_out_of_fold_windows_and_boosting_on_the_same_folds(tmp_path):
    from verticals.engine import train
    from verticals.postprocess import sigmoid
    from verticals.spec import target_labels
    from verticals_manufacturing.evaluation import choose_threshold

    with use_plugins({"manufacturing": CrossFitted(machines=12)}):
        result = train("manufacturing.failure_risk", home=tmp_path, epochs=1, progress=False, variants=())
    record = CrossFitted.seen[-1]
    manifest = result.manifest
    assert manifest["parity"]["passed"]
    summary = manifest["training"]["crossfit"]
    assert summary["groups"] == 12 and summary["group_column"] == "machine_id" and summary["final"] == "bag"
    extras = manifest["extras"]
    # The stored threshold is the cost-optimal one over every pooled window's out-of-fold probability.
    labels = target_labels(record.target)  # column 0 of the fleet's [N, 1 + K] target
    expected = choose_threshold(labels, sigmoid(np.asarray(record.outputs["logits"], dtype=np.float64)).reshape(-1),
                                extras["costs"]["miss"], extras["costs"]["false_alarm"])
    assert extras["threshold"] == pytest.approx(expected["threshold"])
    assert extras["threshold_source"] == (f"out-of-fold probabilities of the {record.rows} pooled training and "
                                          "validation windows (3 folds of whole machines, 12 machines)")
    assert np.count_nonzero(labels > 0.5) > 0
    metrics = json.loads((result.path / "metrics.json").read_text())
    for name in ("hist_gradient_boosting", "hist_gradient_boosting_crossfit", "logistic_regression"):
        assert 0.0 < metrics["baselines"][name]["pr_auc"] <= 1.0, name
    assert 0.0 <= extras["baseline_thresholds"]["hist_gradient_boosting_crossfit"] <= 1.0
    report = (result.path / "report.html").read_text()
    assert "hist_gradient_boosting_crossfit" in report and "held-out groups" in report
    assert "minimises the expected cost on out-of-fold probabilities of the" in report
    assert "validation figures are in-sample" in report and "in-sample: the model trained on it" in report
