"""Every reader against the table of bad inputs (tests/core/reader_cases.py), property tests of the
readers and validation on generated frames, and a bounded, seeded fuzz of Parquet and CSV files."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pytest
import reliability_log
from reader_cases import CASES, Case
from scoring_support import PIPELINE, ScoringTestPlugin, cached_model, register_model
from verticals.errors import VerticalsError
from verticals.testing import use_plugins


@dataclass
class Outcome:
    kind: str  # "error" | "done" | "crash"
    message: str = ""
    rows_in: int = 0
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)
    flagged: int = 0


def _score(path: Path, home: Path) -> Outcome:
    from verticals.scoring import score

    out = path.parent / "out"
    try:
        manifest = score(PIPELINE, path, out, home=home, device="cpu", progress=False)
    except VerticalsError as exc:
        assert not out.exists(), "a failed run left an output folder"
        assert not (path.parent / ".out.partial").exists() or not any((path.parent / ".out.partial").glob("part-*")), \
            "a failed run left parts that look complete"
        return Outcome("error", str(exc))
    parts = sorted(out.glob("part-*.parquet"))
    scored = pl.concat([pl.read_parquet(p) for p in parts]) if parts else pl.DataFrame({"flags": []})
    rejects = pl.read_parquet(out / "_rejects.parquet")
    assert manifest["rows_in"] == manifest["rows_scored"] + manifest["rows_rejected"] == \
        scored.height + rejects.height
    return Outcome("done", rows_in=manifest["rows_in"], rejected=rejects.height,
                   reasons=rejects["_reason"].to_list(), flagged=int((scored["flags"].cast(pl.String) != "").sum()))


def _train(path: Path, home: Path) -> Outcome:
    from verticals import engine

    try:
        validated = engine.validate_data(PIPELINE, engine.load_data(PIPELINE, path))
    except VerticalsError as exc:
        return Outcome("error", str(exc))
    return Outcome("done", rows_in=validated.rows_in, rejected=validated.rejects.height,
                   reasons=validated.rejects["_reason"].to_list(), flagged=validated.rows_flagged)


# How each reader runs a case; readers still to come (DICOM, images, interactions, telemetry) add theirs.
RUNNERS: dict[str, Callable[[Path, Path], Outcome]] = {"score": _score, "train": _train}


def run_case(path: Path, reader: str, home: Path) -> Outcome:
    try:
        return RUNNERS[reader](path, home)
    except AssertionError:
        raise
    except Exception as exc:  # anything but a VerticalsError is a crash: a traceback for the user
        return Outcome("crash", f"{type(exc).__name__}: {exc}")


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    return cached_model(tmp_path_factory)


@pytest.fixture(scope="module")
def store_home(tmp_path_factory, model_files) -> Path:
    home = tmp_path_factory.mktemp("reader-cases") / "home"
    register_model(home, model_files)
    return home


@pytest.fixture(autouse=True)
def plugin():
    with use_plugins({"scoretest": ScoringTestPlugin()}):
        yield


def check(case: Case, got: Outcome) -> None:
    assert got.kind != "crash", f"{case.id}: crashed with {got.message}"
    if case.expect == "error":
        assert got.kind == "error", f"{case.id}: expected an error, the run completed ({got})"
        assert "\n" not in got.message and "(fix: " in got.message, got.message
        assert re.search(case.match, got.message), f"{case.id}: {got.message!r} does not match {case.match!r}"
        return
    assert got.kind == "done", f"{case.id}: expected {case.expect}, got the error {got.message}"
    assert got.rejected == case.rejected, (case.id, got)
    assert all(re.search(case.match, r) for r in got.reasons), (case.id, got.reasons)
    if case.flagged is not None:
        assert got.flagged == case.flagged, (case.id, got)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_reader_case(case: Case, store_home: Path, tmp_path: Path) -> None:
    path = case.make(tmp_path)
    check(case, run_case(path, case.reader, store_home))
    _recorded.add(case.id)
    if _recorded == {c.id for c in CASES}:
        readers = sorted({c.reader for c in CASES})
        reliability_log.record("bad-input", f"{len(CASES)} cases over the readers {', '.join(readers)}: each "
                                            "ends in a one-line error naming the file (and no output) or in "
                                            "rejected rows with their reasons; none crashes")


_recorded: set[str] = set()
