"""The monitor flow: PSI per feature and for the score, and a run a Prefect user sees marked on drift."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from flows_support import PIPELINE, write_batch
from verticals.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.prefect]


def test_stable_batch_completes_and_shifted_batch_is_marked_drifted(prefect_api, flows_env, trained, batch,
                                                                     tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from prefect.client.orchestration import get_client
    from verticals.errors import UserError
    from verticals.scoring import score
    from verticals_flows.errors import DriftDetected
    from verticals_flows.monitor import monitor_flow

    score(PIPELINE, batch, tmp_path / "stable", progress=False)
    shifted = write_batch(tmp_path / "shifted.parquet", shift=25.0)
    score(PIPELINE, shifted, tmp_path / "shifted-scores", progress=False)

    stable = monitor_flow(pipeline=PIPELINE, scores=str(tmp_path / "stable"), report=str(tmp_path / "a.json"),
                          return_state=True)
    assert stable.is_completed() and stable.name == "Completed"
    result = stable.result()
    assert result["drifted"] == [] and result["rows_compared"] == 4000 - 5
    assert [r["feature"] for r in result["rows"]][-1] == "score"
    assert json.loads((tmp_path / "a.json").read_text())["rows"] == result["rows"]

    drifted = monitor_flow(pipeline=PIPELINE, scores=str(tmp_path / "shifted-scores"),
                           report=str(tmp_path / "b.json"), return_state=True)
    assert drifted.is_failed() and drifted.name == "Drifted" and "f02" in drifted.message
    with pytest.raises(DriftDetected):
        drifted.result()
    table = {r["feature"]: r for r in json.loads((tmp_path / "b.json").read_text())["rows"]}
    assert table["f02"]["status"] == "significant" and table["f02"]["psi"] >= 0.25
    assert table["f03"]["status"] == "stable"
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(drifted.state_details.flow_run_id)
        assert "drift" in run.tags and run.state.name == "Drifted"
        artifacts = client.read_artifacts()
    drift_tables = [a for a in artifacts if a.key == "verticals-monitor-testref-mlp-drift"
                    and a.flow_run_id == drifted.state_details.flow_run_id]
    assert drift_tables and any(r["feature"] == "f02" and r["status"] == "significant"
                                for r in json.loads(drift_tables[0].data))

    # Scores and input from different batches are refused rather than compared.
    small = write_batch(tmp_path / "small.parquet", rows=1000)
    with pytest.raises(UserError, match="valid rows but"):
        monitor_flow(pipeline=PIPELINE, scores=str(tmp_path / "stable"), input=str(small))

    # The CLI prints the table and exits with code 6 on drift.
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["run", "monitor", PIPELINE, "--scores", str(tmp_path / "shifted-scores"), "--report",
              str(tmp_path / "c.json")])
    assert exc.value.code == 6
    captured = capsys.readouterr()
    assert "significant" in captured.out and "error: drift in f02" in captured.err
