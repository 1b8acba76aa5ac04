"""The train flow registers a model and, run again after a failure, reuses the stages that finished."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from flows_support import PIPELINE

pytestmark = [pytest.mark.slow, pytest.mark.prefect]


def _task_states(flow_run_id) -> dict[str, str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {run.name.rsplit("-", 1)[0]: run.state.name for run in runs}


def test_rerun_after_a_failed_export_resumes_from_the_fitted_model(prefect_api, flows_env, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from verticals import engine
    from verticals.store import ModelStore
    from verticals_flows.train import train_flow

    home = tmp_path / "home"
    params = dict(pipeline=PIPELINE, epochs=2, seed=7, variants=[], home=str(home))

    def exporter_crash(*args, **kwargs):
        raise RuntimeError("exporter crashed")

    with monkeypatch.context() as patch:
        patch.setattr(engine, "export", exporter_crash)
        failed = train_flow(**params, return_state=True)
    assert failed.is_failed() and "exporter crashed" in failed.message
    first = _task_states(failed.state_details.flow_run_id)
    assert first["fit"] == "Completed" and first["export"] == "Failed" and "register" not in first
    assert ModelStore(home).pipelines() == []

    resumed = train_flow(**params, return_state=True)
    assert resumed.is_completed(), resumed.message
    result = resumed.result()
    second = _task_states(resumed.state_details.flow_run_id)
    for stage in ("load", "validate", "split", "fit", "evaluate"):
        assert second[stage] == "Cached", (stage, second)
    for stage in ("export", "verify", "register"):
        assert second[stage] == "Completed", (stage, second)
    versions = ModelStore(home).versions(PIPELINE)
    assert [v.version for v in versions] == [1] and result["version"] == 1
    assert Path(result["report"]).is_file()
    assert versions[0].manifest["training"]["seed"] == 7 and versions[0].manifest["reference"]

    with get_client(sync_client=True) as client:
        found = {a.key: a for a in client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[resumed.state_details.flow_run_id])))}
    table = json.loads(found["verticals-train-testref-mlp-metrics"].data)
    assert [row["split"] for row in table] == ["train", "valid", "test"]
    assert table[2]["auc"] == pytest.approx(result["metrics"]["test"]["auc"], abs=1e-6)
    assert result["report"] in found["verticals-train-testref-mlp-report"].data
