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
