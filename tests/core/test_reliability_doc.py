"""docs/reliability.md lists exactly the cases of tests/reliability_log.py, each naming a test that exists.

(Whether each row's outcome is still what the suite observes is checked at the end of every session
that runs all of them: tests/conftest.py.)"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import reliability_log

ROOT = Path(__file__).resolve().parents[2]


def test_reliability_doc_lists_every_case_once() -> None:
    text = reliability_log.DOC.read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([a-z0-9-]+)` \|", text, flags=re.M)
    assert rows == list(reliability_log.CASES), "regenerate with VERTICALS_WRITE_RELIABILITY=1 ./dev test"
    assert "(not run)" not in text


def test_every_case_names_a_test_that_exists() -> None:
    for case, (_area, _scenario, test) in reliability_log.CASES.items():
        path, _, name = test.partition("::")
        tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
        functions = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        assert name in functions, f"{case}: {test} does not exist"
        assert f'"{case}"' in (ROOT / path).read_text(encoding="utf-8"), \
            f"{case}: {path} never records it"
