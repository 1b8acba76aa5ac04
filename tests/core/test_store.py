"""The model store: versions, aliases, sha256 integrity, atomic and concurrent writes, `verticals models`."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from verticals.errors import ModelIntegrityError, NotFoundError, UserError, VerticalsError
from verticals.store import ModelStore, ModelVersion, home

PIPE = "finance.credit_risk"


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModelStore:
    monkeypatch.setenv("VERTICALS_HOME", str(tmp_path / "home"))
    return ModelStore()


def _manifest(**extra: object) -> dict:
    base = {
        "task": "binary",
        "metrics": {"valid": {"auc": 0.79}, "test": {"auc": 0.8123, "gini": 0.6246, "ks": 0.51}},
        "parity": {"max_abs_diff": 2.4e-7, "tolerance": 1e-4},
        "signature": {"inputs": {"x_num": {"dtype": "float32", "shape": [-1, 4]}}, "outputs": ["logit"]},
    }
    base.update(extra)
    return base


def _add(store: ModelStore, pipeline: str = PIPE, payload: bytes = b"onnx-bytes", **extra: object) -> ModelVersion:
    staging = store.staging(pipeline)
    (staging / "model.onnx").write_bytes(payload)
    (staging / "preprocessor").mkdir()
    (staging / "preprocessor" / "state.json").write_text('{"mean": [0.5]}')
    return store.register(pipeline, staging, _manifest(**extra))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- registering and reading ------------------------------------------------------------------------
def test_register_numbers_versions_and_records_sha256_of_every_file(store: ModelStore) -> None:
    given = _manifest(created_at="2026-01-02T03:04:05Z")
    staging = store.staging(PIPE)
    assert staging.parent == store.home / ".staging" and not any(staging.iterdir())
    (staging / "model.onnx").write_bytes(b"first")
    (staging / "nested").mkdir()
    (staging / "nested" / "vocab.json").write_text("[1, 2]")
    v1 = store.register(PIPE, staging, given)
    v2 = _add(store, payload=b"second")

    assert (v1.version, v2.version) == (1, 2)
    assert not staging.exists(), "a staging folder from the store is moved into place"
    assert "version" not in given and "artifacts" not in given, "the caller's manifest is not modified"
    on_disk = json.loads((v1.path / "manifest.json").read_text())
    assert on_disk == v1.manifest
    assert on_disk["pipeline"] == PIPE and on_disk["version"] == 1
    assert on_disk["created_at"] == "2026-01-02T03:04:05Z", "a given created_at is kept"
    assert v2.manifest["created_at"].endswith("Z"), "a missing created_at is filled in (UTC)"
    assert on_disk["artifacts"] == {
        "model.onnx": _sha(v1.path / "model.onnx"),
        "nested/vocab.json": _sha(v1.path / "nested" / "vocab.json"),
    }
    assert v1.file("model.onnx").read_bytes() == b"first"
    assert v1.file("nested/vocab.json").read_text() == "[1, 2]"
    with pytest.raises(NotFoundError, match=r"no file 'weights.pt'.*model\.onnx"):
        v1.file("weights.pt")

    assert store.pipelines() == [PIPE]
    assert [mv.version for mv in store.versions(PIPE)] == [1, 2]
    assert store.versions("other.pipeline") == []
    assert pickle.loads(pickle.dumps(v2)) == v2, "stage results are pickled by Prefect"


def test_register_copies_a_folder_from_elsewhere_and_leaves_it(store: ModelStore, tmp_path: Path) -> None:
    outside = tmp_path / "export"
    outside.mkdir()
    (outside / "model.onnx").write_bytes(b"weights")
    mv = store.register(PIPE, outside, _manifest())
    assert (outside / "model.onnx").read_bytes() == b"weights"
    assert not (outside / "manifest.json").exists()
    assert mv.file("model.onnx").read_bytes() == b"weights"
    assert list((store.home / ".staging").iterdir()) == []


def test_manifest_values_are_made_json_and_unserializable_ones_fail_before_writing(store: ModelStore) -> None:
    import numpy as np

    mv = _add(store, metrics={"test": {"auc": np.float32(0.75), "n": np.int64(10)}}, source=Path("/data/x.csv"))
    reread = store.resolve(PIPE, 1).manifest
    assert reread["metrics"]["test"] == {"auc": pytest.approx(0.75), "n": 10}
    assert reread["source"] == "/data/x.csv" and mv.manifest == reread

    with pytest.raises(VerticalsError, match="cannot be written as JSON"):
        _add(store, extras={"model": object()})
    assert [v.version for v in store.versions(PIPE)] == [1]


def test_resolve_by_number_alias_latest_and_default(store: ModelStore) -> None:
    for payload in (b"a", b"b", b"c"):
        _add(store, payload=payload)
    assert store.resolve(PIPE).version == 3, "no production alias: latest"
    store.promote(PIPE, 2)
    assert store.resolve(PIPE).version == 2, "default follows the production alias"
    assert store.resolve(PIPE, None).aliases == ["production"]
    for ref in (1, "1", "v1", "V1"):
        assert store.resolve(PIPE, ref).version == 1
    assert store.resolve(PIPE, "latest").version == 3
    store.promote(PIPE, "latest", alias="challenger")
    assert store.resolve(PIPE, "challenger").version == 3
    assert store.aliases(PIPE) == {"challenger": 3, "production": 2}

    with pytest.raises(NotFoundError, match=r"no version 7; versions: v1, v2, v3; aliases: challenger→v3, production→v2"):
        store.resolve(PIPE, "v7")
    with pytest.raises(NotFoundError, match=r"no alias 'staging'; aliases: challenger→v3, production→v2"):
        store.resolve(PIPE, "staging")
    with pytest.raises(NotFoundError, match=rf"no model registered for pipeline 'finance.fraud'.*{PIPE}"):
        store.resolve("finance.fraud")
    with pytest.raises(UserError, match="invalid model reference"):
        store.resolve(PIPE, True)


def test_promote_moves_an_alias_and_rejects_unknown_versions_and_bad_names(store: ModelStore) -> None:
    _add(store, payload=b"a")
    _add(store, payload=b"b")
    assert store.promote(PIPE, 1).aliases == ["production"]
    store.promote(PIPE, "v2", alias="production")
    assert [(mv.version, mv.aliases) for mv in store.versions(PIPE)] == [(1, []), (2, ["production"])]
    assert json.loads((store.models_dir / PIPE / "aliases.json").read_text()) == {"production": 2}

    with pytest.raises(NotFoundError, match="no version 5"):
        store.promote(PIPE, 5)
    for bad in ("latest", "v3", "12", "has space", "../x", ""):
        with pytest.raises(UserError, match="invalid alias"):
            store.promote(PIPE, 1, alias=bad)
    with pytest.raises(NotFoundError):
        store.promote("finance.unknown", 1)
    assert not (store.models_dir / "finance.unknown").exists(), "a failed promote creates nothing"
    assert store.aliases(PIPE) == {"production": 2}

    store.unalias(PIPE, "production")
    assert store.resolve(PIPE).aliases == [] and store.resolve(PIPE).version == 2


@pytest.mark.parametrize("name", ["../evil", "a/b", "/abs", "", ".hidden", "a..b", "x" * 300, "a\\b"])
def test_pipeline_names_cannot_escape_the_store(store: ModelStore, tmp_path: Path, name: str) -> None:
    with pytest.raises(UserError, match="invalid pipeline name"):
        store.staging(name)
    with pytest.raises(UserError, match="invalid pipeline name"):
        store.resolve(name)
    source = tmp_path / "src"
    source.mkdir(exist_ok=True)
    (source / "m.onnx").write_bytes(b"x")
    with pytest.raises(UserError, match="invalid pipeline name"):
        store.register(name, source, {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"], "nothing written outside the store"


def test_home_is_the_env_var_else_the_user_data_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import platformdirs

    monkeypatch.setenv("VERTICALS_HOME", str(tmp_path / "h"))
    assert home() == tmp_path / "h" and ModelStore().home == tmp_path / "h"
    assert ModelStore(tmp_path / "other").home == tmp_path / "other"
    monkeypatch.delenv("VERTICALS_HOME")
    assert home() == Path(platformdirs.user_data_dir("verticals", appauthor=False))


# -- integrity -------------------------------------------------------------------------------------
def test_a_changed_byte_is_caught_by_verify_and_load(store: ModelStore) -> None:
    mv = _add(store, payload=b"\x00" * 1000)
    store.verify(mv)
    assert store.load(PIPE).version == 1

    path = mv.path / "model.onnx"
    expected = _sha(path)
    data = bytearray(path.read_bytes())
    data[500] ^= 0x01
    path.write_bytes(bytes(data))
    actual = _sha(path)

    with pytest.raises(ModelIntegrityError) as info:
        store.load(PIPE)
    message = str(info.value)
    assert "'model.onnx'" in message and "v1" in message
    assert f"expected sha256 {expected}, actual {actual}" in message
    assert "fix: re-register the model or retrain it" in message and "\n" not in message
    with pytest.raises(ModelIntegrityError, match=r"model\.onnx"):
        store.verify(store.resolve(PIPE))


def test_a_deleted_file_or_an_unsafe_manifest_path_is_an_integrity_error(store: ModelStore) -> None:
    mv = _add(store)
    (mv.path / "preprocessor" / "state.json").unlink()
    with pytest.raises(ModelIntegrityError, match=r"'preprocessor/state.json' is missing"):
        store.load(PIPE, 1)

    mv2 = _add(store)
    manifest = dict(mv2.manifest, artifacts={"../../../etc/passwd": "0" * 64})
    (mv2.path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelIntegrityError, match=r"'manifest\.json' .* has changed"):
        store.load(PIPE, 2)
    # A forger who also rewrites the manifest's recorded sha256 still cannot point outside the folder.
    (mv2.path / "manifest.json.sha256").write_text(_sha(mv2.path / "manifest.json") + "\n")
    with pytest.raises(ModelIntegrityError, match="unsafe path"):
        store.load(PIPE, 2)


# -- atomicity -------------------------------------------------------------------------------------
def test_a_crash_while_copying_leaves_no_version(store: ModelStore, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "export"
    source.mkdir()
    for i in range(3):
        (source / f"part{i}.bin").write_bytes(bytes([i]) * 100)
    real_copy = shutil.copy2
    copied = []

    def copy_then_fail(src, dst, **kw):
        if copied:
            raise OSError(28, "No space left on device")
        copied.append(src)
        return real_copy(src, dst, **kw)

    monkeypatch.setattr(shutil, "copy2", copy_then_fail)
    with pytest.raises(OSError, match="No space left"):
        store.register(PIPE, source, _manifest())
    monkeypatch.undo()

    assert copied, "the crash happened midway, after one file was copied"
    assert store.pipelines() == [] and store.versions(PIPE) == []
    with pytest.raises(NotFoundError):
        store.resolve(PIPE)
    assert list((store.home / ".staging").iterdir()) == [], "the half-copied folder is removed"
    assert store.register(PIPE, source, _manifest()).version == 1


def test_a_crash_before_the_rename_leaves_no_version(store: ModelStore, monkeypatch: pytest.MonkeyPatch) -> None:
    import verticals.store as store_module

    staging = store.staging(PIPE)
    (staging / "model.onnx").write_bytes(b"m")

    def fail(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(store_module.os, "rename", fail)
    with pytest.raises(KeyboardInterrupt):
        store.register(PIPE, staging, _manifest())
    monkeypatch.undo()
    assert store.versions(PIPE) == [] and store.pipelines() == []
    assert (staging / "model.onnx").exists(), "the caller's staging folder survives for a retry"
    assert store.register(PIPE, staging, _manifest()).version == 1


def test_a_folder_without_manifest_is_invisible_and_its_number_not_reused(store: ModelStore) -> None:
    half = store.models_dir / PIPE / "v1"
    half.mkdir(parents=True)
    (half / "model.onnx").write_bytes(b"half written")
    assert store.versions(PIPE) == [] and store.pipelines() == []
    assert _add(store).version == 2
    assert [mv.version for mv in store.versions(PIPE)] == [2]
    assert (half / "model.onnx").read_bytes() == b"half written"


def test_a_deleted_latest_version_number_is_not_given_out_again(store: ModelStore) -> None:
    _add(store)
    v2 = _add(store)
    shutil.rmtree(v2.path)
    assert _add(store).version == 3


# -- concurrency -----------------------------------------------------------------------------------
_WRITER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from verticals.store import ModelStore

    home, wid, count, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    store = ModelStore(home)
    Path(str(go) + "-ready-" + wid).touch()
    while not go.exists():
        time.sleep(0.001)
    got = []
    for i in range(count):
        staging = store.staging("finance.credit_risk")
        for j in range(3):
            (staging / f"f{j}.bin").write_bytes(f"{wid}-{i}-{j}".encode() * 2000)
        mv = store.register("finance.credit_risk", staging, {"writer": wid, "iteration": i})
        store.promote("finance.credit_risk", mv.version, alias="w" + wid)
        got.append(mv.version)
    print(" ".join(map(str, got)))
""")


def test_concurrent_writers_get_distinct_complete_versions(store: ModelStore, tmp_path: Path) -> None:
    count = 25
    go = tmp_path / "go"
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(store.home), wid, str(count), str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for wid in ("0", "1")]
    deadline = time.monotonic() + 60
    while not all(Path(f"{go}-ready-{wid}").exists() for wid in ("0", "1")):  # both started: start together
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "writers did not start"
        time.sleep(0.01)
    go.touch()

    seen_by_reader = set()
    while any(p.poll() is None for p in procs):
        for mv in store.versions(PIPE):  # a reader never sees a version that is still being written
            store.verify(mv)
            assert len(mv.artifacts) == 3
            seen_by_reader.add(mv.version)
    outs = [p.communicate(timeout=60) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err

    got = [[int(v) for v in out.split()] for out, _ in outs]
    assert all(len(g) == count for g in got)
    assert sorted(got[0] + got[1]) == list(range(1, 2 * count + 1)), "distinct versions, none lost"
    assert min(got[1]) < max(got[0]) and min(got[0]) < max(got[1]), "the writers really interleaved"
    versions = store.versions(PIPE)
    assert len(versions) == 2 * count
    for mv in versions:
        store.verify(mv)
        wid, i = mv.manifest["writer"], mv.manifest["iteration"]
        assert got[int(wid)][i] == mv.version
        assert mv.file("f0.bin").read_bytes() == f"{wid}-{i}-0".encode() * 2000
    assert store.aliases(PIPE) == {"w0": got[0][-1], "w1": got[1][-1]}, "no alias update lost"
    assert seen_by_reader, "the reader ran while writers wrote"
    assert list((store.home / ".staging").iterdir()) == []


# -- CLI -------------------------------------------------------------------------------------------
def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    from verticals.cli import main

    capsys.readouterr()
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    out, err = capsys.readouterr()
    return code, out, err


def _error_line(err: str) -> str:
    """The one ``error:`` line (plugins being installed may add warnings around it)."""
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


def test_cli_list_show_verify_promote(store: ModelStore, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = _cli(capsys, "models", "list")
    assert code == 0 and "No models" in out
    assert _cli(capsys, "models", "list", "--json")[1].strip() == "[]"

    _add(store, payload=b"a")
    _add(store, "finance.fraud", payload=b"b")
    _add(store, payload=b"c", metrics={"test": {"auc": 0.9, "gini": 0.8}}, parity={"max_abs_diff": 3e-6})

    code, out, _ = _cli(capsys, "models", "list", "--json")
    rows = json.loads(out)
    assert code == 0
    assert [(r["pipeline"], r["version"]) for r in rows] == [("finance.credit_risk", 1), ("finance.credit_risk", 2),
                                                              ("finance.fraud", 1)]
    assert rows[1]["metrics"] == {"auc": 0.9, "gini": 0.8} and rows[1]["parity_max_diff"] == 3e-6
    assert rows[0]["created_at"] and rows[0]["aliases"] == []

    code, out, _ = _cli(capsys, "models", "promote", PIPE, "1", "--alias", "production")
    assert code == 0 and "production → v1" in out
    code, out, _ = _cli(capsys, "models", "promote", PIPE, "2")
    assert code == 0 and "production → v2 (was v1)" in out

    code, out, _ = _cli(capsys, "models", "list", PIPE)
    assert code == 0
    assert "finance.fraud" not in out
    assert "production" in out and "auc=0.9" in out and "3.00e-06" in out

    code, out, _ = _cli(capsys, "models", "show", PIPE, "v2", "--json")
    assert code == 0 and json.loads(out) == store.resolve(PIPE, 2).manifest
    code, out, _ = _cli(capsys, "models", "show", PIPE)
    assert code == 0
    assert "finance.credit_risk v2" in out and "production" in out and "model.onnx" in out
    assert "x_num" in out and "3.00e-06" in out

    code, out, _ = _cli(capsys, "models", "verify", PIPE, "1")
    assert code == 0 and "ok: finance.credit_risk v1" in out


def test_cli_errors_are_one_line_with_exit_codes(store: ModelStore, capsys: pytest.CaptureFixture[str]) -> None:
    mv = _add(store)
    code, _, err = _cli(capsys, "models", "show", PIPE, "v9")
    assert code == 2 and "versions: v1" in _error_line(err)
    code, _, err = _cli(capsys, "models", "list", "finance.none")
    assert code == 2 and f"pipelines with models: {PIPE}" in _error_line(err)
    code, _, err = _cli(capsys, "models", "promote", PIPE, "3")
    assert code == 2 and "no version 3" in _error_line(err)

    (mv.path / "model.onnx").write_bytes(b"tampered")
    code, _, err = _cli(capsys, "models", "verify", PIPE)
    line = _error_line(err)
    assert code == 4 and "'model.onnx'" in line and "expected sha256" in line


def test_cli_home_option_overrides_the_env_var(store: ModelStore, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    other = ModelStore(tmp_path / "other")
    _add(other, "finance.fraud")
    code, out, _ = _cli(capsys, "models", "list", "--json", "--home", str(other.home))
    assert code == 0 and [r["pipeline"] for r in json.loads(out)] == ["finance.fraud"]
    assert json.loads(_cli(capsys, "models", "list", "--json")[1]) == []


def test_the_typed_manifest_reads_and_writes_the_json_it_came_from():
    from verticals.manifest import ModelManifest

    data = {"pipeline": "p.q", "version": 3, "task": "binary", "model_file": "model.onnx",
            "input_schema": [{"name": "a", "dtype": "float", "role": "feature"},
                             {"name": "y", "dtype": "int", "role": "target"}],
            "signature": {"inputs": {"x_num": {"dtype": "float32", "shape": [-1, 1]}}, "outputs": ["logits"]},
            "named_artifacts": {"catalog": {"file": "artifacts/catalog.parquet", "kind": "parquet"}},
            "future_key": {"kept": True}}
    m = ModelManifest.from_dict(data)
    assert m.version == 3 and m.input_dtypes == {"x_num": "float32"} and m.output_names == ["logits"]
    assert m.schema.names == ["a"]  # scoring input: no target
    assert m.to_dict()["future_key"] == {"kept": True}
    again = ModelManifest.from_dict(m.to_dict())
    assert again == m
