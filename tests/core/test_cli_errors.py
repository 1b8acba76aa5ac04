"""Every failure a user can cause, driven through the CLI: one line naming what, where and the fix, the
documented exit code, no Python class name; the same errors as JSON under ``--json``. And what
``verticals score`` prints on the console: one summary, each warning once, resumed runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
import pytest
from scoring_support import (
    PIPELINE,
    ScoringTestPlugin,
    cached_model,
    make_rows,
    register_model,
    write_parquet,
)
from verticals.cli import main
from verticals.cli.output import EXIT_CODES
from verticals.scoring import output as scoring_output
from verticals.scoring.runtime import cuda_device_count
from verticals.testing import use_plugins


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    return cached_model(tmp_path_factory)


@pytest.fixture(autouse=True)
def plugin(monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    with use_plugins({"scoretest": ScoringTestPlugin()}):
        yield


@pytest.fixture
def home(tmp_path, model_files, monkeypatch):
    home = tmp_path / "home"
    register_model(home, model_files)
    monkeypatch.setenv("VERTICALS_HOME", str(home))
    return home


def cli(capfd, *args: str) -> tuple[int, str, str]:
    """Run ``verticals ARGS`` in-process; (exit code, stdout, stderr) as the file descriptors saw them."""
    capfd.readouterr()
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capfd.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    """stderr holds exactly one line, an error that is no traceback and names no Python class."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    (line,) = lines
    assert line.startswith("error: ") and "(fix: " in line, line
    for word in ("Traceback", "Error:", "Exception", "OSError", "ValueError", "polars", "pyarrow"):
        assert word not in line, line
    return line


def score(capfd, data: Path, out: Path, *extra: str) -> tuple[int, str, str]:
    return cli(capfd, "score", PIPELINE, "--input", str(data), "--output", str(out), "--device", "cpu",
               "--no-progress", *extra)


# -- the output folder ------------------------------------------------------------------------------------
def test_output_under_proc_is_one_line_naming_the_output_not_the_staging_folder(capfd, home, tmp_path):
    data = write_parquet(make_rows(10), tmp_path / "in.parquet")
    code, out, err = score(capfd, data, Path("/proc/verticals-scores"))
    line = one_error_line(err)
    assert code == 6 == scoring_output.FileSystemError.exit_code
    assert "cannot write the output folder /proc/verticals-scores" in line and "--output" in line
    assert ".partial" not in line and out == ""


@pytest.mark.parametrize("errno_name", ["EROFS", "EPERM", "EACCES"])
def test_unwritable_output_folder_is_one_line(capfd, home, tmp_path, monkeypatch, errno_name):
    """Read-only file system, immutable folder, no permission: what mkdir says in each case."""
    import errno

    data = write_parquet(make_rows(10), tmp_path / "in.parquet")
    locked = tmp_path / "locked"
    locked.mkdir()
    real_mkdir = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if self.parent == locked:
            code = getattr(errno, errno_name)
            raise OSError(code, os.strerror(code), str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    code, _, err = score(capfd, data, locked / "scores")
    line = one_error_line(err)
    assert code == 6
    assert f"cannot write the output folder {locked / 'scores'}: {os.strerror(getattr(errno, errno_name)).lower()}" \
        in line
    assert ".partial" not in line and ".probe" not in line
    assert sorted(p.name for p in locked.iterdir()) == []


def _can_bind_read_only() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount --bind -o ro /tmp /tmp"], capture_output=True,
                           timeout=30)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_bind_read_only(), reason="needs unshare and a user namespace for a read-only bind")
def test_read_only_bind_mount_in_a_real_process(home, tmp_path):
    data = write_parquet(make_rows(10), tmp_path / "in.parquet")
    ro = tmp_path / "ro"
    ro.mkdir()
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from scoring_support import ScoringTestPlugin
        from verticals.testing import use_plugins
        from verticals.cli import main
        with use_plugins({{"scoretest": ScoringTestPlugin()}}):
            main(sys.argv[1:])
    """)
    args = ["score", PIPELINE, "--home", str(home), "--no-progress", "--device", "cpu", "--input", str(data),
            "--output", str(ro / "scores")]
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", f'mount --bind -o ro "{ro}" "{ro}" && exec "$@"', "sh",
                           sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120)
    line = one_error_line(proc.stderr)
    assert proc.returncode == 6
    assert f"cannot write the output folder {ro / 'scores'}: read-only file system" in line


# -- bad input files --------------------------------------------------------------------------------------
def test_latin1_csv_at_scoring_hints_the_encoding_and_scores_with_it(capfd, home, tmp_path):
    rows = make_rows(5).with_columns(pl.lit("café").alias("cat"))  # a column the model reads
    path = tmp_path / "latin1.csv"
    path.write_bytes(rows.write_csv().encode("latin-1"))
    code, _, err = score(capfd, path, tmp_path / "o1")
    line = one_error_line(err)
    assert code == 2 and str(path) in line
    assert "not valid UTF-8" in line and "re-encode it as UTF-8" in line and "--encoding latin-1" in line
    code, out, err = score(capfd, path, tmp_path / "o2", "--encoding", "latin-1")
    assert code == 0, err
    assert "5 scored" in out


def test_semicolon_csv_hints_the_separator_and_scores_with_it(capfd, home, tmp_path):
    path = tmp_path / "semi.csv"
    make_rows(6).write_csv(path, separator=";")
    code, _, err = score(capfd, path, tmp_path / "o1")
    line = one_error_line(err)
    assert code == 2 and str(path) in line
    assert "separated by ';'" in line and "pass --separator ';'" in line
    code, out, err = score(capfd, path, tmp_path / "o2", "--separator", ";")
    assert code == 0, err
    assert "6 scored" in out


def test_unknown_encoding_and_bad_separator_name_the_option(capfd, home, tmp_path):
    data = write_parquet(make_rows(3), tmp_path / "in.parquet")
    code, _, err = score(capfd, data, tmp_path / "o", "--encoding", "klingon")
    assert code == 2 and "--encoding" in one_error_line(err)
    code, _, err = score(capfd, data, tmp_path / "o", "--separator", ";;")
    assert code == 2 and "--separator" in one_error_line(err)


def test_random_bytes_parquet_at_scoring(capfd, home, tmp_path):
    path = tmp_path / "noise.parquet"
    path.write_bytes(os.urandom(4096))
    code, _, err = score(capfd, path, tmp_path / "o")
    line = one_error_line(err)
    assert code == 2 and f"{path}: cannot read as Parquet" in line


def test_train_seed_must_be_non_negative(capfd, home):
    code, out, err = cli(capfd, "train", PIPELINE, "--seed", "-1")
    assert code == 2 and out == ""
    line = err.strip()
    assert line.startswith("error: Invalid value for '--seed': ") and "0" in line  # the option and its range
    assert "\n" not in line and "(fix: see 'verticals train --help')" in line


@pytest.mark.parametrize("case", ["random-bytes parquet", "ragged csv", "latin-1 csv", "semicolon csv"])
def test_train_data_that_cannot_be_read_is_one_line_naming_the_file(capfd, home, tmp_path, case):
    if case == "random-bytes parquet":
        path = tmp_path / "noise.parquet"
        path.write_bytes(os.urandom(10_000))
        expected = f"{path}: cannot read as Parquet"
    elif case == "ragged csv":
        path = tmp_path / "ragged.csv"
        text = make_rows(40).write_csv()
        lines = text.splitlines()
        lines[17] += ",1,2"
        path.write_text("\n".join(lines) + "\n")
        expected = f"{path}: line 18 has 11 fields but the header has 9"
    elif case == "latin-1 csv":
        path = tmp_path / "latin1.csv"
        path.write_bytes(make_rows(20).with_columns(pl.lit("Müller").alias("name")).write_csv().encode("latin-1"))
        expected = f"{path}: not valid UTF-8 text (fix: re-encode it as UTF-8, or pass its encoding"
    else:
        path = tmp_path / "semi.csv"
        make_rows(20).write_csv(path, separator=";")
        expected = "the file seems separated by ';' (fix: pass --separator ';')"
    code, out, err = cli(capfd, "train", PIPELINE, "--data", str(path), "--no-progress")
    line = one_error_line(err)
    assert code == 2 and out == ""
    assert expected in line and str(path) in line
    assert len(line) < 400


def test_train_reads_latin1_and_semicolon_csv_with_the_options(home, tmp_path):
    from verticals.data.files import CsvOptions
    from verticals.engine import load_data

    frame = make_rows(20).with_columns(pl.lit("Müller").alias("name"))
    latin = tmp_path / "latin1.csv"
    latin.write_bytes(frame.write_csv(separator=";").encode("latin-1"))
    loaded = load_data(PIPELINE, latin, csv=CsvOptions("latin-1", ";"))
    assert loaded.frame.height == 20 and loaded.frame["name"].to_list() == ["Müller"] * 20


def test_variant_that_was_not_built_names_the_usable_ones(capfd, home, tmp_path):
    data = write_parquet(make_rows(5), tmp_path / "in.parquet")
    code, _, err = score(capfd, data, tmp_path / "o", "--variant", "fp16")
    line = one_error_line(err)
    assert code == 2
    assert "has no fp16 model file" in line and "usable variants: fp32" in line
    assert "variants: fp16" not in line


@pytest.mark.skipif(cuda_device_count() > 0, reason="checks a machine without a GPU")
def test_device_cuda_without_a_gpu_prints_only_our_line(capfd, home, tmp_path):
    data = write_parquet(make_rows(5), tmp_path / "in.parquet")
    code, out, err = score(capfd, data, tmp_path / "o", "--device", "cuda")
    line = one_error_line(err)  # nothing from ONNX Runtime's own logger before it
    assert code == 2 and line.startswith("error: --device cuda: ")
    assert "--device cpu" in line and out == ""


def test_new_plugin_into_a_file_is_one_line(capfd, tmp_path):
    target = tmp_path / "a-file"
    target.write_text("not a folder")
    code, _, err = cli(capfd, "new-plugin", "x", "--dir", str(target))
    line = one_error_line(err)
    assert code in (2, 6) and str(target) in line


# -- JSON errors ------------------------------------------------------------------------------------------
def test_errors_under_json_are_json_on_stdout(capfd, home, tmp_path):
    code, out, err = score(capfd, tmp_path / "nope.parquet", tmp_path / "o", "--json")
    assert code == 2 and err == ""
    payload = json.loads(out)
    assert set(payload) == {"error", "fix", "code", "kind"}
    assert payload["code"] == 2 and payload["kind"] == "user"
    assert "nope.parquet does not exist" in payload["error"] and payload["fix"]

    code, out, err = cli(capfd, "models", "show", "nosuch", "--json")
    assert code == 2 and json.loads(out)["code"] == 2 and err == ""
    code, out, _ = cli(capfd, "train", PIPELINE, "--seed", "-1", "--json")
    assert code == 2 and "--seed" in json.loads(out)["error"]
    code, out, _ = score(capfd, make_rows(1).write_parquet(tmp_path / "x.parquet") or tmp_path / "x.parquet",
                         Path("/proc/x"), "--json")
    assert code == 6 and json.loads(out)["kind"] == "filesystem"


def test_exit_codes_are_documented():
    docs = (Path(__file__).parents[2] / "docs" / "cli.md").read_text()
    for code in EXIT_CODES:
        assert f"| {code} |" in docs, f"exit code {code} is missing from docs/cli.md"


# -- the console output of a scoring run ----------------------------------------------------------------------
def test_one_summary_and_each_warning_once(capfd, home, tmp_path):
    data = write_parquet(make_rows(20).with_columns(pl.lit(1).alias("extra")), tmp_path / "in.parquet")
    code, out, err = score(capfd, data, tmp_path / "o")
    assert code == 0, err
    assert out.count("scored 20 rows") == 1 and "scored 20 rows" not in err
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and "ignoring column(s) not in the model's schema: extra" in warnings[0]
    assert err.count("extra") == 1


@pytest.mark.parametrize("content", ["header only", "0 bytes"])
def test_empty_input_warns(capfd, home, tmp_path, content):
    path = tmp_path / "empty.csv"
    path.write_text(",".join(make_rows(1).columns) + "\n" if content == "header only" else "")
    code, out, err = score(capfd, path, tmp_path / "o")
    assert code == 0, err
    assert "scored 0 rows" in out
    assert f"warning: {path}: no rows to score (the input is empty or has only a header)" in err


def test_duplicate_ids_warn_with_count_and_examples(capfd, home, tmp_path):
    rows = make_rows(10)
    data = write_parquet(pl.concat([rows, rows.head(3), rows.head(1)]), tmp_path / "in.parquet")
    code, _, err = score(capfd, data, tmp_path / "o")
    assert code == 0, err
    (warning,) = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert "3 id value(s) occur more than once in column 'id' (7 output rows), e.g. 0 (x3), 1 (x2), 2 (x2)" \
        in warning
    manifest = json.loads((tmp_path / "o" / "_manifest.json").read_text())
    assert manifest["duplicate_ids"]["ids"] == 3 and manifest["duplicate_ids"]["rows"] == 7
    assert manifest["duplicate_ids"]["examples"][0] == {"id": 0, "count": 3}


def test_unique_ids_and_the_row_limit_of_the_duplicate_check(capfd, home, tmp_path, monkeypatch):
    data = write_parquet(make_rows(10), tmp_path / "in.parquet")
    code, _, err = score(capfd, data, tmp_path / "o1")
    assert code == 0 and "more than once" not in err
    manifest = json.loads((tmp_path / "o1" / "_manifest.json").read_text())
    assert manifest["duplicate_ids"] == {"checked": True, "ids": 0, "rows": 0, "examples": []}
    monkeypatch.setenv("VERTICALS_DUPLICATE_CHECK_MAX_ROWS", "5")
    code, _, err = score(capfd, data, tmp_path / "o2")
    manifest = json.loads((tmp_path / "o2" / "_manifest.json").read_text())
    assert code == 0 and manifest["duplicate_ids"]["checked"] is False
    assert "10 output rows exceed VERTICALS_DUPLICATE_CHECK_MAX_ROWS=5" in manifest["duplicate_ids"]["reason"]


def test_a_resumed_run_reports_its_parts_and_this_runs_throughput(capfd, home, tmp_path, monkeypatch):
    data = write_parquet(make_rows(3000), tmp_path / "in.parquet", row_group=1000)
    out = tmp_path / "out"
    real_write = scoring_output.AtomicParquet.write

    def die_in_second_part(self, frame):
        if self.path.name == "part-00001.parquet":
            raise KeyboardInterrupt
        return real_write(self, frame)

    monkeypatch.setattr(scoring_output.AtomicParquet, "write", die_in_second_part)
    code, o, err = score(capfd, data, out, "--batch-size", "400")
    assert code == 130 and err.strip().splitlines()[-1].startswith("error: interrupted"), (code, o, err)
    monkeypatch.undo()
    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.setenv("VERTICALS_HOME", str(home))

    code, stdout, err = score(capfd, data, out, "--batch-size", "400")
    assert code == 0, err
    assert "resumed 1 of 3 part files (1,000 rows) from an interrupted run; 2,000 rows scored in this run" in stdout
    manifest = json.loads((out / "_manifest.json").read_text())
    assert (manifest["parts_resumed"], manifest["rows_resumed"]) == (1, 1000)
    # throughput counts the 2,000 rows scored in this run, not the 1,000 resumed ones
    assert manifest["rows_per_second"] * manifest["seconds"] == pytest.approx(2000, rel=0.01)


# -- JSON on every command that reports something ---------------------------------------------------------
def _commands(group, path=()):
    """Every leaf command, and every group that does something itself (a listing with subcommands)."""
    for name, command in getattr(group, "commands", {}).items():
        yield from _commands(command, (*path, name))
    if path and (not getattr(group, "commands", None) or getattr(group, "invoke_without_command", False)):
        yield path, group


def test_every_core_command_that_reports_takes_json():
    import typer.main
    from verticals.cli import build_app

    group = typer.main.get_command(build_app())
    core = {"plugins", "pipelines", "datasets", "train", "score", "models", "new-plugin"}
    checked = []
    for path, command in _commands(group):
        if path[0] not in core:  # plugin commands (flows, finance) and the scaffold are tested with their code
            continue
        options = {opt for p in command.params for opt in getattr(p, "opts", [])}
        assert "--json" in options, f"`verticals {' '.join(path)}` has no --json"
        checked.append(" ".join(path))
    assert {"plugins", "pipelines show", "datasets show", "train", "score", "models list", "models verify",
            "models promote", "models unalias", "models delete", "new-plugin"} <= set(checked)


def test_train_json_reports_the_new_version(capfd, home, tmp_path):
    code, out, err = cli(capfd, "train", "rules", "--json", "--epochs", "1", "--home", str(tmp_path / "h2"))
    assert code == 0, err
    data = json.loads(out)
    assert data["pipeline"] == PIPELINE and data["version"] == 1
    assert Path(data["path"]).is_dir() and Path(data["report"]).is_file()
    assert 0 <= data["metrics"]["test"]["auc"] <= 1 and data["parity"]["passed"] is True
    assert set(data["variants"]) >= {"int8"}
