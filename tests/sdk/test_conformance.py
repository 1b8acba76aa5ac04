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
    assert report.checks == ["manifest", "parity", "metrics", "integrity", "row accounting", "rows in",
                             "output columns", "output rows", "one output per row", "deterministic scoring",
                             "layout-independent scoring"]


class _MissingColumn(ReferencePipeline):
    """Declares an output column its postprocess never produces."""

    output_columns = (*ReferencePipeline.output_columns, OutputColumn("band", "string"))


class _BrokenPlugin(ReferencePlugin):
    @hookimpl
    def register_pipelines(self, register):
        register(_MissingColumn())


def test_conformance_names_the_broken_check(verticals_home, verticals_plugins):
    verticals_plugins({"broken": _BrokenPlugin(rows=1200)})
    # The engine refuses the pipeline at evaluation, before anything is registered (the kit never runs).
    with pytest.raises(PluginError, match=r"output column\(s\) 'band'"):
        check_pipeline("broken.mlp", epochs=1, sample_rows=200)
    from verticals.store import ModelStore

    store = ModelStore()
    assert [v for p in store.pipelines() for v in store.versions(p)] == []


class _Noisy(ReferencePipeline):
    """Scores that change from one run to the next: the engine cannot tell, the kit must."""

    def postprocess(self, outputs, batch, extras):
        import numpy as np

        frame = super().postprocess(outputs, batch, extras)
        noise = np.random.default_rng().uniform(0, 1e-3, frame.height)
        return frame.with_columns((frame["score"] + noise).alias("score"))


class _NoisyPlugin(ReferencePlugin):
    @hookimpl
    def register_pipelines(self, register):
        register(_Noisy())


def test_conformance_catches_what_the_engine_lets_through(verticals_home, verticals_plugins):
    """Training and registration succeed; the kit's own check fails, naming itself and the fix."""
    verticals_plugins({"noisy": _NoisyPlugin(rows=1200)})
    with pytest.raises(ConformanceError, match="conformance check 'deterministic scoring' failed") as info:
        check_pipeline("noisy.mlp", epochs=1, sample_rows=200)
    assert "postprocess must not depend on randomness" in str(info.value)
    from verticals.store import ModelStore

    assert [v.version for v in ModelStore().versions("noisy.mlp")] == [1]  # the engine registered it
