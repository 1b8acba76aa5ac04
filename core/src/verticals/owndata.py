"""A user's own data, one mechanism for every vertical: a config file turns a CSV/Parquet file into a
registered dataset and pipeline.

A plugin offers **templates** through the ``register_data_templates`` hook: a :class:`DataTemplate`
says which pipeline a config becomes (``pipeline(config, dataset)``), which extra config sections it
accepts and how they are checked (``parse``), how it adjusts the schema (``adjust_schema``) and the
smallest data it will train on. The core owns everything else, identically for every template:

* **the config format** (TOML or JSON; ``docs/own-data.md``): name, template, data file, id column(s)
  (optional: without one, scored rows are identified by ``_row``, their 0-based row number in the
  input file, and ``_source``), target, numeric and categorical features, per-feature rules, split,
  learned value rules (``[values]``);
* **checks at registration** against the data file itself: every column the config names must be in
  the file's header (misspellings get a did-you-mean), the target's labels must be the declared ones,
  the file must have the template's minimum rows and positives, no feature may be constant;
* **the store**: ``verticals data register FILE`` copies the config into
  ``<verticals home>/data/configs/<name>.<ext>`` and records its sha256 (and the data file's absolute
  path) in ``<verticals home>/data/index.json``; at every start the copies are verified against their
  sha256 and registered; a copy changed behind verticals' back is skipped with a warning naming the fix;
* ``VERTICALS_DATA_CONFIG`` (paths separated by ``:``) registers configs for one shell or CI job
  without storing them.

Registered configs become ``<plugin>.<name>`` datasets and pipelines, like the plugin's own.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from verticals.errors import NotFoundError, UserError
from verticals.spec import Column, DatasetSpec, Schema, SplitSpec

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

    from verticals.pipeline import Pipeline

__all__ = [
    "CONFIG_ENV",
    "DataTemplate",
    "OwnDataConfig",
    "OwnDataError",
    "check_data",
    "configured",
    "dataset_of",
    "load_config",
    "read_data",
    "register_config",
    "registered",
    "remove_config",
]

CONFIG_ENV = "VERTICALS_DATA_CONFIG"
_CORE_KEYS = {"name", "template", "description", "data", "id", "target", "features", "rules", "split", "values"}
_RULE_KEYS = {"min", "max", "on_missing", "on_out_of_range", "on_unknown", "categories", "required",
              "description", "range_margin", "normalize"}
_CHOICES = {"on_missing": ("impute", "flag", "reject"), "on_out_of_range": ("reject", "clip", "flag"),
            "on_unknown": ("unknown", "flag", "reject"), "normalize": ("casefold", "trim", "exact")}
_VALUE_KEYS = {"range_margin", "categories"}
CSV_SUFFIXES = (".csv", ".tsv", ".csv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")


class OwnDataError(UserError):
    """A config file is unreadable, describes an impossible dataset, or does not fit its data file."""


@dataclass
class OwnDataConfig:
    """A parsed config (see the module docstring). ``options`` holds what the template's ``parse`` made
    of its own sections; ``raw`` is the whole file as read."""

    path: Path
    name: str
    template: str
    data: Path | None
    ids: list[str]
    target: str
    positive: str
    negative: list[str]
    numeric: list[str]
    categorical: list[str]
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)
    split: SplitSpec = field(default_factory=SplitSpec)
    values: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    raw: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    #: Other columns the template's sections name (column → the key naming it), checked like features.
    references: dict[str, str] = field(default_factory=dict)
    sha256: str = ""
    #: The file's text as read (its sha256 is ``sha256``).
    raw_text: str = field(default="", repr=False)
    #: The folder the config's relative paths are relative to (its own folder, or the registered
    #: original's for a stored copy): templates resolve their own file paths against it.
    base: Path | None = None

    @property
    def features(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def fail(self, message: str, hint: str) -> OwnDataError:
        """An error naming this config file, for templates' ``parse`` to raise."""
        return OwnDataError(f"data config {self.path}: {message}", hint=hint)


@dataclass
class DataTemplate:
    """What a plugin plugs into the own-data mechanism (register it in ``register_data_templates``).

    Attributes:
        name: local name; configs name it qualified (``template = "finance.credit"``).
        pipeline: ``pipeline(config, dataset) -> Pipeline`` named ``config.name`` over ``dataset``.
        description: one line for ``verticals data templates``.
        sections: extra top-level config keys the template accepts, each with one line of help.
        parse: ``parse(config) -> dict`` checks the template's sections (raise ``config.fail(...)``),
            returns the parsed options (stored in ``config.options``) and may add column references to
            ``config.references`` so they are checked against the data file.
        adjust_schema: ``adjust_schema(config, columns) -> columns``: change the core's schema (add
            monotonic constraints, attribute columns, ...).
        task: the pipeline's task; ``binary`` configs need ``target.positive`` and ``target.negative``;
            ``ranking`` configs have no ``[target]`` (the next interaction is what is learned).
        min_rows: the smallest data file (rows) the template trains on; smaller files are refused.
        min_per_class: the fewest rows of each target label it trains on.
        example: path of a complete example config, shown in errors.
        env: an environment variable listing configs of this template (paths separated by ``:``),
            besides the core's ``VERTICALS_DATA_CONFIG``.
        defaults: top-level config keys (``id``, ``target``, ``features``, ``split``, ...) a config may
            leave out, e.g. a fixed public file layout; a key the config gives replaces the default
            whole.
        splits: the ``[split]`` strategies the template accepts; ``group_time`` also reads ``gap`` (in
            the time column's unit). A template's ``parse`` may set ``config.split`` itself.
        read: ``read(config) -> DataFrame``: a *files* template's reader. The config's ``data`` may
            then be a folder as well as a file, ``[features]`` may be left out (the pixels are the
            features), ``[target]`` defaults to the column ``label``, and this function reads the data
            (and checks it, raising ``OwnDataError``) wherever the core would call :func:`read_data`.
        check: ``check(config, frame)``: checks the template's parsed options against the data file
            when the config is registered (after the core's own checks of the header) and again when
            training reads the file (a config from ``VERTICALS_DATA_CONFIG`` is never registered); raise
            ``config.fail(...)`` naming the column, the value and the fix (e.g. a horizon in cycles for
            a time column of datetimes).
    """

    name: str
    pipeline: Callable[[OwnDataConfig, DatasetSpec], Pipeline]
    description: str = ""
    sections: Mapping[str, str] = field(default_factory=dict)
    parse: Callable[[OwnDataConfig], dict[str, Any]] | None = None
    adjust_schema: Callable[[OwnDataConfig, list[Column]], list[Column]] | None = None
    task: str = "binary"
    min_rows: int = 0
    min_per_class: int = 0
    example: str = ""
    env: str = ""
    defaults: Mapping[str, Any] = field(default_factory=dict)
    splits: tuple[str, ...] = ("stratified", "random")
    read: Callable[[OwnDataConfig], pl.DataFrame] | None = None
    check: Callable[[OwnDataConfig, pl.DataFrame], None] | None = None
    plugin: str = ""

    @property
    def qualified_name(self) -> str:
        return f"{self.plugin}.{self.name}" if self.plugin else self.name


# -- parsing ------------------------------------------------------------------------------------------
def _fail(path: Path, message: str, hint: str) -> OwnDataError:
    return OwnDataError(f"data config {path}: {message}", hint=hint)


def _read(path: Path) -> tuple[dict[str, Any], bytes]:
    if not path.is_file():
        raise NotFoundError(f"data config {path} does not exist",
                            hint="pass the path of a .toml or .json file (see docs/own-data.md)")
    blob = path.read_bytes()
    try:
        text = blob.decode("utf-8")
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import tomllib

            data = tomllib.loads(text)
    except ValueError as exc:  # TOMLDecodeError, JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise _fail(path, f"cannot be parsed: {exc}", "fix the syntax (TOML, or JSON for .json files)") from None
    if not isinstance(data, dict):
        raise _fail(path, "is not a table of keys", "see docs/own-data.md for the format")
    return data, blob


def _names(path: Path, value: Any, key: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise _fail(path, f"'{key}' must be a column name or a list of names, got {value!r}",
                f'write e.g. {key} = ["a", "b"]')


def label(value: Any) -> str:
    """A target label or category as it is compared: text (``1`` and ``1.0`` are ``"1"``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _pick_template(path: Path, raw: Mapping[str, Any], templates: Mapping[str, DataTemplate],
                   default: str | None) -> DataTemplate:
    name = raw.get("template", default)
    if name is None:
        if len(templates) == 1:
            return next(iter(templates.values()))
        raise _fail(path, "no 'template'", "name the pipeline template, e.g. template = \"finance.credit\" "
                    f"(installed: {', '.join(sorted(templates)) or 'none'})")
    if not isinstance(name, str):
        raise _fail(path, f"'template' must be a name, got {name!r}", 'write e.g. template = "finance.credit"')
    found = templates.get(name) or next((t for q, t in templates.items() if q.split(".", 1)[-1] == name), None)
    if found is None:
        close = difflib.get_close_matches(name, list(templates), n=1)
        raise _fail(path, f"unknown template '{name}'",
                    f"did you mean '{close[0]}'?" if close else
                    f"use one of: {', '.join(sorted(templates)) or 'none (no plugin offers a template)'}")
    return found


def load_config(path: str | Path, templates: Mapping[str, DataTemplate] | None = None, *,
                default_template: str | None = None, base: Path | None = None) -> OwnDataConfig:
    """Read and check a config file on its own (the data file is checked by :func:`check_data`).

    Args:
        templates: qualified name → template (default: the registry's).
        default_template: the template of a config without a ``template`` key.
        base: folder a relative ``data`` path is relative to (default: the config's folder).

    Raises:
        NotFoundError: the file does not exist.
        OwnDataError: a syntax error, a missing or unknown key, a column used twice, a bad rule, or a
            template section its template refuses.
    """
    path = Path(path).expanduser().absolute()
    if templates is None:
        from verticals.registry import get_registry

        templates = get_registry().templates
    raw, blob = _read(path)
    template = _pick_template(path, raw, templates, default_template)
    raw = {**template.defaults, **raw}
    unknown = sorted(set(raw) - _CORE_KEYS - set(template.sections))
    if unknown:
        allowed = sorted(_CORE_KEYS | set(template.sections))
        close = {k: difflib.get_close_matches(k, allowed, n=1) for k in unknown}
        mean = [f"'{k}' (did you mean '{c[0]}'?)" if c else f"'{k}'" for k, c in close.items()]
        raise _fail(path, f"unknown key(s) {', '.join(mean)}", f"use only {', '.join(allowed)}")
    from verticals.names import NAME_MAX, name_problem

    name = raw.get("name")
    problem = name_problem(name)
    if problem:
        raise _fail(path, f"'name' {name!r:.80} is unusable: it {problem}",
                    f'write e.g. name = "my_loans" (lowercase letters, digits and underscores, at most {NAME_MAX})')
    data = raw.get("data")
    data_path = None
    if data is not None:
        if not isinstance(data, str):
            raise _fail(path, "'data' must be a file path", 'write e.g. data = "loans.csv"')
        data_path = Path(data).expanduser()
        if not data_path.is_absolute():
            data_path = ((base or path.parent) / data_path).absolute()
    ids = _names(path, raw.get("id"), "id")
    target = raw.get("target")
    if template.task == "ranking":  # interactions: what comes next is the target, no column holds it
        if target is not None:
            raise _fail(path, f"[target] does not apply to template {template.qualified_name} (a ranking: the "
                              "next interaction is what is learned)", "remove [target]")
        target = {"column": ""}
    elif template.read is not None and (target is None or (isinstance(target, dict) and "column" not in target)):
        target = {**(target or {}), "column": "label"}  # files templates: the label column is 'label'

    if not isinstance(target, dict) or not isinstance(target.get("column"), str):
        raise _fail(path, "'target' needs a column (and, for a yes/no outcome, its positive label)",
                    '[target]\ncolumn = "defaulted"\npositive = "yes"\nnegative = "no"')
    extra = sorted(set(target) - {"column", "positive", "negative", *(("classes",) if template.read else ())})
    if extra:
        raise _fail(path, f"unknown key(s) {', '.join(extra)} in [target]", "use column, positive and negative")
    positive, negative = "", []
    if template.task == "binary":
        if "positive" not in target or target.get("negative") is None:
            raise _fail(path, "[target] needs 'positive' (the event predicted) and 'negative' (the other label(s))",
                        'add e.g. positive = "bad" and negative = "good"; rows with other labels are refused')
        positive = label(target["positive"])
        raw_neg = target["negative"]
        negative = [label(v) for v in (raw_neg if isinstance(raw_neg, list) else [raw_neg])]
        if positive in negative or not negative:
            raise _fail(path, f"target labels overlap or are empty: positive {positive!r}, negative {negative}",
                        "give different positive and negative labels")
    features = raw.get("features") or {}
    if not isinstance(features, dict):
        raise _fail(path, "'features' must be a table with numeric and categorical lists",
                    '[features]\nnumeric = ["income"]\ncategorical = ["home"]')
    extra = sorted(set(features) - {"numeric", "categorical"})
    if extra:
        raise _fail(path, f"unknown key(s) {', '.join(extra)} in [features]", "use numeric and categorical")
    numeric = _names(path, features.get("numeric"), "features.numeric")
    categorical = _names(path, features.get("categorical"), "features.categorical")
    if not numeric and not categorical and template.read is None and template.task != "ranking":
        raise _fail(path, "no features", "list them under [features] numeric = [...] and categorical = [...]")
    columns = [*ids, *([target["column"]] if target["column"] else []), *numeric, *categorical]
    dupes = sorted({c for c in columns if columns.count(c) > 1})
    if dupes:
        raise _fail(path, f"column(s) {', '.join(dupes)} listed more than once", "list each column once")
    rules: dict[str, dict[str, Any]] = {}
    for feature, rule in (raw.get("rules") or {}).items():
        if feature not in numeric + categorical:
            close = difflib.get_close_matches(feature, numeric + categorical, n=1)
            raise _fail(path, f"rules for '{feature}', which is not a feature",
                        f"did you mean '{close[0]}'?" if close else "write rules only for listed features")
        if not isinstance(rule, dict) or set(rule) - _RULE_KEYS:
            bad = sorted(set(rule) - _RULE_KEYS) if isinstance(rule, dict) else rule
            raise _fail(path, f"rules.{feature} has unknown key(s) {bad}", f"use {', '.join(sorted(_RULE_KEYS))}")
        for key, choices in _CHOICES.items():
            if key in rule and rule[key] not in choices:
                raise _fail(path, f"rules.{feature}.{key} = {rule[key]!r}", f"use one of {', '.join(choices)}")
        rules[feature] = dict(rule)
    values = raw.get("values") or {}
    if not isinstance(values, dict) or set(values) - _VALUE_KEYS:
        raise _fail(path, f"[values] accepts {', '.join(sorted(_VALUE_KEYS))}, got {values!r}",
                    '[values]\nrange_margin = 0.1          # or false\ncategories = "casefold"     # trim | exact')
    margin = values.get("range_margin", 0.1)
    if margin is not False and (isinstance(margin, bool) or not isinstance(margin, int | float) or margin < 0):
        raise _fail(path, f"values.range_margin = {margin!r}", "use a fraction of the training range (0.1), or false")
    if values.get("categories", "casefold") not in _CHOICES["normalize"]:
        raise _fail(path, f"values.categories = {values['categories']!r}", "use casefold, trim or exact")
    split_raw = raw.get("split") or {}
    if not isinstance(split_raw, dict) or set(split_raw) - {"strategy", "test_fraction", "valid_fraction", "gap"}:
        raise _fail(path, f"[split] accepts strategy, test_fraction, valid_fraction and gap, got {split_raw!r}",
                    f'[split]\nstrategy = "{template.splits[0]}"\ntest_fraction = 0.2\nvalid_fraction = 0.1')
    fixes = {"test_fraction": "use a fraction such as test_fraction = 0.2",
             "valid_fraction": "use a fraction such as valid_fraction = 0.1",
             "gap": "a gap is a number in the time column's unit: whole cycles, or seconds for a column of "
                    "datetimes (gap = 7200 for two hours)"}
    numbers = {}
    for key, default in (("test_fraction", 0.2), ("valid_fraction", 0.1), ("gap", 0.0)):
        value = split_raw.get(key, default)
        try:
            if isinstance(value, bool):
                raise ValueError(value)
            numbers[key] = float(value)
        except (TypeError, ValueError):
            raise _fail(path, f"split.{key} = {value!r} is not a number", fixes[key]) from None
    split = SplitSpec(strategy=split_raw.get("strategy", template.splits[0]), **numbers)
    if split.strategy not in template.splits or not (
            0 < split.test_fraction < 1 and 0 < split.valid_fraction < 1
            and split.test_fraction + split.valid_fraction < 1) or split.gap < 0:
        raise _fail(path, f"split must be {' or '.join(template.splits)} (template {template.qualified_name}) with "
                    "fractions in (0, 1) summing to less than 1 and a gap of at least 0",
                    f'use strategy = "{template.splits[0]}", test_fraction = 0.2, valid_fraction = 0.1')
    if split.gap and split.strategy != "group_time":
        raise _fail(path, f"split.gap applies to strategy group_time only, not {split.strategy}",
                    "remove gap, or use strategy = \"group_time\" where the template offers it")
    config = OwnDataConfig(
        path=path, name=name, template=template.qualified_name, data=data_path, ids=ids,
        target=target["column"], positive=positive, negative=negative, numeric=numeric, categorical=categorical,
        rules=rules, split=split, values=dict(values), description=str(raw.get("description", "")), raw=raw,
        sha256=hashlib.sha256(blob).hexdigest(), raw_text=blob.decode("utf-8"), base=base or path.parent)
    if template.parse is not None:
        config.options = dict(template.parse(config) or {})
    return config


# -- the dataset ----------------------------------------------------------------------------------------
def schema_of(config: OwnDataConfig, template: DataTemplate | None = None) -> Schema:
    """The schema a config describes (ids as text, the target closed to its labels, features with rules)."""
    margin = config.values.get("range_margin", 0.1)
    margin = None if margin is False else float(margin)
    normalize = config.values.get("categories", "casefold")
    cols = [Column(name, "string", "id") for name in config.ids]
    labels = (*config.negative, config.positive) if config.positive else None
    if config.target:  # a ranking template has none
        cols.append(Column(config.target, "category", "target", categories=labels,
                           description=f"'{config.positive}' is the event predicted" if config.positive else ""))
    for name in config.numeric:
        rule = {"on_missing": "flag", "range_margin": margin, **config.rules.get(name, {})}
        if "min" in rule or "max" in rule:
            rule.setdefault("on_out_of_range", "reject")
        cols.append(Column(name, "float", **rule))
    for name in config.categorical:
        rule = {"on_missing": "flag", "on_unknown": "flag", "normalize": normalize, **config.rules.get(name, {})}
        if rule.get("categories") is not None:
            rule["categories"] = tuple(label(v) for v in rule["categories"])
        cols.append(Column(name, "category", **rule))
    if template is not None and template.adjust_schema is not None:
        cols = list(template.adjust_schema(config, cols))
    try:
        return Schema(tuple(cols))
    except TypeError as exc:  # pragma: no cover - keys are checked in load_config
        raise config.fail(f"bad rule: {exc}", "see docs/own-data.md") from None


def read_data(path: Path, *, columns: list[str] | None = None) -> pl.DataFrame:
    """A data file as text columns (CSV) or as stored (Parquet), read as ``verticals train --data`` and
    ``verticals score --input`` read it (:mod:`verticals.data.files`): the same one-line errors."""
    from verticals.data.files import read_csv, read_parquet

    name = path.name.lower()
    if name.endswith(PARQUET_SUFFIXES):
        frame = read_parquet(path)
    elif name.endswith(CSV_SUFFIXES):
        frame = read_csv(path)
    else:
        raise OwnDataError(f"data file {path}: unknown type", hint="use a .csv, .tsv or .parquet file")
    return frame.select(columns) if columns is not None else frame


def _loader(config: OwnDataConfig, template: DataTemplate) -> Callable[[], pl.DataFrame]:
    def load() -> pl.DataFrame:
        if config.data is None:
            raise NotFoundError(f"data config {config.path} names no data file",
                                hint="add data = \"FILE\" to it, or pass --data FILE to verticals train")
        if not (config.data.is_file() or (template.read is not None and config.data.is_dir())):
            raise NotFoundError(f"data file {config.data} (from data config {config.path}) does not exist",
                                hint="fix 'data' in the config and register it again")
        frame = template.read(config) if template.read is not None else read_data(config.data)
        if template.check is not None:  # the file may have changed since registration, or never was registered
            template.check(config, frame)
        _check_size(config, template, frame)
        return frame

    load.__name__ = f"load_{config.name}"
    return load


def dataset_of(config: OwnDataConfig, template: DataTemplate) -> DatasetSpec:
    """The :class:`DatasetSpec` of a config (named ``config.name``; the registry qualifies it)."""
    return DatasetSpec(
        name=config.name, loader=_loader(config, template), schema=schema_of(config, template),
        split=config.split, target_positive=config.positive or None,
        kind="files" if template.read is not None and template.task != "ranking" else "tabular",
        description=config.description or f"own data described by {config.path.name}",
        source=f"{config.data or '(no data file)'} described by {config.path}", license="the user's own data")


# -- checks against the data file -----------------------------------------------------------------------
def _check_size(config: OwnDataConfig, template: DataTemplate, frame: pl.DataFrame) -> dict[str, int]:
    """Refuse a file below the template's minimum rows or positives; the label counts."""
    import polars as pl

    where = f"data file {config.data}"
    if frame.height < template.min_rows:
        raise OwnDataError(f"{where} has {frame.height} rows; template {template.qualified_name} needs at least "
                           f"{template.min_rows} to train a model worth reading",
                           hint="collect more rows (a model on fewer would be noise, not a risk estimate)")
    if not config.target or config.target not in frame.columns:
        return {}
    target = frame.get_column(config.target).cast(pl.String).str.strip_chars()
    counts = {label(k) if k is not None else None: n for k, n in target.value_counts().rows()}
    if config.positive:
        declared = [config.positive, *config.negative]
        missing_n = counts.pop(None, 0)
        other = {k: n for k, n in counts.items() if k not in declared}
        if other:
            shown = ", ".join(f"'{k}' ({n} rows)" for k, n in sorted(other.items(), key=lambda kv: -kv[1])[:5])
            raise OwnDataError(
                f"{where}: target '{config.target}' has label(s) {shown} besides the declared positive "
                f"'{config.positive}' and negative {', '.join(repr(n) for n in config.negative)}",
                hint="add them to target.negative (or positive's side by recoding the file), or remove those rows")
        if missing_n:
            counts[None] = missing_n
        n_pos = counts.get(config.positive, 0)
        n_neg = sum(counts.get(n, 0) for n in config.negative)
        if min(n_pos, n_neg) < max(template.min_per_class, 1):
            raise OwnDataError(
                f"{where}: target '{config.target}' has {n_pos} '{config.positive}' and {n_neg} "
                f"{'/'.join(config.negative)} rows; template {template.qualified_name} needs at least "
                f"{max(template.min_per_class, 1)} of each",
                hint="a model needs examples of both outcomes; add rows of the rarer one")
    return {str(k): int(v) for k, v in counts.items()}


def check_data(config: OwnDataConfig, template: DataTemplate) -> dict[str, Any]:
    """Check a config against its data file: header, id, target labels, size, constant features.

    Returns:
        a summary: ``rows``, ``labels`` (count per target label), ``columns`` (the file's header).

    Raises:
        NotFoundError: the config names no data file, or it does not exist.
        OwnDataError: a column the config names is not in the file (with a did-you-mean), the
            template's ``check`` refuses the file, the target has undeclared labels, the file is below
            the template's minimum, or a feature has one value.
    """
    import polars as pl

    if config.data is None:
        raise NotFoundError(f"data config {config.path} names no data file",
                            hint='add data = "FILE" (relative paths are relative to the config file)')
    if not (config.data.is_file() or (template.read is not None and config.data.is_dir())):
        raise NotFoundError(f"data file {config.data} (from data config {config.path}) does not exist",
                            hint="fix 'data' (relative paths are relative to the config file)")
    frame = template.read(config) if template.read is not None else read_data(config.data)
    header = list(frame.columns)
    wanted: dict[str, str] = {**{c: "id" for c in config.ids}, **({config.target: "target.column"} if config.target else {}),
                              **{c: "features.numeric" for c in config.numeric},
                              **{c: "features.categorical" for c in config.categorical}, **config.references}
    for column, key in wanted.items():
        if column in header:
            continue
        close = difflib.get_close_matches(column, header, n=1, cutoff=0.6) or [
            h for h in header if h.strip().casefold() == column.strip().casefold()]
        if key == "id":
            hint = (f"did you mean '{close[0]}'? " if close else "") + \
                "or leave 'id' out: rows are then identified by their row number (_row) in the output"
        else:
            hint = f"did you mean '{close[0]}'?" if close else \
                f"the file's columns are: {', '.join(header[:30])}{' ...' if len(header) > 30 else ''}"
        raise OwnDataError(f"data config {config.path}: {key} names column '{column}', which data file "
                           f"{config.data} does not have", hint=hint)
    if template.check is not None:
        template.check(config, frame)
    labels = _check_size(config, template, frame)
    for name in config.features:
        values = frame.get_column(name)
        if values.dtype == pl.String:
            values = values.str.strip_chars()
        distinct = values.drop_nulls().n_unique()
        if distinct <= 1:
            only = values.drop_nulls().head(1).to_list()
            what = f"the single value {only[0]!r}" if only else "no value at all"
            raise OwnDataError(f"data config {config.path}: feature '{name}' has {what} in all {frame.height} rows "
                               f"of {config.data}", hint=f"remove '{name}' from [features]: it cannot inform a model")
    return {"rows": frame.height, "labels": labels, "columns": header}


# -- the store --------------------------------------------------------------------------------------------
def _root(home: Path | str | None = None) -> Path:
    from verticals.store import home as store_home

    return Path(home) if home is not None else store_home()


def _index_file(home: Path | str | None = None) -> Path:
    return _root(home) / "data" / "index.json"


def registered(home: Path | str | None = None) -> list[dict[str, Any]]:
    """The index entries of registered configs: name, template, file, source, data, sha256, registered_at."""
    index = _index_file(home)
    if not index.is_file():
        return []
    try:
        entries = json.loads(index.read_text(encoding="utf-8"))
        if not isinstance(entries, list) or not all(isinstance(e, dict) and "name" in e for e in entries):
            raise ValueError("not a list of entries")
    except ValueError as exc:
        warnings.warn(f"verticals: {index} is unreadable ({exc}); no registered data config is used "
                      "(fix: remove it and register the configs again)", stacklevel=2)
        return []
    return entries


def register_config(path: str | Path, *, default_template: str | None = None,
                    home: Path | str | None = None) -> tuple[OwnDataConfig, dict[str, Any]]:
    """Check a config (on its own and against its data file) and store it.

    Returns:
        the config and :func:`check_data`'s summary.

    Raises:
        OwnDataError, NotFoundError: see :func:`load_config` and :func:`check_data`; also a name
            another registered config or one of the template plugin's own pipelines already has.
    """
    from verticals.registry import get_registry

    registry = get_registry()
    config = load_config(path, registry.templates, default_template=default_template)
    template = registry.templates[config.template]
    summary = check_data(config, template)
    entries = [e for e in registered(home) if e["name"] != config.name or e.get("source") == str(config.path)]
    taken = [e for e in registered(home) if e["name"] == config.name and e.get("source") != str(config.path)]
    if taken:
        raise config.fail(f"name '{config.name}' is already registered from {taken[0].get('source')}",
                          f"rename it, or run `verticals data remove {config.name}` first")
    qualified = f"{template.plugin}.{config.name}"
    own = {f"{registry.templates[e['template']].plugin}.{e['name']}" for e in registered(home)
           if e.get("template") in registry.templates}
    if (qualified in registry.pipelines or qualified in registry.datasets) and qualified not in own:
        raise config.fail(f"name '{config.name}' is taken: '{qualified}' is one of plugin {template.plugin}'s own",
                          "choose another name")
    from verticals.fsutil import write_json_atomic, write_text_atomic

    folder = _root(home) / "data" / "configs"
    folder.mkdir(parents=True, exist_ok=True)
    stored = folder / f"{config.name}{config.path.suffix.lower() or '.toml'}"
    # The copy is what the sha256 covers: the bytes read and checked above, not a re-read file.
    write_text_atomic(stored, config.raw_text)
    entries = [e for e in entries if e["name"] != config.name]
    entries.append({"name": config.name, "template": config.template, "file": stored.name,
                    "source": str(config.path), "data": str(config.data), "sha256": config.sha256,
                    "rows": summary["rows"],
                    "registered_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")})
    write_json_atomic(_index_file(home), entries)
    return config, summary


def remove_config(name: str, home: Path | str | None = None) -> dict[str, Any] | None:
    """Forget a registered config by name or source path (models trained on it stay); its entry, or None."""
    target = str(Path(name).expanduser().absolute())
    entries = registered(home)
    gone = next((e for e in entries if e["name"] == name or e.get("source") == target), None)
    if gone is None:
        return None
    from verticals.fsutil import write_json_atomic

    write_json_atomic(_index_file(home), [e for e in entries if e is not gone])
    with contextlib.suppress(OSError):
        (_root(home) / "data" / "configs" / gone["file"]).unlink()
    return gone


def _stored(entry: Mapping[str, Any], templates: Mapping[str, DataTemplate], home: Path | str | None
            ) -> OwnDataConfig:
    path = _root(home) / "data" / "configs" / str(entry.get("file", ""))
    if not path.is_file():
        raise OwnDataError(f"registered data config '{entry['name']}' is missing its stored copy {path}",
                           hint=f"register {entry.get('source')} again")
    if entry.get("template") and entry["template"] not in templates:
        raise OwnDataError(f"registered data config '{entry['name']}' needs template {entry['template']}, which no "
                           "installed plugin offers",
                           hint=f"install the plugin that offers it, or run `verticals data remove {entry['name']}`")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != entry.get("sha256"):
        raise OwnDataError(f"registered data config '{entry['name']}' ({path}) was changed after registration "
                           f"(sha256 {digest[:12]}, registered {str(entry.get('sha256'))[:12]})",
                           hint=f"register it again with `verticals data register {entry.get('source')}`")
    config = load_config(path, templates, default_template=entry.get("template"),
                         base=Path(str(entry.get("source", path))).parent)
    if entry.get("data"):
        config.data = Path(entry["data"])
    config.path = Path(str(entry.get("source", path)))
    return config


def configured(templates: Mapping[str, DataTemplate], home: Path | str | None = None,
               extra_paths: list[tuple[Path, str | None]] = ()) -> list[OwnDataConfig]:
    """Every config to register: ``$VERTICALS_DATA_CONFIG``, ``extra_paths`` (path, default template),
    then the stored ones. Each broken one is a warning naming it and the fix, never an error."""
    found: list[OwnDataConfig] = []
    names: dict[str, str] = {}

    def keep(load: Callable[[], OwnDataConfig], what: str) -> None:
        try:
            config = load()
        except (UserError, OSError) as exc:
            warnings.warn(f"verticals: skipping data config {what}: {exc}", stacklevel=3)
            return
        if config.name in names:
            warnings.warn(f"verticals: data config {what} uses name '{config.name}' like {names[config.name]}; "
                          "skipping it (fix: rename one of them)", stacklevel=3)
            return
        names[config.name] = what
        found.append(config)

    env = [Path(p).expanduser().absolute() for p in os.environ.get(CONFIG_ENV, "").split(os.pathsep) if p.strip()]
    for p in env:
        keep(lambda p=p: load_config(p, templates), str(p))
    for p, default in extra_paths:
        keep(lambda p=p, d=default: load_config(p, templates, default_template=d), str(p))
    for entry in registered(home):
        keep(lambda e=entry: _stored(e, templates, home), f"'{entry.get('name')}'")
    return found
