"""The monitor flow: has the population a model scores drifted from the one it was trained on?

Inputs are the batch that was scored and the folder ``verticals score`` (or the score flow) wrote for
it. No rescoring: the scores are read from the output's part files, and the batch's rows are read and
validated exactly as scoring did (same schema, vocabularies and rules, partition by partition), so the
features compared are the ones the model saw. PSI compares distributions, not rows, so no join is
needed; instead the flow checks that the valid rows it finds number exactly the output's
``rows_scored`` and refuses a mismatched pair (a scores folder from another input).

The reference is the model's training profile (manifest key ``reference``, written at registration
by :func:`verticals.drift.profile`); by default the model version that scored the batch, as recorded
in ``_manifest.json``. PSI per feature and for the score come from :class:`verticals.drift.DriftCounter`:
below 0.1 *stable*, 0.1 up to 0.25 *moderate*, 0.25 and above *significant*.

Marking the run: when any PSI is significant the flow run ends in a state named **Drifted** (type
Failed, so it shows red in the UI, counts as failed for notifications and automations, and raises
:class:`~verticals_flows.errors.DriftDetected` for a Python caller; type Completed with
``fail_on_drift=False``) and gets the tag ``drift``. Either way it publishes the drift table and a
verdict as artifacts and writes the table as JSON (``report``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task

from verticals_flows import artifacts, crashed
from verticals_flows.config import FLOW_NAMES
from verticals_flows.paths import dated

DRIFT_TAG = "drift"


def default_report(pipeline: str, home: Path | str | None = None) -> Path:
    """``<store home>/monitoring/<pipeline>/drift-<UTC time>.json``: where a run's drift table goes."""
    from verticals.names import QUALIFIED, check_name
    from verticals.store import ModelStore

    check_name(pipeline, what="pipeline name", pattern=QUALIFIED, max_len=200)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return ModelStore(home).home / "monitoring" / pipeline / f"drift-{stamp}.json"


def read_scores(scores: Path) -> dict[str, Any]:
    """The scoring output's ``_manifest.json``; a user error when the folder is not a finished output."""
    from verticals.errors import NotFoundError

    try:
        return json.loads((scores / "_manifest.json").read_text())
    except (OSError, ValueError):
        raise NotFoundError(f"{scores} is not a finished scoring output (no readable _manifest.json)",
                            hint="pass the folder `verticals score` or `verticals run score` wrote") from None


@task(name="measure-drift")
def measure_drift(pipeline: str, version: int, input: str, scores: str, column: str | None,
                  home: str | None) -> tuple[list[dict[str, Any]], int]:
    """PSI per feature and for the score, streamed: the batch's rows are read and validated as scoring
    reads and validates them, partition by partition, and counted into the reference's buckets, so
    memory does not grow with the batch. Returns the drift table and the number of valid rows.

    The score is compared only when the score column holds one number per row (a top-k list is not
    profiled at training either); list outputs the reference profiled (recommended items) are compared
    by the shares of the values they hold, with coverage and concentration next to the training figures."""
    import pyarrow.parquet as pq
    from verticals.data.validation import validate
    from verticals.drift import DriftCounter
    from verticals.scoring import ScoringSession, plan_partitions
    from verticals.scoring.partitions import read_partition

    with ScoringSession.open(pipeline, version, "cpu", home=home) as session:
        counter = DriftCounter(session.version.manifest.get("reference") or {})
        for partition in plan_partitions(Path(input)):
            offset = partition.row_offset
            for frame in read_partition(partition, session.schema, session.batch_size):
                result = validate(frame, session.schema, stage="score", source=str(partition.source),
                                  row_offset=offset, vocabularies=session.vocabularies)
                counter.add(result.valid)
                offset += frame.height
    if column:
        for part in sorted(Path(scores).glob("part-*.parquet")):
            table = pq.read_table(part, columns=[column])
            values = table.column(column)
            if not (values.type.num_fields == 0 and str(values.type) in {"double", "float", "int64", "int32"}):
                break
            counter.add(scores=values.to_numpy(zero_copy_only=False).astype("float64"))
    # List outputs (top-k items) are compared by the shares of the values they recommend.
    listed = sorted(counter.lists)
    for part in sorted(Path(scores).glob("part-*.parquet")) if listed else []:
        import polars as pl

        present = [c for c in listed if c in pl.read_parquet_schema(part)]
        counter.add(outputs=pl.read_parquet(part, columns=present))
    return counter.result(), counter.rows


def _tag_run(tag: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run.id)
        client.update_flow_run(flow_run.id, tags=sorted({*(run.tags or []), tag}))


@flow(name=FLOW_NAMES["monitor"], flow_run_name="monitor-{pipeline}", validate_parameters=True)
def monitor_flow(pipeline: str, scores: str, input: str | None = None, model: str | None = None,
                 report: str | None = None, fail_on_drift: bool = True, home: str | None = None) -> Any:
    """Compare a scored batch's feature and score distributions with the model's training reference.

    Args:
        pipeline: pipeline name.
        scores: the scoring output folder of the batch (``{date}``: the run's scheduled date).
        input: the batch that was scored (default: the input recorded in the output's manifest).
        model: the version whose reference to use (default: the version that scored the batch).
        report: where to write the drift table as JSON (default under ``<home>/monitoring``).
        fail_on_drift: end in the failed state ``Drifted`` when a PSI reaches 0.25 (else Completed,
            still named ``Drifted``).
        home: the model store's root (``$VERTICALS_HOME`` when not given).

    Returns:
        ``pipeline``, ``model``, ``rows`` (the drift table), ``drifted`` (features), ``thresholds``,
        ``report`` (file), ``rows_compared``.
    """
    from prefect.states import Completed, Failed
    from verticals import drift
    from verticals.errors import NotFoundError, UserError
    from verticals.registry import get_registry
    from verticals.store import ModelStore

    from verticals_flows.errors import DriftDetected

    logger = get_run_logger()
    with crashed.guarded("monitor", logger):  # a run of this flow that died shows as Crashed
        name = get_registry().pipeline(pipeline).qualified_name
        out = dated(scores)
        scored = read_scores(out)
        if scored.get("pipeline") != name:
            raise UserError(f"{out} was scored by pipeline {scored.get('pipeline')!r}, not {name!r}",
                            hint="pass the pipeline that produced the scores")
        source = Path(input).expanduser().absolute() if input else Path(str(scored.get("input")))
        version = ModelStore(home).resolve(name, model if model is not None else scored.get("model_version"))
        reference = version.manifest.get("reference")
        if not reference:
            raise NotFoundError(f"{version.label} has no training reference profile in its manifest",
                                hint=f"retrain it with `verticals run train {name}`")
        column = version.manifest.get("score_column") or get_registry().pipeline(name).score_column
        rows, valid = measure_drift(name, version.version, str(source), str(out), column, home)
        # Valid rows are those scoring scored, plus any the preprocessor rejected after validation.
        low = int(scored.get("rows_scored") or 0)
        if not low <= valid <= low + int(scored.get("rows_rejected") or 0):
            raise UserError(f"{source} has {valid} valid rows but {out} scored {scored.get('rows_scored')}",
                            hint="pass the input that was scored into this output folder")
        drifted = [r["feature"] for r in rows if r["status"] == "significant"]
        thresholds = {"moderate": drift.PSI_MODERATE, "significant": drift.PSI_SIGNIFICANT}
        target = Path(report).expanduser().absolute() if report else default_report(name, home)
        result = {"pipeline": name, "model": version.label, "model_version": version.version,
                  "input": str(source), "scores": str(out), "rows_compared": valid,
                  "rows": [{**r, "psi": None if r["psi"] != r["psi"] else round(float(r["psi"]), 6)} for r in rows],
                  "drifted": drifted, "thresholds": thresholds, "report": str(target)}
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(result, indent=2) + "\n")
        artifacts.drift_report(name, version.label, result["rows"], drifted, thresholds, out, target)
        if not drifted:
            logger.info("%s: no drift over %d rows (max PSI %.4f); table in %s", name, valid,
                        max((r["psi"] or 0.0) for r in result["rows"]) if rows else 0.0, target)
            return result
        message = (f"drift in {', '.join(drifted)} of {name}: PSI ≥ {drift.PSI_SIGNIFICANT} against the training "
                   f"reference of {version.label}")
        logger.warning("%s; table in %s", message, target)
        _tag_run(DRIFT_TAG)
        if fail_on_drift:
            return Failed(name="Drifted", message=message,
                          data=DriftDetected(message, hint=f"see {target}; retrain if the shift is real"))
        return Completed(name="Drifted", message=message, data=result)
