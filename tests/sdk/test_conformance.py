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


def test_files_pipeline_conforms_with_rejects_and_side_outputs(verticals_home, verticals_plugins, tmp_path):
    """The files shape: undecodable images in the sample are rejected, not scored; heat maps are side
    outputs checked file by file; the same files scored as a folder give the same rows."""
    from verticals.testing.files import FilesPlugin

    verticals_plugins({"files": FilesPlugin(root=tmp_path / "images", images=90, corrupt=3)})
    report = check_pipeline("files.shapes", epochs=1, sample_rows=90)  # every file, the corrupt ones too
    assert report.rows_in == 90 and report.rows_scored == 87 and report.rows_rejected == 3
    assert {"side outputs", "deterministic scoring", "layout-independent scoring", "folder input",
            "one output per row"} <= set(report.checks)


def test_side_outputs_no_row_refers_to_are_caught(verticals_home, verticals_plugins, tmp_path):
    """A pipeline that writes a side output for a row and then leaves it out of the table fails the
    'side outputs' check (the file would sit in the output unreferenced)."""
    from verticals.testing.files import FilesPlugin, ShapesPipeline

    class Forgetful(ShapesPipeline):
        def postprocess(self, outputs, batch, extras):
            frame = super().postprocess(outputs, batch, extras)
            if getattr(extras, "writes_side_outputs", False) and frame.height:
                frame = frame.with_columns(frame["heatmap"].scatter(0, None))
            return frame

    class ForgetfulPlugin(FilesPlugin):
        @hookimpl
        def register_pipelines(self, register):
            register(Forgetful(size=self.size))

    verticals_plugins({"files": ForgetfulPlugin(root=tmp_path / "images", images=60)})
    with pytest.raises(ConformanceError, match=r"'side outputs' failed: 1 side-output file\(s\) no output row"):
        check_pipeline("files.shapes", epochs=1, sample_rows=60)
