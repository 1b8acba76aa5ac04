"""``verticals new-plugin``: write a plugin distribution whose own tests pass on the first run.

The generated plugin registers a dataset (a seeded generator with a documented rule, to be replaced by
the author's loader), a model and a pipeline, and ships a test that runs the SDK conformance suite
(:func:`verticals.testing.conformance.check_pipeline`) against it without installing anything.
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path

from verticals.errors import UserError

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

PYPROJECT = '''[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "verticals-{dist}"
version = "0.1.0"
description = "{title} pipelines for verticals"
requires-python = ">=3.11"
# The core versions this plugin supports: verticals refuses the plugin under any other.
dependencies = ["verticals{core_range}"]

# This line is what makes verticals find the plugin.
[project.entry-points.verticals]
{name} = "verticals_{name}.plugin"

[tool.setuptools.packages.find]
where = ["src"]
'''

PLUGIN = '''"""verticals-{dist}: {title} pipelines.

Replace the generated dataset with your own loader (a function returning a polars LazyFrame) and
adjust the schema's columns and rules; run ``pytest`` after each change.
"""

from __future__ import annotations

from verticals import (
    Column,
    DatasetSpec,
    ModelSpec,
    OutputColumn,
    Pipeline,
    Schema,
    SplitSpec,
    TrainingConfig,
    hookimpl,
)

#: The core versions this plugin supports (keep in step with the dependency in pyproject.toml);
#: verticals refuses the plugin at discovery, with this range in the message, under any other core.
VERTICALS_REQUIRES = "{core_range}"

SCHEMA = Schema((
    Column("customer_id", "int", "id"),
    Column("tenure_months", "float", min=0, max=600, description="months as a customer"),
    Column("monthly_spend", "float", min=0, on_missing="flag"),
    Column("plan", "category", description="subscription plan"),
    Column("churned", "int", "target", categories=("0", "1")),
))


def load_example():
    """Generated example data (rule: churn odds fall with tenure, rise with spend; plan 'basic' +0.5 logit)."""
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(7)
    n = 3000
    tenure = rng.gamma(2.0, 12.0, n)
    spend = rng.normal(60, 20, n).clip(5, None)
    plan = rng.choice(["basic", "plus", "pro"], n)
    logit = -0.05 * tenure + 0.02 * (spend - 60) + 0.5 * (plan == "basic") - 0.3
    churned = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pl.LazyFrame({{"customer_id": np.arange(n), "tenure_months": tenure, "monthly_spend": spend,
                         "plan": plan, "churned": churned}})


def mlp(info, hidden=32):
    """A small MLP over the numeric inputs and one embedding per category (torch imported lazily)."""
    import torch
    from torch import nn

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.embeddings = nn.ModuleList(nn.Embedding(card, 4) for card in info["cardinalities"])
            width = len(info["numeric"]) + 4 * len(info["cardinalities"])
            self.net = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, 1))

        def forward(self, x_num, x_cat):
            parts = [x_num] + [emb(x_cat[:, i]) for i, emb in enumerate(self.embeddings)]
            return self.net(torch.cat(parts, dim=1)).squeeze(1)

    return Model()


class {cls}Pipeline(Pipeline):
    name = "{pipeline}"
    description = "{title}: probability of the positive class"
    dataset = "example"
    model = "mlp"
    task = "binary"
    score_column = "score"
    output_columns = (OutputColumn("score", "float", "probability of churn"),)
    training = TrainingConfig(epochs=10, batch_size=256, patience=3)


@hookimpl
def register_datasets(register):
    register(DatasetSpec(name="example", loader=load_example, schema=SCHEMA, split=SplitSpec("stratified"),
                         description="generated example data", source="generator: load_example"))


@hookimpl
def register_models(register):
    register(ModelSpec(name="mlp", factory=mlp, outputs=("logits",)))


@hookimpl
def register_pipelines(register):
    register({cls}Pipeline())
'''

TEST = '''"""Runs the verticals conformance suite against this plugin, without installing it."""

from verticals.testing.conformance import check_pipeline

from verticals_{name} import plugin


def test_plugin_registers(verticals_plugins):
    registry = verticals_plugins({{"{name}": plugin}})
    assert "{name}.{pipeline}" in registry.pipelines
    assert not [p.errors for p in registry.plugins if p.errors]


def test_pipeline_conforms(verticals_home, verticals_plugins):
    verticals_plugins({{"{name}": plugin}})
    report = check_pipeline("{name}.{pipeline}", epochs=2, sample_rows=300)
    assert report.rows_in == 300
'''

CONFTEST = '''import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
'''

README = '''# verticals-{dist}

{title} pipelines for [verticals](https://github.com/verticals). Generated by `verticals new-plugin`.

```bash
pip install -e .           # verticals discovers it through the entry-point group `verticals`
verticals plugins          # shows {name}
verticals train {name}.{pipeline}
pytest                     # runs the conformance suite against the plugin
```
'''


def create_plugin(name: str, directory: Path | str = ".", *, pipeline: str = "churn") -> Path:
    """Write ``verticals-<name>/`` under ``directory`` and return its path."""
    from verticals import __version__
    from verticals.compat import compatible_range

    if not _NAME.match(name) or keyword.iskeyword(name):
        raise UserError(f"invalid plugin name {name!r}",
                        hint="use lowercase letters, digits and underscores, starting with a letter")
    if not _NAME.match(pipeline):
        raise UserError(f"invalid pipeline name {pipeline!r}", hint="use lowercase letters, digits and underscores")
    dist = name.replace("_", "-")
    root = Path(directory) / f"verticals-{dist}"
    if root.exists():
        raise UserError(f"{root} already exists", hint="choose another name or directory")
    values = {"name": name, "dist": dist, "title": name.replace("_", " ").title(), "pipeline": pipeline,
              "cls": "".join(part.title() for part in name.split("_")),
              "core_range": compatible_range(__version__.split("+")[0])}
    files = {
        "pyproject.toml": PYPROJECT,
        f"src/verticals_{name}/__init__.py": '"""verticals-{dist}."""\n',
        f"src/verticals_{name}/plugin.py": PLUGIN,
        "tests/conftest.py": CONFTEST,
        "tests/test_plugin.py": TEST,
        "README.md": README,
    }
    for rel, template in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.format(**values))
    return root
