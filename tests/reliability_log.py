"""What the reliability and security tests observed, rendered as ``docs/reliability.md``.

Each case below is checked by a test that, once its assertions pass, records the outcome it observed
(``record(case, outcome)``, worded from what actually happened: exit codes, counts, error text). When a
test session has recorded every case, ``tests/conftest.py`` renders the table and compares it with the
committed ``docs/reliability.md``: a difference fails the session (``VERTICALS_WRITE_RELIABILITY=1``
rewrites the file instead). So the document says what the suite saw, and goes stale loudly.
"""

from __future__ import annotations

from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "reliability.md"

# case id: (area, scenario, test that checks it)
CASES: dict[str, tuple[str, str, str]] = {
    "lock-cli-cli-same": ("Two runs, one output", "`verticals score` while `verticals score` writes the same output from the same input",
                          "tests/flows/test_reliability.py::test_second_run_into_one_output_is_refused"),
    "lock-flow-cli-different": ("Two runs, one output", "`verticals score` while the score flow writes the same output from another input",
                                "tests/flows/test_reliability.py::test_second_run_into_one_output_is_refused"),
    "lock-cli-flow-different": ("Two runs, one output", "the score flow while `verticals score` writes the same output from another input",
                                "tests/flows/test_reliability.py::test_second_run_into_one_output_is_refused"),
    "lock-flow-flow-same": ("Two runs, one output", "the score flow while the score flow writes the same output from the same input",
                            "tests/flows/test_reliability.py::test_second_run_into_one_output_is_refused"),
    "kill-score": ("SIGKILL, then rerun", "`verticals score` killed at two seeded points (of: a part's commit, its marker, the rejects merge, the manifest, the final rename) and at a seeded random time",
                   "tests/flows/test_reliability.py::test_killed_score_reruns_to_the_uninterrupted_output"),
    "kill-score-flow": ("SIGKILL, then rerun", "the score flow killed at a seeded point of its finalisation and at a seeded random time",
                        "tests/flows/test_reliability.py::test_killed_score_flow_reruns_to_the_uninterrupted_output"),
    "kill-train": ("SIGKILL, then rerun", "`verticals train` killed at a seeded point of its registration (report written, files hashed, manifest written, folder renamed)",
                   "tests/flows/test_reliability.py::test_killed_training_never_leaves_a_half_registered_version"),
    "stale-lock": ("SIGKILL, then rerun", "the lock file of a scoring run killed with SIGKILL",
                   "tests/flows/test_reliability.py::test_killed_score_reruns_to_the_uninterrupted_output"),
    "enospc-score": ("Disk full", "no space left while writing a part file of `verticals score`",
                     "tests/flows/test_reliability.py::test_disk_full_while_scoring"),
    "enospc-register": ("Disk full", "no space left while `verticals train` registers the version",
                        "tests/flows/test_reliability.py::test_disk_full_while_registering"),
    "concurrent-train": ("Concurrency", "ten `verticals train` of one pipeline at once",
                         "tests/flows/test_reliability.py::test_ten_concurrent_trainings"),
    "concurrent-promote": ("Concurrency", "eight processes promoting aliases of one pipeline at once, 25 times each",
                           "tests/core/test_store_integrity.py::test_concurrent_promotes_keep_aliases_json_valid"),
    "tamper-manifest": ("Model store integrity", "`extras.calibration` edited in a registered version's manifest.json",
                        "tests/core/test_store_integrity.py::test_edited_manifest_is_refused_at_load"),
    "tamper-extra-file": ("Model store integrity", "a file added to a registered version folder",
                          "tests/core/test_store_integrity.py::test_added_file_is_refused_at_load"),
    "names": ("Security", "names that become paths: `../x`, absolute paths, NUL, 300-character names, in the store, registry, scaffold and configs",
              "tests/core/test_security.py::test_unsafe_names_are_refused_everywhere"),
    "loaders": ("Security", "pickle, `torch.load` without `weights_only=True`, `eval`/`exec`, `yaml.load`, `marshal`/`shelve` in the code",
                "tests/core/test_security.py::test_no_code_executing_loaders"),
    "secrets": ("Security", "a Prefect API key in the environment during `verticals train` and `verticals score`",
                "tests/flows/test_reliability.py::test_secrets_never_reach_outputs"),
    "bad-input": ("Bad input", "every case of the reader table (Parquet, CSV: truncated, empty, wrong types, bad encoding, ...)",
                  "tests/core/test_reader_cases.py::test_reader_case"),
    "fuzz": ("Bad input", "seeded byte mutations of Parquet and CSV inputs",
             "tests/core/test_reader_properties.py::test_mutated_files_never_crash_the_run"),
}

_observed: dict[str, str] = {}


def record(case: str, outcome: str) -> None:
    """Note what the test of ``case`` observed (call it after the test's assertions passed)."""
    if case not in CASES:
        raise KeyError(f"unknown reliability case {case!r}; add it to tests/reliability_log.py CASES")
    _observed[case] = " ".join(outcome.split())


def complete() -> bool:
    return set(_observed) == set(CASES)


def render() -> str:
    lines = [
        "# Reliability and security: what is guaranteed, and how it is tested",
        "",
        "<!-- Generated by the test suite (tests/reliability_log.py); do not edit by hand. -->",
        "",
        "Each row is a fault or an attack the test suite inflicts on real processes, and the outcome it",
        "observed and asserted. The suite fails when this page no longer matches what it saw; rewrite it with",
        "`VERTICALS_WRITE_RELIABILITY=1 ./dev test`.",
        "",
    ]
    area = None
    for case, (where, scenario, test) in CASES.items():
        if where != area:
            area = where
            lines += ["", f"## {area}", "", "| case | scenario | observed outcome | test |", "|---|---|---|---|"]
        outcome = _observed.get(case, "(not run)").replace("|", "\\|")
        lines.append(f"| `{case}` | {scenario} | {outcome} | `{test}` |")
    return "\n".join(lines).replace("\n\n\n", "\n\n") + "\n"
