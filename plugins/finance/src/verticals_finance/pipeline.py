"""``finance.credit_risk``: probability of default, scorecard points, risk band and reason codes.

What the engine calls, and what each step does here:

* :meth:`CreditRiskPipeline.preprocessor` — the core's tabular preprocessor plus quantile knots.
* the model factory (:func:`verticals_finance.model.build_credit_model`) — an additive network whose
  second output is each feature's exact contribution to the logit.
* :meth:`CreditRiskPipeline.fit_extras` — Platt calibration on the validation split (on small data: on
  the out-of-fold logits of the cross-fitted fold models, whose average is the model), the features the
  model uses, the scaling and bands, and both baselines (their test metrics go to ``metrics.json``
  under ``baselines``).
* :meth:`CreditRiskPipeline.postprocess` — numpy only: PD, points, band, reasons.
* :meth:`CreditRiskPipeline.report_sections` — model vs baselines, calibration, score distributions,
  bad rate per band, reason codes, monotonic constraints and PSI.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from verticals.pipeline import Pipeline
from verticals.spec import OutputColumn, TrainingConfig

from verticals_finance.scorecard import DEFAULT_BANDS, Scaling, bands_to_json, check_bands

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import polars as pl
    from verticals.spec import Batch, DatasetSpec, Preprocessor, ReportSection

__all__ = ["SMALL_DATA_ROWS", "SMALL_DATA_SMOOTHNESS", "CreditRiskPipeline"]

#: Below this many training + validation rows, early stopping and Platt calibration use 5-fold
#: cross-fitting, run twice over different folds, instead of the validation split, and the model is the
#: average of the ten fold models (``crossfit_final="bag"``, ``crossfit_repeats=2``), each trained with
#: the smoothness penalty below in mini-batches of 64 and early-stopped on its held-out fold's log loss
#: (see verticals.crossfit and docs/finance.md for the measurements).
SMALL_DATA_ROWS = 2000

#: On small data (the model's preprocessor fitted on fewer than ``crossfit_below`` rows) the numeric
#: curves are trained with a smoothness penalty of this strength (:meth:`CreditRiskNet.penalty`); on
#: larger data the model is as before. Chosen on the out-of-fold Brier score (docs/finance.md).
SMALL_DATA_SMOOTHNESS = 3.0


class CreditRiskPipeline(Pipeline):
    """Probability of default with scorecard points, risk band and reason codes per applicant.

    Args:
        name: local pipeline name (default ``credit_risk``).
        dataset: the dataset it trains on (default ``credit_data``).
        description: one line for ``verticals pipelines``.
        scaling: PDO scaling of the points (default 600 points at 19:1, 50 points to double the odds).
        bands: ``(band, upper PD bound)`` pairs, increasing, the last bound 1.0.
        top_reasons: reason codes per applicant at most.
    """

    name = "credit_risk"
    description = "Probability of default with scorecard points, risk band and reason codes"
    dataset = "credit_data"
    model = "credit_pd"
    task = "binary"
    score_column = "pd"
    primary_metric = "auc"
    greater_is_better = True
    output_columns = (
        OutputColumn("pd", "float", "calibrated probability of default"),
        OutputColumn("points", "int", "scorecard points: 600 at good:bad odds 19:1, +50 points per doubling"),
        OutputColumn("band", "string", "risk band of the PD master scale, A (PD < 5%) to F (PD >= 50%)"),
        OutputColumn("reasons", "list[string]", "features that raised the PD most, largest first (at most 4)"),
        OutputColumn("reason_points", "list[float]", "points each reason cost versus the average applicant"),
        OutputColumn("reason_texts", "list[string]", "each reason in words, for adverse-action notices"),
    )
    training = TrainingConfig(epochs=60, batch_size=256, learning_rate=1e-2, weight_decay=1e-4, patience=10,
                              class_weighting=False, seed=42, crossfit_below=SMALL_DATA_ROWS, crossfit_folds=5,
                              crossfit_final="bag", crossfit_repeats=2, crossfit_stop_on="loss",
                              crossfit_batch_size=64)

    def __init__(self, name: str | None = None, dataset: str | None = None, *, description: str | None = None,
                 scaling: Scaling | None = None, bands: Sequence[tuple[str, float]] | None = None,
                 top_reasons: int = 4, protected: Sequence[str] = (), protected_features: Sequence[str] = (),
                 cutoff: float = 0.2, reason_texts: Mapping[str, Mapping[str, str]] | None = None,
                 units: Mapping[str, str] | None = None, bad_means: str = "") -> None:
        if name is not None:
            self.name = name
        if dataset is not None:
            self.dataset = dataset
        if description is not None:
            self.description = description
        self.scaling = scaling or Scaling()
        self.bands = tuple(bands) if bands is not None else DEFAULT_BANDS
        check_bands(self.bands)
        self.top_reasons = min(4, int(top_reasons))
        self.protected = tuple(protected)
        self.protected_features = tuple(protected_features)
        self.cutoff = float(cutoff)
        self.reason_texts = {k: dict(v) for k, v in (reason_texts or {}).items()}
        self.units = dict(units or {})
        self.bad_means = bad_means

    # -- preprocessing and model -------------------------------------------------------------------
    def preprocessor(self, dataset: DatasetSpec) -> Preprocessor:
        from verticals_finance.preprocessing import CreditPreprocessor

        return CreditPreprocessor(dataset.schema, positive=dataset.target_positive, task="binary")

    #: Smoothness penalty on small data (``None``: none). A class attribute, so a benchmark can vary it.
    small_data_smoothness: float | None = SMALL_DATA_SMOOTHNESS

    def model_options(self, dataset: DatasetSpec, info: Mapping[str, Any]) -> dict[str, Any]:
        """Smoothness on small data: the preprocessor's ``rows`` below ``crossfit_below``; else none."""
        rows, below = int(info.get("rows", 0) or 0), int(self.training.crossfit_below or 0)
        if self.small_data_smoothness and 0 < rows < below:
            return {"smoothness": float(self.small_data_smoothness)}
        return {}

    def shape_summary(self, dataset: DatasetSpec, info: Mapping[str, Any]) -> dict[str, Any]:
        """How the numeric curves were fitted, for the manifest's extras and the report."""
        smoothness = float(self.model_options(dataset, info).get("smoothness", 0.0))
        text = "piecewise linear on training-quantile knots"
        if smoothness > 0:
            text += (f", smoothed while training: a penalty of {smoothness:g} (over the "
                     f"{int(info.get('rows', 0))} rows the model learns from) on every change of slope between "
                     "adjacent segments pulls each curve towards a straight line where the data do not bend it")
        return {"smoothness": smoothness, "text": text}

    # -- after training ------------------------------------------------------------------------------
    def fit_extras(self, context: Any) -> dict[str, Any]:
        """Calibration, feature names and usage, scaling, bands and baselines (see the module docstring)."""
        import numpy as np

        from verticals_finance.baselines import concat_batches, fit_baselines
        from verticals_finance.calibration import apply_platt, fit_platt, match_mean
        from verticals_finance.reasons import reason_text_table, used_features

        info = context.preprocessor.info()
        names = list(info.get("numeric", [])) + list(info.get("categorical", []))
        valid = context.batches["valid"]
        crossfit = getattr(context, "crossfit", None)
        if crossfit is not None:  # small data: calibrate on every pooled row's out-of-fold logit
            calibration = fit_platt(crossfit.outputs["logits"], crossfit.target)
            oof_pd = 1.0 / (1.0 + np.exp(-apply_platt(crossfit.outputs["logits"], calibration)))
            # What to compare model settings on without touching the test split (slightly optimistic:
            # each fold model early-stopped on the rows it predicts here).
            calibration["out_of_fold_brier"] = float(np.mean((oof_pd - np.asarray(crossfit.target, dtype=np.float64)) ** 2))
            repeats = int(getattr(crossfit, "repeats", 1))
            calibration["fitted_on"] = (
                f"out-of-fold logits of {crossfit.rows} rows ({crossfit.folds} folds"
                + (f" × {repeats} runs; a row's logit is the mean of the {repeats} models that never saw it"
                   if repeats > 1 else "")
                + ("; the fold models the final model averages)" if getattr(crossfit, "final", "refit") == "bag"
                   else ")"))
            if "note" not in calibration:
                pooled = np.concatenate([np.asarray(context.outputs[s]["logits"]).reshape(-1) for s in ("train", "valid")])
                calibration = match_mean(calibration, pooled, crossfit.target)
        else:
            calibration = fit_platt(context.outputs["valid"]["logits"], valid.target)
            calibration["fitted_on"] = f"validation split ({len(valid)} rows)"
        train_out = context.outputs["train"]
        contributions = np.asarray(train_out["contributions"], dtype=np.float64)
        reference_logit = float(np.mean(np.asarray(train_out["logits"], dtype=np.float64).reshape(-1)
                                        - contributions.sum(axis=1)))
        pre = context.preprocessor
        protected = [n for n in self.protected if n in names]
        extras: dict[str, Any] = {
            "calibration": calibration,
            "protected_features": protected,
            "reason_texts": reason_text_table(names, info, pre, self.reason_texts, self.units),
            "scaling": self.scaling.to_json(),
            "bands": bands_to_json(self.bands),
            "features": names,
            # A protected attribute opted in as a feature still never becomes a reason.
            "used_features": [n for n in used_features(contributions, names) if n not in protected],
            "medians": [float(m) for m in getattr(pre, "medians", [])],
            "monotonic": {n: int(m) for n, m in zip(info.get("numeric", []), info.get("monotonic", []), strict=False)
                          if int(m) != 0},
            "reference_logit": reference_logit,
            "top_reasons": self.top_reasons,
            "shape": self.shape_summary(context.dataset, info),
        }
        seed = int(getattr(getattr(context, "splits", None), "seed", None) or self.training.seed)
        batches = dict(context.batches)
        if crossfit is not None:  # the baselines learn from the same pooled rows as the final model
            batches["train"] = concat_batches(batches["train"], batches["valid"])
            batches["valid"] = concat_batches(batches["valid"], batches["valid"], rows=0)
        baselines = fit_baselines(batches, context.preprocessor.state(),
                                  list(info.get("cardinalities", [])), seed=seed)
        test = context.batches["test"]
        extras["baseline_metrics"] = {
            name: {k: float(v) for k, v in self.metrics(test.target, scores["test"]).items()}
            for name, scores in baselines.scores.items() if "test" in scores and test.target is not None}
        extras["baseline_seconds"] = {k: round(v, 3) for k, v in baselines.seconds.items()}
        # For report_sections, called next on the same context: the baselines' predictions.
        context.finance_baselines = baselines
        return extras

    # -- scoring -------------------------------------------------------------------------------------
    def postprocess(self, outputs: Mapping[str, np.ndarray], batch: Batch,
                    extras: Mapping[str, Any]) -> pl.DataFrame:
        """PD (Platt-calibrated), points, band and reason codes; numpy and polars only."""
        import numpy as np
        import polars as pl

        from verticals_finance.calibration import apply_platt
        from verticals_finance.reasons import reason_codes
        from verticals_finance.scorecard import assign_bands, bands_from_json

        logits = np.asarray(outputs["logits"], dtype=np.float64).reshape(-1)
        calibration = extras.get("calibration")
        z = apply_platt(logits, calibration)
        pd = np.exp(-np.logaddexp(0.0, -z))
        scaling = Scaling.from_json(extras.get("scaling")) if extras.get("scaling") else self.scaling
        bands = bands_from_json(extras.get("bands")) if extras.get("bands") else self.bands
        points = np.rint(scaling.points_from_log_odds(z)).astype(np.int64)
        band = assign_bands(pd, bands)
        names = extras.get("features")
        contributions = outputs.get("contributions")
        if names and contributions is not None:
            slope = float((calibration or {}).get("a", 1.0))
            lost = np.asarray(contributions, dtype=np.float64) * (slope * scaling.factor)
            reasons, reason_points, texts = reason_codes(
                lost, names, used=extras.get("used_features"), top=int(extras.get("top_reasons", self.top_reasons)),
                texts=extras.get("reason_texts"), inputs=batch.inputs, medians=extras.get("medians"))
        else:  # during training (no extras yet): reasons are not needed to pick the best epoch
            reasons = pl.Series("reasons", [[]] * len(logits), dtype=pl.List(pl.String))
            reason_points = pl.Series("reason_points", [[]] * len(logits), dtype=pl.List(pl.Float64))
            texts = pl.Series("reason_texts", [[]] * len(logits), dtype=pl.List(pl.String))
        return pl.DataFrame([
            pl.Series("pd", pd, dtype=pl.Float64),
            pl.Series("points", points, dtype=pl.Int64),
            pl.Series("band", band.tolist(), dtype=pl.String),
            reasons.alias("reasons"),
            reason_points.alias("reason_points"),
            texts.alias("reason_texts"),
        ])

    # -- reporting -----------------------------------------------------------------------------------
    def report_sections(self, context: Any) -> list[ReportSection]:
        from verticals_finance.report import credit_sections

        return credit_sections(self, context)
