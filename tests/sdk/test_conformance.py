"""The plugin SDK's conformance suite runs a real pipeline end to end and catches a broken one."""

from __future__ import annotations

import pytest
from verticals import PluginError, hookimpl
from verticals.spec import OutputColumn
from verticals.testing.conformance import ConformanceError, check_pipeline
from verticals.testing.reference import ReferencePipeline, ReferencePlugin


def test_reference_pipeline_conforms(verticals_home, verticals_plugins):
    verticals_plugins({"reference": ReferencePlugin(rows=1200)})
    report = check_pipeline("reference.mlp", epochs=1, sample_rows=300)
    assert report.rows_in == 300 == report.rows_scored + report.rows_rejected
    assert report.parity["passed"] and report.parity["max_abs_diff"] < 1e-4
    assert {"manifest", "parity", "integrity", "row accounting", "output columns",
            "deterministic scoring"} <= set(report.checks)


class _MissingColumn(ReferencePipeline):
    """Declares an output column its postprocess never produces."""

    output_columns = (*ReferencePipeline.output_columns, OutputColumn("band", "string"))


class _BrokenPlugin(ReferencePlugin):
    @hookimpl
    def register_pipelines(self, register):
        register(_MissingColumn())


def test_conformance_names_the_broken_check(verticals_home, verticals_plugins):
    verticals_plugins({"broken": _BrokenPlugin(rows=1200)})
    # The engine refuses the pipeline at evaluation, before anything is registered.
    with pytest.raises((ConformanceError, PluginError), match=r"output column\(s\) 'band'"):
        check_pipeline("broken.mlp", epochs=1, sample_rows=200)
    from verticals.store import ModelStore

    store = ModelStore()
    assert [v for p in store.pipelines() for v in store.versions(p)] == []
