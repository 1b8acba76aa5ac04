"""Per machine, the latest risk from a ``failure_risk`` scoring output, and the machines without one.

A planner reads one line per machine: its last scored reading's risk, mode and alert, plus every machine
that got no score at all (too few readings for a window) with the reason from the scoring output's
``_no_output.parquet`` (every reason; the manifest lists only the largest).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

__all__ = ["latest_by_machine"]

_SHORT = re.compile(r"machine '(?P<machine>.*)' has (?P<n>\d+) valid reading\(s\), fewer than a window of (?P<w>\d+)")


def latest_by_machine(folder: Path | str) -> tuple[pl.DataFrame, list[dict[str, Any]]]:
    """``(latest, unscored)``: the last scored reading of every machine in the scoring output ``folder``
    (sorted by risk, highest first), and the machines with too few readings, from ``_manifest.json``.

    Raises:
        NotFoundError: ``folder`` holds no scoring output.
    """
    import polars as pl
    from verticals.errors import NotFoundError
    from verticals.scoring.output import NO_OUTPUT

    folder = Path(folder)
    parts = sorted(folder.glob("part-*.parquet"))
    manifest_path = folder / "_manifest.json"
    if not manifest_path.is_file():
        raise NotFoundError(f"{folder} is not a scoring output folder (no _manifest.json)",
                            hint="pass the folder given to `verticals score manufacturing.failure_risk`")
    manifest = json.loads(manifest_path.read_text())
    outputs = ["probability", "mode", "mode_probability", "alert"]
    if parts:
        names = list(pl.read_parquet_schema(parts[0]))
        # The scoring output holds the machine and time id columns first, then the outputs.
        ids = [c for c in names if c not in outputs and c != "model_version" and not c.startswith("_")][:2]
        missing = [c for c in outputs if c not in names]
        if len(ids) < 2 or missing:
            raise NotFoundError(f"{folder} is not a failure_risk scoring output (columns: {', '.join(names)})",
                                hint="pass the folder given to `verticals score` of a failure_risk pipeline")
        machine, time = ids
        latest = (pl.scan_parquet(parts).select(machine, time, *outputs).sort(machine, time)
                  .group_by(machine).last().collect().sort(["probability", machine], descending=[True, False]))
    else:
        latest = pl.DataFrame(schema={"machine_id": pl.String, "cycle": pl.Int64, "probability": pl.Float64,
                                      "mode": pl.String, "mode_probability": pl.Float64, "alert": pl.Boolean})
    # The manifest lists the largest reasons only; the side file has every one (one per short machine).
    reasons_file = folder / str(manifest.get("no_output_file") or NO_OUTPUT)
    if reasons_file.is_file():
        table = pl.read_parquet(reasons_file)
        reasons = dict(zip(table.get_column("reason").to_list(), table.get_column("rows").to_list(), strict=True))
    else:
        reasons = manifest.get("no_output_reasons") or {}
    unscored = []
    for reason, count in sorted(reasons.items()):
        match = _SHORT.fullmatch(reason)
        if match:
            unscored.append({"machine_id": match["machine"], "readings": int(match["n"]), "reason": reason,
                             "rows": int(count)})
    return latest, unscored
