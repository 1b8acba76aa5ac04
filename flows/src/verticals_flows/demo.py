"""The end-to-end demo, through the Prefect flows: ``python -m verticals_flows.demo`` (``./dev demo``).

1. **train** ``finance.credit_risk`` with the train flow (load → validate → split → fit → evaluate →
   export → verify → register; a second demo run reuses the finished stages);
2. write this month's applicants: the dataset's rows without the target, with loan amounts up 30 %
   and a few broken rows (a negative amount, a missing loan term, an unknown value), as Parquet in
   several row groups;
3. **score** them with the score flow (one task per row group, rejects with reasons);
4. **monitor** the scored batch against the training population (PSI per feature and for the score);
5. print where the report, the scores and the drift table are, and where to see the runs.

Everything goes to a demo folder: ``$VERTICALS_HOME/demo`` when ``VERTICALS_HOME`` is set (the model
store stays there), else ``./.verticals/demo`` (which then also holds the model store). Prefect runs on
``PREFECT_API_URL`` when set, else on its temporary local API with the runs recorded in
``$PREFECT_HOME/prefect.db``, which ``verticals server start`` shows in the UI. Running it again is
safe: outputs are replaced, the model store gets one more version.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

PIPELINE = "finance.credit_risk"


def demo_folders(folder: str | None = None) -> tuple[Path, Path]:
    """(demo folder, model store home) as described in the module docstring."""
    if folder:
        root = Path(folder).expanduser().absolute()
        return root, Path(os.environ.get("VERTICALS_HOME") or root).expanduser().absolute()
    if os.environ.get("VERTICALS_HOME"):
        home = Path(os.environ["VERTICALS_HOME"]).expanduser().absolute()
        return home / "demo", home
    root = Path(".verticals", "demo").absolute()
    return root, root


def write_batch(pipeline: str, path: Path, *, shift: dict[str, float], row_groups: int = 4) -> dict[str, Any]:
    """The pipeline's dataset without its target, with ``shift`` applied and broken rows the schema rejects.

    The broken rows are chosen from the schema's own rules (a value below the minimum of a column that
    rejects out-of-range values, a missing value in a column that rejects missing ones, an unknown
    category where unknown values are rejected), so every reject has a reason a user can read.
    """
    import polars as pl
    from verticals.registry import get_registry

    registry = get_registry()
    dataset = registry.dataset_of(registry.pipeline(pipeline))
    raw = dataset.loader()
    frame = raw.collect() if isinstance(raw, pl.LazyFrame) else raw
    schema = dataset.schema
    target = schema.target.name if schema.target else None
    frame = frame.drop([c for c in frame.columns if c == target or c not in schema])
    for column, factor in shift.items():
        if column in frame.columns:
            frame = frame.with_columns(pl.col(column) * factor)
    broken: list[str] = []
    for column in (c for c in schema.features if c.name in frame.columns):
        row = 10 + 7 * len(broken)
        if column.dtype == "float" and column.min is not None and column.on_out_of_range == "reject":
            value: Any = column.min - 100.0
        elif column.on_missing == "reject":
            value = None
        elif column.dtype == "category" and column.on_unknown == "reject" and column.categories:
            value = "unheard-of"
        else:
            continue
        dtype = frame.schema[column.name]
        frame = frame.with_columns(
            pl.when(pl.int_range(pl.len()) == row).then(pl.lit(value, dtype=dtype)).otherwise(pl.col(column.name))
            .alias(column.name))
        broken.append(f"row {row}: {column.name} = {value!r}")
        if len(broken) >= 4:
            break
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path, row_group_size=max(1, -(-frame.height // row_groups)))
    return {"rows": frame.height, "broken": broken, "shift": {k: v for k, v in shift.items() if k in frame.columns}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m verticals_flows.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--folder", help="demo folder (default $VERTICALS_HOME/demo or ./.verticals/demo)")
    parser.add_argument("--pipeline", default=PIPELINE, help=f"pipeline to demo (default {PIPELINE})")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: the pipeline's)")
    parser.add_argument("--shift", default="amount=1.3",
                        help="COLUMN=FACTOR applied to the scored batch to show drift ('' for none)")
    args = parser.parse_args(argv)

    root, home = demo_folders(args.folder)
    os.environ["VERTICALS_HOME"] = str(home)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from verticals_flows.config import prefect_defaults

    prefect_defaults()
    shift = dict((k, float(v)) for k, _, v in (p.partition("=") for p in args.shift.split(",") if p))
    root.mkdir(parents=True, exist_ok=True)

    from verticals.errors import VerticalsError

    from verticals_flows.errors import DriftDetected
    from verticals_flows.monitor import monitor_flow
    from verticals_flows.score import score_flow
    from verticals_flows.train import train_flow

    try:
        print(f"[demo] 1/4 training {args.pipeline} through the train flow (model store {home})", flush=True)
        trained = train_flow(pipeline=args.pipeline, epochs=args.epochs)
        batch = root / "batch" / "applicants.parquet"
        made = write_batch(args.pipeline, batch, shift=shift)
        print(f"[demo] 2/4 wrote {made['rows']} applicants to {batch} (shifted {made['shift'] or 'nothing'}; "
              f"broken rows: {'; '.join(made['broken']) or 'none'})", flush=True)
        scores = root / "scores"
        print(f"[demo] 3/4 scoring through the score flow into {scores}", flush=True)
        manifest = score_flow(pipeline=args.pipeline, input=str(batch), output=str(scores), overwrite=True)
        drift_file = root / "drift.json"
        print("[demo] 4/4 monitoring the scored batch against the training population", flush=True)
        state = monitor_flow(pipeline=args.pipeline, scores=str(scores), report=str(drift_file), return_state=True)
        try:
            monitored = state.result()
            verdict = "no significant drift"
        except DriftDetected as exc:
            monitored = None
            verdict = f"run marked 'Drifted': {exc.message}"
    except VerticalsError as exc:
        print(f"[demo] error: {exc}", file=sys.stderr)
        return exc.exit_code

    import json

    table = monitored["rows"] if monitored else json.loads(drift_file.read_text())["rows"]
    api = os.environ.get("PREFECT_API_URL", "")
    ui = api[:-4] if api.endswith("/api") else "http://127.0.0.1:4200 (after `verticals server start`)"
    print()
    print(f"model      {trained['pipeline']} v{trained['version']}  test "
          + ", ".join(f"{k}={v:.3f}" for k, v in list(trained["metrics"]["test"].items())[:4]))
    print(f"report     {trained['report']}")
    print(f"scores     {scores}  ({manifest['rows_scored']} scored, {manifest['rows_rejected']} rejected "
          f"with reasons in {scores / '_rejects.parquet'})")
    print(f"drift      {drift_file}  ({verdict})")
    for row in table:
        if row["status"] != "stable":
            print(f"           {row['feature']}: PSI {row['psi']:.3f} ({row['status']})")
    print(f"Prefect UI {ui}: flow runs verticals-train, verticals-score, verticals-monitor with their artifacts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
