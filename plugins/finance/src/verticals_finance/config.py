"""A user's own credit data (CSV or Parquet) described by a small TOML or JSON file.

A config file names the data file, the id column, the target and its positive (default) label, the
numeric and categorical features and, optionally, monotonic directions, validation rules per
feature, the split and the scorecard scaling. From it come a :class:`DatasetSpec`
(:func:`dataset_from_config`) and a :class:`~verticals_finance.pipeline.CreditRiskPipeline` over it
(:func:`pipeline_from_config`), both registered as ``finance.<name>``. The format is documented in
``docs/finance.md``; ``plugins/finance/examples/example_loans.toml`` is a complete example.

How a config reaches the registry (checked in this order; a broken file is a warning, never an
error that takes the other pipelines down):

1. ``VERTICALS_FINANCE_CONFIG``: one or more config paths separated by ``os.pathsep`` (``:``).
2. Configs remembered with ``verticals finance register-config FILE``: their absolute paths are kept
   in ``<verticals home>/finance/configs.json`` (the file itself is read at every start, so edits
   take effect without registering again).
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from verticals.errors import NotFoundError, UserError
from verticals.names import NAME_MAX, name_problem
from verticals.spec import Column, DatasetSpec, Schema, SplitSpec

__all__ = [
    "CONFIG_ENV",
    "CreditConfig",
    "config_paths",
    "dataset_from_config",
    "forget_config",
    "load_config",
    "pipeline_from_config",
    "register_config",
    "registered_configs",
]

CONFIG_ENV = "VERTICALS_FINANCE_CONFIG"
RESERVED = {"credit_risk", "credit_data", "islr_default", "lending_club", "credit_risk_islr",
            "credit_risk_lending_club"}
_TOP_KEYS = {"name", "description", "data", "id", "target", "features", "monotonic", "rules", "split",
             "scorecard"}
_RULE_KEYS = {"min", "max", "on_missing", "on_out_of_range", "on_unknown", "categories", "required",
              "description"}
_CHOICES = {"on_missing": ("impute", "flag", "reject"), "on_out_of_range": ("reject", "clip", "flag"),
            "on_unknown": ("unknown", "flag", "reject")}


class ConfigError(UserError):
    """A credit config file is unreadable or describes an impossible dataset."""


@dataclass
class CreditConfig:
    """A parsed, checked config file (see the module docstring and ``docs/finance.md``)."""

    path: Path
    name: str
    data: Path | None
    ids: list[str]
    target: str
    positive: str
    negative: list[str]
    numeric: list[str]
    categorical: list[str]
    monotonic: dict[str, int] = field(default_factory=dict)
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)
    split: SplitSpec = field(default_factory=SplitSpec)
    scorecard: dict[str, Any] = field(default_factory=dict)
    description: str = ""


def _fail(path: Path, message: str, hint: str) -> ConfigError:
    return ConfigError(f"credit config {path}: {message}", hint=hint)


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise NotFoundError(f"credit config {path} does not exist",
                            hint="pass the path of a .toml or .json file (see docs/finance.md)")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import tomllib

            data = tomllib.loads(text)
    except ValueError as exc:  # tomllib.TOMLDecodeError and json.JSONDecodeError are ValueErrors
        raise _fail(path, f"cannot be parsed: {exc}", "fix the syntax (TOML, or JSON for .json files)") from None
    if not isinstance(data, dict):
        raise _fail(path, "is not a table of keys", "see plugins/finance/examples/example_loans.toml")
    return data


def _names(path: Path, value: Any, key: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise _fail(path, f"'{key}' must be a column name or a list of names, got {value!r}",
                f'write e.g. {key} = ["a", "b"]')


def _label(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def load_config(path: str | Path) -> CreditConfig:
    """Read and check a config file.

    Raises:
        NotFoundError: the file does not exist.
        ConfigError: a syntax error, a missing or unknown key, a column used twice, a bad rule.
    """
    path = Path(path).expanduser().absolute()
    raw = _read(path)
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise _fail(path, f"unknown key(s) {', '.join(unknown)}", f"use only {', '.join(sorted(_TOP_KEYS))}")
    name = raw.get("name")
    problem = name_problem(name)
    if problem:
        raise _fail(path, f"'name' must be lowercase letters, digits and underscores, got {name!r:.80} "
                    f"(it {problem})", f'write e.g. name = "my_loans" (at most {NAME_MAX} characters)')
    if name in RESERVED:
        raise _fail(path, f"name '{name}' is taken by a built-in finance dataset or pipeline",
                    "choose another name")
    data = raw.get("data")
    data_path = None
    if data is not None:
        if not isinstance(data, str):
            raise _fail(path, "'data' must be a file path", 'write e.g. data = "loans.csv"')
        data_path = Path(data).expanduser()
        if not data_path.is_absolute():
            data_path = (path.parent / data_path).absolute()
    ids = _names(path, raw.get("id"), "id")
    if not ids:
        raise _fail(path, "no 'id' column", 'name the column that identifies an application: id = "loan_id"')
    target = raw.get("target")
    if not isinstance(target, dict) or not isinstance(target.get("column"), str) or "positive" not in target:
        raise _fail(path, "'target' needs a column and its positive (default) label",
                    '[target]\ncolumn = "defaulted"\npositive = "yes"\nnegative = "no"')
    positive = _label(target["positive"])
    negative_raw = target.get("negative")
    if negative_raw is None:
        raise _fail(path, "'target.negative' is missing: the label(s) of repaid loans",
                    'add negative = "no" (labels other than positive and negative are rejected)')
    negative = [_label(v) for v in (negative_raw if isinstance(negative_raw, list) else [negative_raw])]
    if positive in negative or not negative:
        raise _fail(path, f"target labels overlap or are empty: positive {positive!r}, negative {negative}",
                    "give different positive and negative labels")
    extra = sorted(set(target) - {"column", "positive", "negative"})
    if extra:
        raise _fail(path, f"unknown key(s) {', '.join(extra)} in [target]", "use column, positive and negative")
    features = raw.get("features") or {}
    if not isinstance(features, dict):
        raise _fail(path, "'features' must be a table with numeric and categorical lists",
                    '[features]\nnumeric = ["income"]\ncategorical = ["home"]')
    extra = sorted(set(features) - {"numeric", "categorical"})
    if extra:
        raise _fail(path, f"unknown key(s) {', '.join(extra)} in [features]", "use numeric and categorical")
    numeric = _names(path, features.get("numeric"), "features.numeric")
    categorical = _names(path, features.get("categorical"), "features.categorical")
    if not numeric and not categorical:
        raise _fail(path, "no features", "list them under [features] numeric = [...] and categorical = [...]")
    columns = [*ids, target["column"], *numeric, *categorical]
    dupes = sorted({c for c in columns if columns.count(c) > 1})
    if dupes:
        raise _fail(path, f"column(s) {', '.join(dupes)} listed more than once", "list each column once")
    monotonic_raw = raw.get("monotonic") or {}
    monotonic: dict[str, int] = {}
    for feature, direction in monotonic_raw.items():
        if feature not in numeric:
            raise _fail(path, f"monotonic feature '{feature}' is not a numeric feature",
                        f"constrain only numeric features ({', '.join(numeric) or 'none'})")
        if direction not in (-1, 0, 1) or isinstance(direction, bool):
            raise _fail(path, f"monotonic direction of '{feature}' must be 1, -1 or 0, got {direction!r}",
                        "1: higher values never lower the PD; -1: never raise it")
        monotonic[feature] = int(direction)
    rules: dict[str, dict[str, Any]] = {}
    for feature, rule in (raw.get("rules") or {}).items():
        if feature not in numeric + categorical:
            raise _fail(path, f"rules for '{feature}', which is not a feature", "write rules only for features")
        if not isinstance(rule, dict) or set(rule) - _RULE_KEYS:
            bad = sorted(set(rule) - _RULE_KEYS) if isinstance(rule, dict) else rule
            raise _fail(path, f"rules.{feature} has unknown key(s) {bad}", f"use {', '.join(sorted(_RULE_KEYS))}")
        for key, choices in _CHOICES.items():
            if key in rule and rule[key] not in choices:
                raise _fail(path, f"rules.{feature}.{key} = {rule[key]!r}", f"use one of {', '.join(choices)}")
        rules[feature] = dict(rule)
    split_raw = raw.get("split") or {}
    try:
        split = SplitSpec(strategy=split_raw.get("strategy", "stratified"),
                          test_fraction=float(split_raw.get("test_fraction", 0.2)),
                          valid_fraction=float(split_raw.get("valid_fraction", 0.1)))
    except (TypeError, ValueError) as exc:
        raise _fail(path, f"bad [split]: {exc}", "use test_fraction = 0.2, valid_fraction = 0.1") from None
    if not (0 < split.test_fraction < 1 and 0 < split.valid_fraction < 1
            and split.test_fraction + split.valid_fraction < 1):
        raise _fail(path, "split fractions must be in (0, 1) and sum to less than 1",
                    "use test_fraction = 0.2, valid_fraction = 0.1")
    scorecard = raw.get("scorecard") or {}
    if not isinstance(scorecard, dict):
        raise _fail(path, "'scorecard' must be a table", "[scorecard]\nbase_points = 600\nbase_odds = 19\npdo = 50")
    return CreditConfig(path=path, name=name, data=data_path, ids=ids, target=target["column"],
                        positive=positive, negative=negative, numeric=numeric, categorical=categorical,
                        monotonic=monotonic, rules=rules, split=split, scorecard=dict(scorecard),
                        description=str(raw.get("description", "")))


def _schema(config: CreditConfig) -> Schema:
    cols = [Column(name, "string", "id") for name in config.ids]
    cols.append(Column(config.target, "category", "target", categories=(*config.negative, config.positive),
                       description=f"'{config.positive}' is the default event"))
    for name in config.numeric:
        rule = {"on_missing": "flag", **config.rules.get(name, {})}
        if "min" in rule or "max" in rule:
            rule.setdefault("on_out_of_range", "reject")
        cols.append(Column(name, "float", monotonic=config.monotonic.get(name, 0), **rule))  # type: ignore[arg-type]
    for name in config.categorical:
        rule = {"on_missing": "flag", "on_unknown": "flag", **config.rules.get(name, {})}
        if rule.get("categories") is not None:
            rule["categories"] = tuple(_label(v) for v in rule["categories"])
        cols.append(Column(name, "category", **rule))  # type: ignore[arg-type]
    try:
        return Schema(tuple(cols))
    except TypeError as exc:  # pragma: no cover - keys are checked above
        raise _fail(config.path, f"bad rule: {exc}", "see docs/finance.md") from None


def _loader(config: CreditConfig) -> Any:
    def load() -> Any:
        import polars as pl

        if config.data is None:
            raise NotFoundError(f"credit config {config.path} names no data file",
                                hint="add data = \"FILE\" to it, or pass --data FILE to verticals train")
        if not config.data.is_file():
            raise NotFoundError(f"data file {config.data} (from credit config {config.path}) does not exist",
                                hint="fix 'data' in the config; relative paths are relative to the config file")
        suffix = config.data.name.lower()
        if suffix.endswith((".parquet", ".pq")):
            return pl.scan_parquet(config.data)
        if suffix.endswith((".csv", ".tsv", ".csv.gz")):
            # Text columns, as the engine reads --data files: validation casts them and rejects
            # unreadable values row by row with reasons.
            return pl.read_csv(config.data, infer_schema=False, separator="\t" if suffix.endswith(".tsv") else ",")
        raise UserError(f"data file {config.data}: unknown type", hint="use a .csv, .tsv or .parquet file")

    load.__name__ = f"load_{config.name}"
    return load


def _dataset(config: CreditConfig) -> DatasetSpec:
    return DatasetSpec(
        name=config.name, loader=_loader(config), schema=_schema(config), split=config.split,
        target_positive=config.positive,
        description=config.description or f"user data described by {config.path.name}",
        source=f"{config.data or '(no data file)'} described by {config.path}", license="the user's own data")


def dataset_from_config(path: str | Path) -> DatasetSpec:
    """The :class:`DatasetSpec` a config file describes (named ``name`` from the file)."""
    return _dataset(load_config(path))


def pipeline_from_config(path: str | Path | CreditConfig) -> Any:
    """A :class:`CreditRiskPipeline` named like the config, over its dataset, with its scorecard."""
    from verticals_finance.pipeline import CreditRiskPipeline
    from verticals_finance.scorecard import Scaling

    config = path if isinstance(path, CreditConfig) else load_config(path)
    card = config.scorecard
    scaling = Scaling(float(card.get("base_points", 600)), float(card.get("base_odds", 19)),
                      float(card.get("pdo", 50)))
    bands = [(str(b), float(p)) for b, p in card["bands"]] if card.get("bands") else None
    try:
        return CreditRiskPipeline(config.name, config.name, scaling=scaling, bands=bands,
                                  description=config.description or f"credit risk on {config.name}")
    except ValueError as exc:
        raise _fail(config.path, f"bad [scorecard]: {exc}", "see docs/finance.md") from None


# -- which configs are registered --------------------------------------------------------------------------
def _store_file() -> Path:
    from verticals.store import home

    return home() / "finance" / "configs.json"


def registered_configs() -> list[Path]:
    """Config paths remembered by :func:`register_config`."""
    store = _store_file()
    if not store.is_file():
        return []
    try:
        return [Path(p) for p in json.loads(store.read_text(encoding="utf-8"))]
    except (ValueError, TypeError):
        warnings.warn(f"verticals-finance: {store} is not a JSON list of paths; ignoring it", stacklevel=2)
        return []


def _write_registered(paths: list[Path]) -> None:
    store = _store_file()
    store.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".configs-", suffix=".json.tmp", dir=store.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump([str(p) for p in paths], fh, indent=2)
    os.replace(tmp, store)


def config_paths() -> list[Path]:
    """Every config to register: ``$VERTICALS_FINANCE_CONFIG`` first, then the remembered ones."""
    env = [Path(p).expanduser().absolute() for p in os.environ.get(CONFIG_ENV, "").split(os.pathsep) if p.strip()]
    seen: list[Path] = []
    for p in env + registered_configs():
        if p not in seen:
            seen.append(p)
    return seen


def register_config(path: str | Path) -> CreditConfig:
    """Check a config and remember its path, so ``finance.<name>`` is registered in every later run.

    Raises:
        ConfigError: the config is invalid, or another remembered config has the same name.
    """
    config = load_config(path)
    if config.data is not None and not config.data.is_file():
        raise _fail(config.path, f"data file {config.data} does not exist",
                    "fix 'data' (relative paths are relative to the config file)")
    kept = []
    for other in registered_configs():
        if other == config.path:
            continue
        try:
            other_name = load_config(other).name
        except (UserError, OSError):
            other_name = None  # a broken remembered config does not block registering a good one
        if other_name == config.name:
            raise _fail(config.path, f"name '{config.name}' is already registered by {other}",
                        f"rename it, or run `verticals finance unregister-config {config.name}` first")
        kept.append(other)
    _write_registered([*kept, config.path])
    return config


def forget_config(name_or_path: str) -> Path | None:
    """Forget a remembered config by its name or path; the path forgotten, or None."""
    target = Path(name_or_path).expanduser().absolute()
    kept, gone = [], None
    for other in registered_configs():
        match = other == target
        if not match:
            try:
                match = load_config(other).name == name_or_path
            except (UserError, OSError):
                match = False
        if match and gone is None:
            gone = other
        else:
            kept.append(other)
    if gone is not None:
        _write_registered(kept)
    return gone


def configured() -> list[CreditConfig]:
    """The valid configs of :func:`config_paths`; each broken one is a warning naming file and fix."""
    found: list[CreditConfig] = []
    names: dict[str, Path] = {}
    for path in config_paths():
        try:
            config = load_config(path)
        except (UserError, OSError) as exc:
            warnings.warn(f"verticals-finance: skipping credit config: {exc}", stacklevel=2)
            continue
        if config.name in names:
            warnings.warn(f"verticals-finance: credit config {path} uses name '{config.name}' like "
                          f"{names[config.name]}; skipping it", stacklevel=2)
            continue
        names[config.name] = path
        found.append(config)
    return found


def config_dataset(config: CreditConfig) -> DatasetSpec:
    """The dataset of an already-parsed config."""
    return _dataset(config)


def describe(config: CreditConfig) -> Mapping[str, Any]:
    """A summary for ``verticals finance register-config``: what the config turns into."""
    schema = _schema(config)
    return {
        "name": config.name, "pipeline": f"finance.{config.name}", "dataset": f"finance.{config.name}",
        "data": str(config.data) if config.data else None,
        "target": f"{config.target} (default = {config.positive!r}; other labels: {config.negative})",
        "columns": [{"name": c.name, "role": c.role, "dtype": c.dtype, "monotonic": c.monotonic,
                     "min": c.min, "max": c.max, "on_missing": c.on_missing,
                     "on_out_of_range": c.on_out_of_range, "on_unknown": c.on_unknown}
                    for c in schema],
    }
