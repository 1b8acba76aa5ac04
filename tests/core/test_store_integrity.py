"""The model store checks every byte of a version before use: the manifest itself (calibration,
preprocessing state, input rules), every artifact, and nothing added since; aliases survive
concurrent promotes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import reliability_log
from verticals.errors import ModelIntegrityError
from verticals.store import MANIFEST_DIGEST, ModelStore

PIPE = "finance.credit_risk"


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "home")


def _add(store: ModelStore, **extras: object) -> object:
    staging = store.staging(PIPE)
    (staging / "model.onnx").write_bytes(b"onnx" * 100)
    (staging / "catalogue").mkdir()
    (staging / "catalogue" / "items.parquet").write_bytes(b"PAR1....PAR1")
    manifest = {"task": "binary", "preprocessor": {"mean": [0.5, 1.5]},
                "input_schema": {"columns": [{"name": "income", "min": 0, "max": 1e6}]},
                "extras": {"calibration": {"method": "platt", "a": 1.25, "b": -0.5}, **extras},
                "metrics": {"test": {"auc": float("nan")}}}  # NaN: the manifest check must not trip on it
    return store.register(PIPE, staging, manifest)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_registration_records_the_manifest_sha256_and_load_accepts_it(store: ModelStore) -> None:
    mv = _add(store)
    assert (mv.path / MANIFEST_DIGEST).read_text().strip() == _sha(mv.path / "manifest.json")
    assert MANIFEST_DIGEST not in mv.manifest["artifacts"]
    assert store.load(PIPE).version == 1


def test_edited_manifest_is_refused_at_load(store: ModelStore) -> None:
    mv = _add(store)
    path = mv.path / "manifest.json"
    expected = _sha(path)
    manifest = json.loads(path.read_text())
    manifest["extras"]["calibration"]["a"] = 2.5  # shifts every PD; the model file is untouched
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    with pytest.raises(ModelIntegrityError) as info:
        store.load(PIPE, 1)
    message = str(info.value)
    assert f"'manifest.json' in {mv.path} has changed: expected sha256 {expected}, actual {_sha(path)}" in message
    assert "(fix: re-register the model or retrain it" in message and "\n" not in message
    with pytest.raises(ModelIntegrityError, match=r"'manifest\.json'"):
        store.verify(store.resolve(PIPE, 1))
    # Only whitespace changed: still refused (the digest is of the bytes, not of the meaning).
    mv2 = _add(store)
    raw = (mv2.path / "manifest.json").read_bytes()
    (mv2.path / "manifest.json").write_bytes(raw + b" ")
    with pytest.raises(ModelIntegrityError, match=r"'manifest\.json'"):
        store.load(PIPE, 2)
    reliability_log.record("tamper-manifest", "refused at load with ModelIntegrityError (exit 4 in the CLI): "
                                              "\"file 'manifest.json' ... has changed: expected sha256 ..., "
                                              "actual ...\"; a whitespace-only edit too")


def test_manifest_without_its_digest_or_changed_after_reading_is_refused(store: ModelStore) -> None:
    mv = _add(store)
    (mv.path / MANIFEST_DIGEST).unlink()
    with pytest.raises(ModelIntegrityError, match=f"{MANIFEST_DIGEST} is missing"):
        store.load(PIPE, 1)
    mv2 = _add(store)
    mv2.manifest["extras"]["calibration"]["a"] = 9.0  # the copy in memory no longer matches the file
    with pytest.raises(ModelIntegrityError, match="changed after it was read"):
        store.verify(mv2)


@pytest.mark.parametrize("extra", ["model.onnx.bak", "catalogue/items-2.parquet", "calibration.json"])
def test_added_file_is_refused_at_load(store: ModelStore, extra: str) -> None:
    mv = _add(store)
    (mv.path / extra).write_bytes(b"dropped in later")
    with pytest.raises(ModelIntegrityError, match=f"file '{extra}' in .* was not there at registration") as info:
        store.load(PIPE, 1)
    assert "fix: delete it, or re-register" in str(info.value)
    (mv.path / extra).unlink()
    assert store.load(PIPE, 1).version == 1
    reliability_log.record("tamper-extra-file", "refused at load: \"file 'X' ... was not there at "
                                                "registration\"; accepted again once removed")


def test_every_artifact_a_pipeline_stores_is_checked(store: ModelStore) -> None:
    mv = _add(store)
    target = mv.path / "catalogue" / "items.parquet"
    target.write_bytes(target.read_bytes().replace(b"....", b"...."[::-1] + b"!"))
    with pytest.raises(ModelIntegrityError, match=r"'catalogue/items\.parquet' .* has changed"):
        store.load(PIPE, 1)


PROMOTER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from verticals.store import ModelStore

    home, me, rounds, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    store = ModelStore(home)
    Path(f"{go}-ready-{me}").touch()
    while not go.exists():
        time.sleep(0.005)
    for i in range(rounds):
        store.promote("finance.credit_risk", 1 + (i + int(me)) % 3, alias=f"a{me}")
        store.promote("finance.credit_risk", 1 + i % 3, alias="shared")
    print(1 + (rounds - 1 + int(me)) % 3)
""")


def test_concurrent_promotes_keep_aliases_json_valid(store: ModelStore, tmp_path: Path) -> None:
    for _ in range(3):
        _add(store)
    go, workers, rounds = tmp_path / "go", 8, 25
    procs = [subprocess.Popen([sys.executable, "-c", PROMOTER, str(store.home), str(w), str(rounds), str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1")) for w in range(workers)]
    deadline = time.monotonic() + 120
    while not all(Path(f"{go}-ready-{w}").exists() for w in range(workers)):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "promoters did not start"
        time.sleep(0.01)
    go.touch()
    reads = 0
    path = store.home / "models" / PIPE / "aliases.json"
    while any(p.poll() is None for p in procs):
        if path.exists():
            json.loads(path.read_text())  # a reader never sees a half-written file
            reads += 1
    results = [p.communicate(timeout=60) for p in procs]
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 0, err
    aliases = json.loads(path.read_text())
    want = {f"a{w}": int(out) for w, (out, _) in enumerate(results)}
    assert {k: v for k, v in aliases.items() if k != "shared"} == want, "an alias update was lost"
    assert aliases["shared"] == 1 + (rounds - 1) % 3
    assert list(aliases) == sorted(aliases)
    assert not list(path.parent.glob(".aliases.json.*")), "temporary files left behind"
    assert reads > 0
    reliability_log.record("concurrent-promote", "aliases.json always parses for a concurrent reader; at the end "
                                                 "it holds every process's last alias (no lost update) and no "
                                                 "temporary file")
