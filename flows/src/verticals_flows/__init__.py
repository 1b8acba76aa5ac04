"""Prefect flows for verticals: train, score and monitor pipelines, on schedules and on Dask."""
