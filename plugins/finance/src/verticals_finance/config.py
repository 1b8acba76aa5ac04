"""A lender's own credit data through the core's own-data mechanism: the ``finance.credit`` template.

The core (:mod:`verticals.owndata`, ``docs/own-data.md``) reads the config, checks it against the
data file, stores it and registers ``finance.<name>``; this module adds what is particular to credit:

* ``[monotonic]``: per numeric feature, 1 (a higher value never lowers the PD) or -1;
* ``[scorecard]``: base points, base odds, points to double the odds (PDO), risk bands;
* ``[fair_lending]``: protected attributes (``protected = ["sex", "marital"]``), excluded from the
  model's features and never a reason code; ``use_as_features`` opts some back in as features (the
  report says so); ``cutoff`` is the PD below which an applicant is approved in the fair-lending table;
* ``[reasons]``: ``top`` (at most 4), and ``texts`` per feature and direction (``high``/``low``/
  ``missing`` for numeric features, a category value or ``any`` for categorical ones);
* ``[report]``: ``bad`` (what the event means, in words) and ``units`` per feature (axis labels).

The format is documented in ``docs/own-data.md`` (core keys) and ``docs/finance.md`` (these sections);
``plugins/finance/examples/example_loans.toml`` is a complete example.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from verticals.owndata import DataTemplate, OwnDataConfig
from verticals.owndata import load_config as _core_load
from verticals.spec import Column, DatasetSpec

__all__ = [
    "CONFIG_ENV",
    "MIN_BAD",
    "MIN_ROWS",
    "TEMPLATE",
    "credit_template",
    "dataset_from_config",
    "load_config",
    "pipeline_from_config",
]

#: Credit configs listed here (``:``-separated) are registered without storing them (kept from the
#: plugin's first config mechanism; the core's ``VERTICALS_DATA_CONFIG`` does the same for any template).
CONFIG_ENV = "VERTICALS_FINANCE_CONFIG"
TEMPLATE = "finance.credit"
#: The smallest file the credit template trains on, and the fewest defaults (bad outcomes) in it: below
#: these a validation split holds a handful of defaults and every figure of the report is noise.
MIN_ROWS = 200
MIN_BAD = 30
EXAMPLE = "plugins/finance/examples/example_loans.toml"
_SECTIONS = {
    "monotonic": "numeric feature = 1 (higher never lowers the PD) or -1",
    "scorecard": "base_points, base_odds, pdo, bands = [[\"A\", 0.05], ...]",
    "fair_lending": "protected = [...], use_as_features = [...], cutoff = 0.2",
    "reasons": "top = 4; [reasons.texts.<feature>] high/low/missing or <category>/any = \"text\"",
    "report": "bad = \"what the event means\"; [report.units] feature = \"unit\"",
}
_DIRECTIONS = ("high", "low", "missing")


def _parse(config: OwnDataConfig) -> dict[str, Any]:
    raw = config.raw
    numeric, features = config.numeric, config.features
    monotonic: dict[str, int] = {}
    for feature, direction in (raw.get("monotonic") or {}).items():
        if feature not in numeric:
            raise config.fail(f"monotonic feature '{feature}' is not a numeric feature",
                              f"constrain only numeric features ({', '.join(numeric) or 'none'})")
        if direction not in (-1, 0, 1) or isinstance(direction, bool):
            raise config.fail(f"monotonic direction of '{feature}' must be 1, -1 or 0, got {direction!r}",
                              "1: higher values never lower the PD; -1: never raise it")
        monotonic[feature] = int(direction)
    card = raw.get("scorecard") or {}
    if not isinstance(card, dict) or set(card) - {"base_points", "base_odds", "pdo", "bands"}:
        raise config.fail(f"[scorecard] accepts base_points, base_odds, pdo and bands, got {card!r}",
                          "[scorecard]\nbase_points = 600\nbase_odds = 19\npdo = 50")
    fair = raw.get("fair_lending") or {}
    if not isinstance(fair, dict) or set(fair) - {"protected", "use_as_features", "cutoff"}:
        raise config.fail(f"[fair_lending] accepts protected, use_as_features and cutoff, got {fair!r}",
                          '[fair_lending]\nprotected = ["sex", "marital"]')
    protected = fair.get("protected", [])
    opted = fair.get("use_as_features", [])
    for key, value in (("protected", protected), ("use_as_features", opted)):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise config.fail(f"fair_lending.{key} must be a list of column names, got {value!r}",
                              f'write e.g. {key} = ["marital"]')
    for name in opted:
        if name not in protected:
            raise config.fail(f"fair_lending.use_as_features names '{name}', which is not a protected attribute",
                              "list only protected attributes there (the others are features already)")
        if name not in features:
            raise config.fail(f"fair_lending.use_as_features names '{name}', which is not under [features]",
                              f"add '{name}' to features.numeric or features.categorical, or drop the opt-in")
    for name in protected:
        if name in (config.target, *config.ids):
            raise config.fail(f"fair_lending.protected names '{name}', the {'target' if name == config.target else 'id'}",
                              "list attributes such as sex, age, marital status, race or national origin")
        if monotonic.get(name):
            raise config.fail(f"protected attribute '{name}' is also declared monotonic",
                              f"remove '{name}' from [monotonic]: a protected attribute must not be given a "
                              "direction of risk")
        config.references.setdefault(name, "fair_lending.protected")
    cutoff = fair.get("cutoff", 0.2)
    if isinstance(cutoff, bool) or not isinstance(cutoff, int | float) or not 0 < cutoff < 1:
        raise config.fail(f"fair_lending.cutoff = {cutoff!r}", "use the PD below which applicants are approved, "
                          "e.g. cutoff = 0.2")
    reasons = raw.get("reasons") or {}
    if not isinstance(reasons, dict) or set(reasons) - {"top", "texts"}:
        raise config.fail(f"[reasons] accepts top and texts, got {reasons!r}", "[reasons]\ntop = 4")
    top = reasons.get("top", 4)
    if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= 4:
        raise config.fail(f"reasons.top = {top!r}", "use 1 to 4 (adverse-action notices give at most 4)")
    texts: dict[str, dict[str, str]] = {}
    for feature, table in (reasons.get("texts") or {}).items():
        if feature not in features:
            raise config.fail(f"reasons.texts names '{feature}', which is not a feature", "write texts for features")
        if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
            raise config.fail(f"reasons.texts.{feature} must map a direction or category to a text",
                              f'[reasons.texts.{feature}]\nhigh = "..."\nlow = "..."')
        if feature in numeric and set(table) - set(_DIRECTIONS):
            raise config.fail(f"reasons.texts.{feature} has key(s) {sorted(set(table) - set(_DIRECTIONS))}",
                              "a numeric feature's texts are high, low and missing")
        texts[feature] = {str(k): v for k, v in table.items()}
    report = raw.get("report") or {}
    if not isinstance(report, dict) or set(report) - {"bad", "units"} or not isinstance(report.get("units", {}), dict):
        raise config.fail(f"[report] accepts bad and units, got {report!r}",
                          '[report]\nbad = "90+ days past due within 12 months"\n[report.units]\nincome = "EUR"')
    return {"monotonic": monotonic, "scorecard": dict(card), "protected": list(protected),
            "use_as_features": list(opted), "cutoff": float(cutoff), "top_reasons": int(top),
            "reason_texts": texts, "bad": str(report.get("bad", "")),
            "units": {str(k): str(v) for k, v in (report.get("units") or {}).items()}}


def _adjust(config: OwnDataConfig, columns: list[Column]) -> list[Column]:
    """Monotonic constraints; protected attributes become ``attribute`` columns unless opted in."""
    options = config.options
    protected, opted = set(options.get("protected", [])), set(options.get("use_as_features", []))
    out, names = [], set()
    for col in columns:
        names.add(col.name)
        if col.role == "feature" and col.name in options.get("monotonic", {}):
            col = replace(col, monotonic=options["monotonic"][col.name])
        if col.name in protected and col.name not in opted:
            col = replace(col, role="attribute", required=False, on_missing="impute", on_unknown="unknown",
                          on_out_of_range="clip" if col.min is not None or col.max is not None else col.on_out_of_range,
                          description="protected attribute: never a model input; used for fair-lending checks")
        out.append(col)
    for name in options.get("protected", []):
        if name not in names:  # declared protected only: carried for the report, never a feature
            out.append(Column(name, "category", "attribute", required=False, on_missing="impute",
                              description="protected attribute: never a model input; used for fair-lending checks"))
    return out


def _pipeline(config: OwnDataConfig, dataset: DatasetSpec) -> Any:
    from verticals_finance.pipeline import CreditRiskPipeline
    from verticals_finance.scorecard import Scaling

    options = config.options
    card = options.get("scorecard", {})
    try:
        scaling = Scaling(float(card.get("base_points", 600)), float(card.get("base_odds", 19)),
                          float(card.get("pdo", 50)))
        bands = [(str(b), float(p)) for b, p in card["bands"]] if card.get("bands") else None
        return CreditRiskPipeline(
            config.name, config.name, scaling=scaling, bands=bands, top_reasons=options.get("top_reasons", 4),
            description=config.description or f"credit risk on {config.name}",
            protected=options.get("protected", []), protected_features=options.get("use_as_features", []),
            cutoff=options.get("cutoff", 0.2), reason_texts=options.get("reason_texts", {}),
            units=options.get("units", {}),
            bad_means=options.get("bad") or f"'{config.target}' = '{config.positive}'")
    except (TypeError, ValueError) as exc:
        raise config.fail(f"bad [scorecard]: {exc}", "see docs/finance.md") from None


def credit_template() -> DataTemplate:
    """The ``finance.credit`` template (registered by the plugin's ``register_data_templates``)."""
    return DataTemplate(
        name="credit", pipeline=_pipeline, parse=_parse, adjust_schema=_adjust, sections=_SECTIONS, task="binary",
        min_rows=MIN_ROWS, min_per_class=MIN_BAD, example=EXAMPLE, env=CONFIG_ENV,
        description="credit risk: calibrated PD, scorecard points, bands, reason codes, fair-lending checks")


def warn_legacy_store() -> None:
    """Configs remembered by the plugin's first mechanism (``<home>/finance/configs.json``) are no longer
    read: say so once per process, with the command that registers each of them again."""
    import json
    import warnings

    from verticals.store import home

    legacy = home() / "finance" / "configs.json"
    if not legacy.is_file():
        return
    try:
        paths = [str(p) for p in json.loads(legacy.read_text(encoding="utf-8"))]
    except (ValueError, TypeError, OSError):
        paths = []
    if paths:
        commands = "; ".join(f"verticals data register {p}" for p in paths)
        warnings.warn(f"verticals-finance: {legacy} lists credit configs registered by an older version, which "
                      f"are no longer read (fix: run {commands}, then delete {legacy})", stacklevel=2)


def _templates() -> Mapping[str, DataTemplate]:
    template = credit_template()
    template.plugin = "finance"
    return {TEMPLATE: template}


def load_config(path: str | Path) -> OwnDataConfig:
    """A credit config read with the ``finance.credit`` template (no registry needed)."""
    return _core_load(path, _templates(), default_template=TEMPLATE)


def dataset_from_config(path: str | Path) -> DatasetSpec:
    """The :class:`DatasetSpec` a credit config describes (named ``name`` from the file)."""
    from verticals.owndata import dataset_of

    templates = _templates()
    return dataset_of(load_config(path), templates[TEMPLATE])


def pipeline_from_config(path: str | Path | OwnDataConfig) -> Any:
    """A :class:`CreditRiskPipeline` named like the config, over its dataset."""
    config = path if isinstance(path, OwnDataConfig) else load_config(path)
    return _pipeline(config, dataset_from_config(config.path))
