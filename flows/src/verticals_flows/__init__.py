"""Prefect flows for verticals: train, score and monitor pipelines, on schedules and on Dask.

Importing this package is cheap (no Prefect): the flows live in :mod:`verticals_flows.train`,
:mod:`verticals_flows.score` and :mod:`verticals_flows.monitor`.
"""

from __future__ import annotations

from pathlib import Path

PREFECT_YAML = Path(__file__).with_name("prefect.yaml")
"""The Prefect project file declaring the standard deployments (``prefect deploy --all --prefect-file``)."""
