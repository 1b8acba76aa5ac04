"""Property tests (hypothesis) of validation and the scoring readers on generated frames, and a bounded,
seeded fuzz of the Parquet and CSV readers on mutated files.

Properties, whatever the frame: validation either raises a one-line DataValidationError or splits the
rows into valid and rejected ones, each row exactly once; valid numbers are finite and inside the
rejecting ranges; every reject has a reason. The fuzz runs in a child process (a reader that crashed
the interpreter would otherwise take the test session with it) with a fixed seed and count.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
import reliability_log
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scoring_support import SCHEMA, cached_model, make_rows, register_model
from verticals.data.validation import validate
from verticals.errors import DataValidationError, VerticalsError

PROPERTY = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

FLOATS = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True),
                   st.sampled_from([0.0, -0.0, 1e308, -1e308, 5e-324, 10.0, -10.0, 100.0]))
INTS = st.one_of(st.none(), st.integers(min_value=-(2**63), max_value=2**63 - 1))
TEXT = st.one_of(st.none(), st.text(max_size=40), st.sampled_from(["", "NaN", "inf", "-inf", "null", "NA", " 3 ",
                                                                  "1e5", "0x10", "\u202e", "🦜", "a\x00b",
                                                                  "x" * 5000]))


@st.composite
def frames(draw: st.DrawFn) -> pl.DataFrame:
    """A frame over the test schema's columns with odd dtypes and values; sometimes a column is absent,
    sometimes an extra one is present, sometimes there are no rows."""
    n = draw(st.integers(min_value=0, max_value=25))
    data: dict[str, pl.Series] = {}
    for col in SCHEMA:
        if col.name != "id" and draw(st.integers(0, 19)) == 0:
            continue  # an absent column
        kind = draw(st.sampled_from(["native", "text", "int", "float", "null"]))
        if col.name == "id":
            values = list(range(n))
            data["id"] = pl.Series("id", values, dtype=pl.Int64)
            continue
        if kind == "text" or (kind == "native" and col.dtype in ("category", "string")):
            data[col.name] = pl.Series(col.name, draw(st.lists(TEXT, min_size=n, max_size=n)), dtype=pl.String)
        elif kind == "int" or (kind == "native" and col.dtype == "int"):
            data[col.name] = pl.Series(col.name, draw(st.lists(INTS, min_size=n, max_size=n)), dtype=pl.Int64)
        elif kind == "null":
            data[col.name] = pl.Series(col.name, [None] * n, dtype=pl.Null)
        else:
            data[col.name] = pl.Series(col.name, draw(st.lists(FLOATS, min_size=n, max_size=n)), dtype=pl.Float64)
    if draw(st.booleans()):
        data["extra_col"] = pl.Series("extra_col", draw(st.lists(TEXT, min_size=n, max_size=n)), dtype=pl.String)
    return pl.DataFrame(list(data.values()))


def _check_result(frame: pl.DataFrame, stage: str) -> None:
    try:
        res = validate(frame, SCHEMA, stage=stage, source="gen.parquet")  # type: ignore[arg-type]
    except DataValidationError as exc:
        assert "\n" not in str(exc) and "gen.parquet" in str(exc)
        return
    assert res.valid.height + res.rejects.height == frame.height
    rows = res.rejects["_row"].cast(pl.Int64).to_list()
    assert len(set(rows)) == len(rows) and all(0 <= r < frame.height for r in rows)
    assert all(isinstance(r, str) and r for r in res.rejects["_reason"].to_list())
    assert len(res.flags) == res.valid.height
    for col in SCHEMA:
        if col.name not in res.valid.columns or col.dtype not in ("float", "int"):
            continue
        values = [v for v in res.valid[col.name].to_list() if v is not None]
        assert all(math.isfinite(v) for v in values), (col.name, values)
        if col.on_out_of_range == "reject" and col.min is not None:
            assert all(col.min <= v <= col.max for v in values), (col.name, values)
        if col.on_missing == "reject":
            assert res.valid[col.name].null_count() == 0
    if stage == "train" and res.valid.height:
        assert set(res.valid["y"].cast(pl.String).to_list()) <= {"0", "1"}


@PROPERTY
@given(frames(), st.sampled_from(["score", "train"]))
def test_validation_accounts_for_every_row(frame: pl.DataFrame, stage: str) -> None:
    _check_result(frame, stage)


@PROPERTY
@given(frames(), st.sampled_from(["parquet", "csv"]))
def test_readers_hand_validation_what_the_file_holds(tmp_path_factory, frame: pl.DataFrame, kind: str) -> None:
    """Written to Parquet or CSV, read back by the scoring readers batch by batch and validated: every
    row is accounted for once, and failures are one-line DataValidationErrors."""
    from verticals.scoring.partitions import plan_partitions, read_partition

    folder = tmp_path_factory.mktemp("prop")
    path = folder / f"gen.{kind}"
    try:
        frame.write_parquet(path) if kind == "parquet" else frame.write_csv(path)
    except (pl.exceptions.PolarsError, ValueError):  # a frame the writer cannot express (e.g. NUL in CSV is fine)
        return
    try:
        rows = 0
        for part in plan_partitions(path):
            offset = part.row_offset
            for batch in read_partition(part, SCHEMA, 7):
                res = validate(batch, SCHEMA, stage="score", source=str(path), row_offset=offset)
                assert res.valid.height + res.rejects.height == batch.height
                offset += batch.height
                rows += batch.height
    except VerticalsError as exc:
        assert "\n" not in str(exc)
        return
    assert rows == frame.height


# -- fuzz -------------------------------------------------------------------------------------------------
FUZZ = r'''
import json, random, shutil, sys, traceback
from pathlib import Path

from scoring_support import PIPELINE, ScoringTestPlugin
from verticals.errors import VerticalsError
from verticals.scoring import ScoringSession, check_sources, finalize, plan_partitions, prepare_staging
from verticals.scoring.run import score_partitions
from verticals.testing import use_plugins

home, seeds, count, folder = Path(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])


def mutate(blob: bytes, rng: random.Random) -> bytes:
    data = bytearray(blob)
    for _ in range(rng.randint(1, 4)):
        op = rng.choice(["flip", "set", "cut", "dup", "insert", "zero"])
        if not data:
            break
        i = rng.randrange(len(data))
        if op == "flip":
            data[i] ^= 1 << rng.randrange(8)
        elif op == "set":
            for j in range(i, min(len(data), i + rng.randint(1, 16))):
                data[j] = rng.randrange(256)
        elif op == "cut":
            del data[i:i + rng.randint(1, 64)]
        elif op == "dup":
            data[i:i] = data[i:i + rng.randint(1, 64)]
        elif op == "insert":
            data[i:i] = bytes(rng.choice([b",", b'"', b"\n", b"\x00", b"\xff", b"PAR1", b"\r"]))
        else:
            data[i:i + rng.randint(1, 32)] = b"\x00" * 8
    return bytes(data)


results = {"error": 0, "done": 0, "crash": []}
with use_plugins({"scoretest": ScoringTestPlugin()}):
    session = ScoringSession.open(PIPELINE, None, "cpu", 64, home)
    for kind, seed in seeds.items():
        original = (folder / f"clean.{kind}").read_bytes()
        rng = random.Random(seed)
        for i in range(count):
            path = folder / f"m{i}.{kind}"
            path.write_bytes(mutate(original, rng))
            out = folder / f"out-{kind}-{i}"
            try:
                parts = plan_partitions(path)
                check_sources(session, parts)
                staging = prepare_staging(session, parts, out)
                res = score_partitions(session, parts, staging)
                manifest = finalize(session, staging, out, res)
                assert manifest["rows_in"] == manifest["rows_scored"] + manifest["rows_rejected"]
                results["done"] += 1
            except VerticalsError as exc:
                assert "\n" not in str(exc), str(exc)
                results["error"] += 1
            except Exception as exc:
                results["crash"].append(f"{kind} #{i}: {type(exc).__name__}: {str(exc)[:200]}")
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(out.parent / f".{out.name}.partial", ignore_errors=True)
            path.unlink()
    session.close()
print(json.dumps(results))
'''


def test_mutated_files_never_crash_the_run(tmp_path_factory, tmp_path: Path) -> None:
    """60 seeded mutations each of a Parquet and a CSV file: each ends in a one-line error or a complete
    output whose row accounting holds; none raises anything else (and the process survives)."""
    home = tmp_path / "home"
    register_model(home, cached_model(tmp_path_factory))
    clean = make_rows(300)
    clean.write_parquet(tmp_path / "clean.parquet", row_group_size=100)
    clean.write_csv(tmp_path / "clean.csv")
    here = Path(__file__).parent
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(FUZZ), str(home),
                           json.dumps({"parquet": 1127, "csv": 2711}), "60", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, cwd=here,
                          env={**__import__("os").environ, "PYTHONPATH": str(here)})
    assert proc.returncode == 0, f"the fuzz process died (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert results["crash"] == []
    assert results["error"] + results["done"] == 120
    assert results["error"] > 10 and results["done"] > 10, results  # the mutations really exercised both paths
    reliability_log.record("fuzz", "120 seeded mutations (60 Parquet, 60 CSV: bit flips, overwritten, cut, "
                                   "duplicated and inserted bytes): each a one-line error or a complete output "
                                   "with rows_in = scored + rejected; no other exception, no dead process")
