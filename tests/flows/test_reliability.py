"""The fault harness: real processes, killed (SIGKILL) at seeded points, run twice into one output, out
of disk space, trained ten at a time; after each, what a user sees must be whole and the next run must
succeed. Outcomes are recorded for ``docs/reliability.md`` (tests/reliability_log.py).

Kill points are named functions of the code (wrapped by ``fault_runner.py`` so that the process kills
itself on the N-th call, before or after it), chosen by a seeded random generator, plus one kill at a
seeded random time per command. Every scenario is checked against an uninterrupted run of the same
command.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import reliability_log
from flows_support import PIPELINE, read_output, wait_for, write_batch

pytestmark = [pytest.mark.slow]

RUNNER = str(Path(__file__).with_name("fault_runner.py"))
SEED = 20261127
SECRET = "pnu_VerticalsTestSecret0123456789abcdefXYZ"


# -- launching --------------------------------------------------------------------------------------------
def launch(env, args: list[str], *, fault: dict | None = None, extra: dict | None = None) -> subprocess.Popen:
    environ = {**os.environ, **env.vars, **(extra or {})}
    if fault:
        environ["VERTICALS_TEST_FAULT"] = json.dumps(fault)
    return subprocess.Popen([sys.executable, RUNNER, *args], start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=environ)


def finish(proc: subprocess.Popen, timeout: float = 240) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"{proc.args} did not finish in {timeout} s:\n{err[-3000:]}") from None
    return proc.returncode, out, err


def run(env, args: list[str], **kw) -> tuple[int, str, str]:
    return finish(launch(env, args, **kw))


def error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.startswith("error: ")]
    assert lines, f"no one-line error on stderr:\n{stderr[-3000:]}"
    return lines[-1]


def score_args(kind: str, source: Path, out: Path, version: int, batch_size: int = 100) -> list[str]:
    if kind == "cli":
        return ["score", PIPELINE, "-i", str(source), "-o", str(out), "--model", str(version),
                "--batch-size", str(batch_size), "--no-progress"]
    return ["run", "score", PIPELINE, "--input", str(source), "--output", str(out), "--model", str(version),
            "--batch-size", str(batch_size)]


@pytest.fixture(scope="module")
def reference(flows_env, trained, batch, tmp_path_factory) -> Path:
    """An uninterrupted `verticals score` of the session batch: what every rerun must reproduce."""
    out = tmp_path_factory.mktemp("reference") / "scores"
    rc, _, err = run(flows_env, score_args("cli", batch, out, trained))
    assert rc == 0, err[-3000:]
    return out


def assert_same_output(out: Path, reference: Path) -> dict:
    rows, rejects, manifest = read_output(out)
    want_rows, want_rejects, want = read_output(reference)
    assert rows["row_id"].n_unique() == rows.height, "duplicated rows"
    assert rows.equals(want_rows), "scores differ from the uninterrupted run"
    assert rejects.equals(want_rejects), "rejects differ from the uninterrupted run"
    for key in ("rows_in", "rows_scored", "rows_rejected", "rows_out", "model_version"):
        assert manifest[key] == want[key], key
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in reference.iterdir())
    return manifest


def leftovers(parent: Path, out: Path) -> list[str]:
    """Anything next to ``out`` that a finished run should not leave (staging folders, lock files)."""
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{out.name}."))


# -- two runs, one output ---------------------------------------------------------------------------------
LOCK_CASES = [("lock-cli-cli-same", "cli", "cli", "same"), ("lock-flow-cli-different", "flow", "cli", "different"),
              ("lock-cli-flow-different", "cli", "flow", "different"), ("lock-flow-flow-same", "flow", "flow", "same")]


@pytest.mark.prefect
@pytest.mark.parametrize(("case", "first_kind", "second_kind", "which"), LOCK_CASES, ids=[c[0] for c in LOCK_CASES])
def test_second_run_into_one_output_is_refused(case, first_kind, second_kind, which, prefect_api, flows_env,
                                               trained, batch, reference, tmp_path: Path) -> None:
    """The first run is held after its first batch (nothing committed yet); the second run, same or
    other input, CLI or flow, is refused with one line naming the holder and touches nothing."""
    out = tmp_path / "scores"
    other = write_batch(tmp_path / "other.parquet", rows=1000, start=900_000)
    gate = tmp_path / "gate"
    first = launch(flows_env, score_args(first_kind, batch, out, trained), extra={"VERTICALS_TEST_GATE": str(gate)})
    try:
        wait_for(lambda: Path(f"{gate}.waiting").exists() or first.poll() is not None, 180, "the first run's first batch")
        assert first.poll() is None, f"the first run ended early:\n{first.stderr.read()[-3000:]}"
        staging = tmp_path / ".scores.partial"
        before = sorted(str(p.relative_to(tmp_path)) for p in staging.rglob("*"))
        assert not list((staging / "_state").glob("part-*.json")), "the first run committed a part already"

        source = batch if which == "same" else other
        if second_kind == "cli":
            refused, _, err = run(flows_env, score_args("cli", source, out, trained))
            line = error_line(err)
            assert refused == 2, err[-3000:]
        else:  # the flow function, in this process (a real second process holds the lock)
            from verticals.locking import LockHeldError
            from verticals_flows.score import score_flow

            with pytest.raises(LockHeldError) as info:
                score_flow(pipeline=PIPELINE, input=str(source), output=str(out), model=str(trained), batch_size=100)
            line = f"error: {info.value}"
        assert "another scoring run" in line and f"process {first.pid}" in line and str(out) in line, line
        after = sorted(str(p.relative_to(tmp_path)) for p in staging.rglob("*"))
        assert after == before, "the refused run changed the first run's staging folder"
    finally:
        gate.touch()
    rc, _, err = finish(first)
    assert rc == 0, f"the first run failed after the refused one:\n{err[-3000:]}"
    assert_same_output(out, reference)
    assert leftovers(tmp_path, out) == []
    reliability_log.record(case, "second run refused (LockHeldError; exit 2 from the CLI) with one line "
                                 "\"another scoring run (process N, since T) is writing OUTPUT\"; the first run's "
                                 "staging folder untouched; the first run completed, output identical to an "
                                 "uninterrupted run; no staging folder or lock file left")


# -- SIGKILL ----------------------------------------------------------------------------------------------
SCORE_POINTS = [
    {"target": "verticals.scoring.run:record_result", "call": 3, "when": "before"},     # part 3 written, no marker
    {"target": "verticals.scoring.output:AtomicParquet.commit", "call": 5, "when": "before"},  # mid part file
    {"target": "verticals.scoring.output:_merge_rejects", "call": 1, "when": "after"},  # finalising: rejects merged
    {"target": "verticals.scoring.output:_move_into_place", "call": 1, "when": "before"},  # manifest written
    {"target": "verticals.scoring.output:_fsync_dir", "call": 2, "when": "before"},     # renamed, not yet synced
]


def rerun(env, kind: str, source: Path, out: Path, version: int) -> tuple[int, str, str]:
    """Run again: ``verticals score`` in a new process; the flow in this process (as a retry would)."""
    if kind == "cli":
        return run(env, score_args(kind, source, out, version))
    import logging

    from verticals.errors import VerticalsError
    from verticals_flows.score import score_flow

    notes: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: notes.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("verticals.locking").addHandler(handler)
    try:
        score_flow(pipeline=PIPELINE, input=str(source), output=str(out), model=str(version), batch_size=100)
    except VerticalsError as exc:
        return 2, "", "\n".join([*notes, f"error: {exc}"])
    finally:
        logging.getLogger("verticals.locking").removeHandler(handler)
    return 0, "", "\n".join(notes)


def _kill_and_rerun(env, kind: str, source: Path, out: Path, version: int, reference: Path,
                    fault: dict | None, delay: float | None) -> dict:
    """Kill one run (at ``fault`` or after ``delay`` s), then rerun unless the output is already whole."""
    proc = launch(env, score_args(kind, source, out, version), fault=fault)
    if delay is not None:
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    rc, _, err = finish(proc)
    seen = {"point": fault["target"] if fault else f"t+{delay:.1f}s", "killed": rc == -signal.SIGKILL}
    if fault:
        assert rc == -signal.SIGKILL, f"{fault} was not reached (exit {rc}):\n{err[-3000:]}"
    lock = out.parent / f".{out.name}.lock"
    seen["stale_lock"] = lock.exists()
    if out.exists():  # killed after the final rename: the output must be whole, and a rerun refuses to clobber it
        seen["complete_before_rerun"] = True
        assert_same_output(out, reference)
        rc, _, err = rerun(env, kind, source, out, version)
        assert rc != 0 and "already exists" in error_line(err)
    else:
        rc, _, err = rerun(env, kind, source, out, version)
        assert rc == 0, f"rerun after a kill at {seen['point']} failed:\n{err[-3000:]}"
        if seen["stale_lock"] and seen["killed"]:
            assert f"taking over the lock left by process {proc.pid}" in err, err[-3000:]
            seen["took_over"] = True
        assert_same_output(out, reference)
    assert leftovers(out.parent, out) == [], leftovers(out.parent, out)
    return seen


def test_killed_score_reruns_to_the_uninterrupted_output(flows_env, trained, batch, reference, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    points = rng.sample(SCORE_POINTS, 2)
    delay = rng.uniform(2.0, 5.0)
    seen = [_kill_and_rerun(flows_env, "cli", batch, tmp_path / f"kill{i}", trained, reference, p, None)
            for i, p in enumerate(points)]
    seen.append(_kill_and_rerun(flows_env, "cli", batch, tmp_path / "kill-timed", trained, reference, None, delay))
    assert any(s.get("took_over") for s in seen), seen
    reliability_log.record("kill-score", "every kill: no output folder until complete (or, killed after the "
                                         "final rename, a complete one that a rerun refuses to overwrite); "
                                         "the rerun reuses committed parts and its output equals an "
                                         "uninterrupted run row for row, no row lost or duplicated")
    reliability_log.record("stale-lock", "left behind by the killed process; the next run takes it over with "
                                         "the note \"taking over the lock left by process N ... which did not "
                                         "release it\" and completes; no lock file remains")


@pytest.mark.prefect
def test_killed_score_flow_reruns_to_the_uninterrupted_output(prefect_api, flows_env, trained, batch, reference,
                                                              tmp_path: Path) -> None:
    rng = random.Random(SEED + 1)
    point = rng.choice(SCORE_POINTS[2:])  # finalising (partition points are covered by the CLI and test_score_flow)
    delay = rng.uniform(5.0, 9.0)
    _kill_and_rerun(flows_env, "flow", batch, tmp_path / "kill0", trained, reference, point, None)
    _kill_and_rerun(flows_env, "flow", batch, tmp_path / "kill-timed", trained, reference, None, delay)
    reliability_log.record("kill-score-flow", "as `verticals score`: no output until complete; the rerun of the "
                                              "flow resumes and equals an uninterrupted run row for row")


ENOSPC_REGISTER = {"target": "verticals.store:write_json_atomic", "call": 1, "action": "enospc"}  # the manifest
TRAIN_POINTS = [
    {"target": "verticals.report:write_report", "call": 1, "when": "after"},     # registering: report written
    {"target": "verticals.store:_hash_tree", "call": 1, "when": "after"},        # artifacts hashed
    {"target": "verticals.store:write_text_atomic", "call": 1, "when": "before"},  # manifest written, no digest
    {"target": "verticals.store:write_text_atomic", "call": 2, "when": "before"},  # renamed into place
]


def _train_args(home: Path) -> list[str]:
    return ["train", PIPELINE, "--epochs", "1", "--home", str(home), "--no-progress"]


def _versions(home: Path) -> list[int]:
    from verticals.store import ModelStore

    store = ModelStore(home)
    found = store.versions(PIPELINE) if (home / "models" / PIPELINE).exists() else []
    for mv in found:
        store.verify(mv)  # every visible version is complete and intact
    return [mv.version for mv in found]


@pytest.fixture(scope="module")
def trainings(flows_env, tmp_path_factory) -> tuple[Path, dict]:
    """One store, three events: a `verticals train` that runs out of space writing the manifest, one
    killed at a seeded point of its registration, then ten at once (with a Prefect API key in their
    environment). The tests below check what each left behind."""
    home = tmp_path_factory.mktemp("train") / "home"
    seen: dict = {}
    rc, _, err = run(flows_env, _train_args(home), fault=ENOSPC_REGISTER)
    seen["enospc"] = (rc, err, _versions(home))
    point = random.Random(SEED + 2).choice(TRAIN_POINTS)
    rc, _, err = run(flows_env, _train_args(home), fault=point)
    seen["kill"] = (point, rc, err, _versions(home))
    extra = {"PREFECT_API_KEY": SECRET, "VERTICALS_TORCH_THREADS": "1", "OMP_NUM_THREADS": "1"}
    procs = [launch(flows_env, _train_args(home), extra=extra) for _ in range(10)]
    seen["ten"] = [finish(p, timeout=600) for p in procs]
    seen["after"] = _versions(home)
    return home, seen


def test_disk_full_while_registering(trainings) -> None:
    _home, seen = trainings
    rc, err, versions = seen["enospc"]
    line = error_line(err)
    assert rc == 6 and line.startswith("error: no space left on the device") and "(fix: " in line, err[-3000:]
    assert "Traceback" not in err
    assert versions == []
    assert seen["after"][-1] >= 10  # later trainings in the same store succeeded
    reliability_log.record("enospc-register", "exit 6, one line \"error: no space left on the device; nothing "
                                              "was published (fix: ...)\", no traceback; no version visible; "
                                              "the next trainings register versions that verify")


def test_killed_training_never_leaves_a_half_registered_version(trainings) -> None:
    _home, seen = trainings
    point, rc, err, versions = seen["kill"]
    assert rc == -signal.SIGKILL, f"{point} was not reached (exit {rc}):\n{err[-3000:]}"
    renamed = point is TRAIN_POINTS[-1]
    assert versions == ([1] if renamed else []), (point, versions)  # _versions verified each one
    assert seen["after"] == list(range(1, len(versions) + 11)), "the next trainings got the next numbers"
    reliability_log.record("kill-train", "no version is visible until its folder is complete (killed before "
                                         "the rename: none appears; after it: a complete one that verifies); "
                                         "every visible version passes sha256 verification; the next "
                                         "trainings register the next numbers")


# -- disk full --------------------------------------------------------------------------------------------
def test_disk_full_while_scoring(flows_env, trained, batch, reference, tmp_path: Path) -> None:
    out = tmp_path / "scores"
    fault = {"target": "verticals.scoring.output:AtomicParquet.write", "call": 12, "action": "enospc"}
    rc, _, err = run(flows_env, score_args("cli", batch, out, trained), fault=fault)
    line = error_line(err)
    assert rc == 6 and line.startswith("error: no space left on the device") and "(fix: " in line, err[-3000:]
    assert "Traceback" not in err
    assert not out.exists(), "a run that ran out of space left an output that looks complete"
    rc, _, err = run(flows_env, score_args("cli", batch, out, trained))
    assert rc == 0, err[-3000:]
    assert_same_output(out, reference)
    reliability_log.record("enospc-score", "exit 6, one line \"error: no space left on the device; nothing "
                                           "was published (fix: ...)\", no traceback; no output folder; the "
                                           "rerun resumes and equals an uninterrupted run")


# -- concurrency and secrets ------------------------------------------------------------------------------
def test_ten_concurrent_trainings(trainings) -> None:
    from verticals.store import ModelStore

    home, seen = trainings
    for rc, _, err in seen["ten"]:
        assert rc == 0, err[-3000:]
    before = seen["kill"][3]
    versions = ModelStore(home).versions(PIPELINE)
    fresh = [v for v in versions if v.version not in before]
    assert [v.version for v in fresh] == list(range(len(before) + 1, len(before) + 11))
    assert len({v.path for v in fresh}) == 10
    for v in fresh:
        ModelStore(home).verify(v)
        assert v.manifest["version"] == v.version
    reliability_log.record("concurrent-train", "all ten exit 0; ten new versions with consecutive numbers, ten "
                                               "distinct folders, each manifest names its own number and passes "
                                               "sha256 verification")


def test_secrets_never_reach_outputs(trainings, flows_env, batch, tmp_path: Path) -> None:
    home, seen = trainings
    results = seen["ten"]
    out = tmp_path / "scores"
    rc, stdout, stderr = run(flows_env, ["score", PIPELINE, "-i", str(batch), "-o", str(out), "--home", str(home),
                                         "--no-progress", "--json"], extra={"PREFECT_API_KEY": SECRET})
    assert rc == 0, stderr[-3000:]
    texts = [stdout, stderr, *(o + e for _, o, e in results)]
    files = [p for root in (home, out) for p in root.rglob("*") if p.is_file()]
    assert len(files) > 20
    leaks = [str(p) for p in files if SECRET.encode() in p.read_bytes()]
    leaks += [f"output #{i}" for i, t in enumerate(texts) if SECRET in t]
    assert leaks == []
    reliability_log.record("secrets", "the key appears in none of the files written under the model store and "
                                      "the scoring output (manifests, reports, ONNX files, Parquet) nor in "
                                      "any command's stdout or stderr")
