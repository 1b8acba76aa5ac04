"""The core's own-data mechanism with a template of a fabricated plugin: configs checked against the data
file at registration, a sha256-verified store, registration as <plugin>.<name>, the ``verticals data``
commands, and row numbers as ids through training and ``verticals score``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl
import pytest
from verticals.errors import NotFoundError, UserError
from verticals.hookspecs import hookimpl
from verticals.owndata import (
    CONFIG_ENV,
    DataTemplate,
    check_data,
    load_config,
    register_config,
    registered,
    remove_config,
)
from verticals.pipeline import Pipeline
from verticals.spec import TrainingConfig
from verticals.testing.reference import ReferencePlugin, make_frame


class OwnPipeline(Pipeline):
    model = "mlp"
    task = "binary"
    training = TrainingConfig(epochs=2, batch_size=256, patience=2)


def _pipeline(config, dataset):
    pipe = OwnPipeline()
    pipe.name, pipe.dataset = config.name, dataset.name
    return pipe


def _parse(config):
    extra = config.raw.get("extra") or {}
    if not isinstance(extra, dict) or set(extra) - {"note"}:
        raise config.fail(f"[extra] accepts note, got {extra!r}", "write [extra] note = \"...\"")
    return {"note": extra.get("note", "")}


class Toy(ReferencePlugin):
    @hookimpl
    def register_data_templates(self, register):
        register(DataTemplate(name="table", pipeline=_pipeline, parse=_parse, sections={"extra": "note = text"},
                              min_rows=100, min_per_class=10, description="any binary table"))


class ToyFixed(ReferencePlugin):
    @hookimpl
    def register_data_templates(self, register):
        register(DataTemplate(name="fixed", pipeline=_pipeline, description="a fixed layout",
                              defaults={"target": {"column": "target", "positive": "1", "negative": "0"},
                                        "features": {"numeric": ["f00", "f01"]}},
                              splits=("random", "group_time")))


CONFIG = """name = "mine"
data = "mine.csv"
[target]
column = "target"
positive = "1"
negative = "0"
[features]
numeric = ["f00", "f01", "f02"]
categorical = ["c0"]
"""


@pytest.fixture
def toy(verticals_plugins, verticals_home):
    return lambda: verticals_plugins({"toy": Toy(rows=400, n_numeric=4, n_categorical=1)})


def _files(tmp_path: Path, text: str = CONFIG, rows: int = 300, frame: pl.DataFrame | None = None) -> Path:
    frame = make_frame(rows, n_numeric=4, n_categorical=1, seed=3).drop("row_id") if frame is None else frame
    frame.write_csv(tmp_path / "mine.csv")
    (tmp_path / "mine.toml").write_text(text)
    return tmp_path / "mine.toml"


def test_registered_config_becomes_dataset_and_pipeline(tmp_path, toy) -> None:
    registry = toy()
    assert "toy.table" in registry.templates
    config, summary = register_config(_files(tmp_path))
    assert summary["rows"] == 300 and set(summary["labels"]) == {"0", "1"}
    assert config.template == "toy.table" and config.ids == []
    registry = toy()
    pipe = registry.pipeline("toy.mine")
    dataset = registry.dataset_of(pipe)
    assert dataset.qualified_name == "toy.mine" and dataset.schema.ids == []
    assert dataset.schema["f00"].range_margin == 0.1 and dataset.schema["c0"].normalize == "casefold"
    assert registry.own_data["toy.mine"].name == "mine"
    assert [e["name"] for e in registered()] == ["mine"]
    assert remove_config("mine")["name"] == "mine" and "toy.mine" not in toy().pipelines


@pytest.mark.parametrize(("change", "message", "fix"), [
    (('numeric = ["f00", "f01", "f02"]', 'numeric = ["f00", "f01", "f2"]'),
     "features.numeric names column 'f2', which data file", "did you mean 'f02'?"),
    (('[target]', 'id = "row_id"\n[target]'), "id names column 'row_id'", "row number (_row) in the output"),
    (('column = "target"', 'column = "Target"'), "target.column names column 'Target'", "did you mean 'target'?"),
])
def test_registration_checks_columns_against_the_file(tmp_path, toy, change, message, fix) -> None:
    toy()
    with pytest.raises(UserError) as err:
        register_config(_files(tmp_path, CONFIG.replace(*change)))
    assert message in str(err.value) and fix in str(err.value)
    assert registered() == []


def test_bad_data_files_are_refused_at_registration(tmp_path, toy) -> None:
    toy()
    frame = make_frame(300, n_numeric=4, n_categorical=1, seed=3).drop("row_id").with_columns(
        pl.col("target").cast(pl.String))
    three = frame.with_columns(pl.when(pl.int_range(pl.len()) < 7).then(pl.lit("2")).otherwise(pl.col("target"))
                               .alias("target"))
    with pytest.raises(UserError, match=r"label\(s\) '2' \(7 rows\) besides the declared positive '1'"):
        register_config(_files(tmp_path, frame=three))
    with pytest.raises(UserError, match=r"has 50 rows; template toy.table needs at least 100"):
        register_config(_files(tmp_path, frame=frame.head(50)))
    one_class = frame.with_columns(pl.lit("0").alias("target"))
    with pytest.raises(UserError, match=r"has 0 '1' and 300 0 rows; .* at least 10 of each"):
        register_config(_files(tmp_path, frame=one_class))
    constant = frame.with_columns(pl.lit("c0_1").alias("c0"))
    with pytest.raises(UserError, match=r"feature 'c0' has the single value 'c0_1' in all 300 rows"):
        register_config(_files(tmp_path, frame=constant))
    path = _files(tmp_path)
    (tmp_path / "mine.csv").unlink()
    with pytest.raises(NotFoundError, match=r"does not exist"):
        register_config(path)


@pytest.mark.parametrize(("text", "message"), [
    (CONFIG + "[extra]\nnote = 1\ncolour = 2\n", "[extra] accepts note"),
    ("templte = 'toy.table'\n" + CONFIG, "'templte' (did you mean 'template'?)"),
    ("template = 'toy.tabel'\n" + CONFIG, "unknown template 'toy.tabel' (fix: did you mean 'toy.table'?)"),
    (CONFIG.replace('negative = "0"\n', ""), "[target] needs 'positive'"),
    (CONFIG + "[values]\nrange_margin = -1\n", "values.range_margin = -1"),
    (CONFIG + "[values]\ncategories = 'upper'\n", "values.categories = 'upper'"),
    (CONFIG + "[rules.f03]\nmin = 0\n", "rules for 'f03', which is not a feature (fix: did you mean 'f02'?)"),
    (CONFIG + "[split]\nstrategy = 'time'\n", "split must be stratified or random"),
])
def test_config_mistakes_name_the_file_and_the_fix(tmp_path, toy, text, message) -> None:
    registry = toy()
    path = _files(tmp_path, text)
    with pytest.raises(UserError) as err:
        load_config(path, registry.templates)
    assert message in str(err.value) and str(path) in str(err.value)


def test_template_defaults_and_split_strategies(tmp_path, verticals_plugins, verticals_home) -> None:
    """A template for a fixed layout fills the keys a config leaves out; it names the split strategies
    it accepts (the first is the default) and group_time reads a gap."""
    registry = verticals_plugins({"toy": ToyFixed(rows=400, n_numeric=4, n_categorical=1)})
    short = 'name = "mine"\ntemplate = "toy.fixed"\ndata = "mine.csv"\n'
    config = load_config(_files(tmp_path, short), registry.templates)
    assert (config.target, config.positive, config.numeric) == ("target", "1", ["f00", "f01"])
    assert config.split.strategy == "random"
    config = load_config(_files(tmp_path, short + '[features]\nnumeric = ["f02"]\n'), registry.templates)
    assert config.numeric == ["f02"]  # a key the config gives replaces the default whole
    gap = load_config(_files(tmp_path, short + '[split]\nstrategy = "group_time"\ngap = 5\n'), registry.templates)
    assert gap.split.strategy == "group_time" and gap.split.gap == 5.0
    for text, message in (('[split]\nstrategy = "stratified"\n', "split must be random or group_time (template toy.fixed)"),
                          ('[split]\ngap = 5\n', "split.gap applies to strategy group_time only"),
                          ('[split]\nshuffle = true\n', "[split] accepts strategy, test_fraction, valid_fraction and gap"),
                          ('[split]\nstrategy = "group_time"\ngap = "2h"\n', "split.gap = '2h' is not a number"),
                          ('[split]\ntest_fraction = "a fifth"\n', "split.test_fraction = 'a fifth' is not a number")):
        with pytest.raises(UserError, match=re.escape(message)) as err:
            load_config(_files(tmp_path, short + text), registry.templates)
        if "gap = '2h'" in message:
            assert "seconds for a column of datetimes" in err.value.hint
    sloppy = load_config(_files(tmp_path, short + '[split]\ntest_fraction = "0.25"\n'), registry.templates)
    assert sloppy.split.test_fraction == 0.25  # a number written as text still reads


def test_template_options_and_values_reach_the_schema(tmp_path, toy) -> None:
    registry = toy()
    text = CONFIG + "[extra]\nnote = 'hello'\n[values]\nrange_margin = false\ncategories = 'exact'\n" \
        "[rules.f00]\nrange_margin = 0.5\n"
    config = load_config(_files(tmp_path, text), registry.templates)
    assert config.options == {"note": "hello"}
    from verticals.owndata import schema_of

    schema = schema_of(config)
    assert schema["f00"].range_margin == 0.5 and schema["f01"].range_margin is None
    assert schema["c0"].normalize == "exact"
    assert check_data(config, registry.templates["toy.table"])["rows"] == 300


def test_env_var_and_broken_configs_warn_without_breaking(tmp_path, toy, monkeypatch) -> None:
    good = _files(tmp_path)
    broken = tmp_path / "broken.toml"
    broken.write_text(CONFIG.replace('name = "mine"', 'name = "Bad Name"'))
    monkeypatch.setenv(CONFIG_ENV, f"{good}:{broken}")
    with pytest.warns(UserWarning, match=r"skipping data config .*broken.toml.*'name' 'Bad Name' is unusable"):
        registry = toy()
    assert "toy.mine" in registry.pipelines and "toy.mlp" in registry.pipelines


def test_a_stored_config_whose_template_is_gone_is_skipped_with_the_fix(tmp_path, toy, verticals_plugins) -> None:
    toy()
    register_config(_files(tmp_path))
    with pytest.warns(UserWarning, match=r"needs template toy.table, which no installed plugin offers.*"
                                         r"verticals data remove mine"):
        registry = verticals_plugins({"other": ReferencePlugin(rows=100)})
    assert "toy.mine" not in registry.pipelines


@pytest.mark.filterwarnings("ignore:verticals. skipping data config 'mine'")
def test_cli_data_commands(tmp_path, toy, capsys) -> None:
    from verticals.cli import main

    toy()
    main(["data", "register", str(_files(tmp_path))])
    out = capsys.readouterr().out
    assert "pipeline toy.mine  template toy.table" in out and "_row (0-based row number" in out
    toy()
    main(["data", "list", "--json"])
    [row] = json.loads(capsys.readouterr().out)
    assert (row["name"], row["status"], row["rows"]) == ("mine", "ok", 300)
    main(["data", "show", "mine", "--json"])
    shown = json.loads(capsys.readouterr().out)
    assert shown["pipeline"] == "toy.mine" and [c["name"] for c in shown["columns"]][:2] == ["target", "f00"]
    main(["data", "templates"])
    assert "toy.table" in capsys.readouterr().out
    main(["data", "remove", "mine"])
    assert "removed mine" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["data", "remove", "mine"])
    assert "no registered data config named or at 'mine'" in capsys.readouterr().err


@pytest.mark.slow
def test_row_numbers_stand_in_for_ids_in_training_and_scoring(tmp_path, toy) -> None:
    """No id column anywhere: training works, and `verticals score` numbers each row of its file."""
    from verticals.engine import train
    from verticals.scoring import score

    toy()
    register_config(_files(tmp_path))
    toy()
    result = train("toy.mine", epochs=2, progress=False, variants=())
    assert result.manifest["input_schema"][0]["name"] == "f00"  # no id column in the model's schema
    new = make_frame(30, n_numeric=4, n_categorical=1, seed=9).drop("row_id", "target").with_columns(
        pl.when(pl.int_range(pl.len()) == 4).then(pl.lit("x")).otherwise(pl.col("f00").cast(pl.String))
        .alias("f00"))
    new.write_csv(tmp_path / "new.csv")
    manifest = score("toy.mine", tmp_path / "new.csv", tmp_path / "out", progress=False, device="cpu")
    assert (manifest["rows_scored"], manifest["rows_rejected"]) == (29, 1)
    scores = pl.read_parquet(tmp_path / "out" / "part-00000.parquet")
    assert scores.columns[:2] == ["_row", "_source"]
    assert scores["_row"].to_list() == [i for i in range(30) if i != 4]
    assert pl.read_parquet(tmp_path / "out" / "_rejects.parquet")["_row"].to_list() == [4]


def test_a_files_template_reads_a_folder_without_features_and_defaults_the_target(tmp_path, verticals_plugins,
                                                                                   verticals_home) -> None:
    """A template with ``read`` (images): ``data`` may be a folder, ``[features]`` and ``[target]`` may be
    left out (the label column is ``label``), the template's reader is what the loader and the checks
    call, and the dataset is of kind ``files``."""
    from verticals.testing.files import files_schema

    calls = []

    def read(config):
        calls.append(config.data)
        files = sorted(p for p in config.data.rglob("*.png"))
        return pl.DataFrame({"path": [str(p) for p in files], "label": [p.parent.name for p in files]})

    class Images(ReferencePlugin):
        @hookimpl
        def register_data_templates(self, register):
            register(DataTemplate(name="images", pipeline=_pipeline, read=read, task="multiclass", min_rows=4,
                                  adjust_schema=lambda config, columns: list(files_schema().columns)))

    folder = tmp_path / "pics"
    for label in ("square", "disc"):
        (folder / label).mkdir(parents=True)
        for i in range(3):
            (folder / label / f"{i}.png").write_bytes(b"")
    (tmp_path / "pics.toml").write_text('name = "pics"\ndata = "pics"\n')
    verticals_plugins({"img": Images(rows=50)})
    from verticals.registry import get_registry

    templates = get_registry().templates
    config = load_config(tmp_path / "pics.toml", templates)
    assert config.target == "label" and config.features == [] and config.data == folder
    summary = check_data(config, templates["img.images"])
    assert summary["rows"] == 6 and summary["labels"] == {"square": 3, "disc": 3}
    assert calls == [folder]
    from verticals.owndata import dataset_of

    dataset = dataset_of(config, templates["img.images"])
    assert dataset.kind == "files" and dataset.loader().height == 6
    (tmp_path / "plain.toml").write_text('name = "plain"\ndata = "pics"\n[target]\ncolumn = "target"\n'
                                         'positive = "1"\nnegative = "0"\n')
    with pytest.raises(UserError, match="no features"):  # a tabular template still needs features
        load_config(tmp_path / "plain.toml", {"t": DataTemplate(name="t", pipeline=_pipeline)})


def test_a_template_check_refuses_a_file_its_options_contradict(tmp_path, verticals_plugins, verticals_home,
                                                                 monkeypatch) -> None:
    """``DataTemplate.check`` sees the parsed options and the file at registration, after the header
    checks; its error reaches the user as is and nothing is stored."""
    seen = []

    def check(config, frame):
        seen.append((config.options["note"], frame.height))
        if frame.get_column("f00").cast(pl.Float64).max() < 0 and config.options["note"] == "positive":
            raise config.fail("extra.note = 'positive', but column 'f00' holds negative values",
                              "write note = \"any\"")

    class Checked(ReferencePlugin):
        @hookimpl
        def register_data_templates(self, register):
            register(DataTemplate(name="table", pipeline=_pipeline, parse=_parse, check=check,
                                  sections={"extra": "note = text"}))

    verticals_plugins({"toy": Checked(rows=400, n_numeric=4, n_categorical=1)})
    with pytest.raises(UserError, match=r"extra\.note = 'positive', but column 'f00' holds negative values") as err:
        register_config(_files(tmp_path, CONFIG + '[extra]\nnote = "positive"\n'))
    assert err.value.hint == 'write note = "any"' and registered() == []
    register_config(_files(tmp_path, CONFIG + '[extra]\nnote = "any"\n'))
    assert seen == [("positive", 300), ("any", 300)] and [e["name"] for e in registered()] == ["mine"]
    # A column the config names but the file lacks is reported by the core before the check runs.
    with pytest.raises(UserError, match="names column 'f9'"):
        register_config(_files(tmp_path, CONFIG.replace('"f02"', '"f9"') + '[extra]\nnote = "any"\n'))
    assert len(seen) == 2
    # A config that reaches training without registration (VERTICALS_DATA_CONFIG) is checked when the
    # loader reads its file.
    remove_config("mine")
    monkeypatch.setenv(CONFIG_ENV, str(_files(tmp_path, CONFIG + '[extra]\nnote = "positive"\n')))
    registry = verticals_plugins({"toy": Checked(rows=400, n_numeric=4, n_categorical=1)})
    loader = registry.dataset_of(registry.pipeline("toy.mine")).loader
    with pytest.raises(UserError, match=r"extra\.note = 'positive'"):
        loader()
    assert seen[-1] == ("positive", 300)
