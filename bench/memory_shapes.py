"""The scoring-memory benchmark's inputs and models for the image, user and window shapes.

``score_bench.py memory --shape files|ranking|windows`` measures these exactly as it measures the
tabular shape (one measurement method): each size is scored by ``verticals.scoring.score`` in a fresh
process, and the peak is that process's ``VmHWM``. This module holds what differs per shape:

* ``files``: the files reference pipeline (``verticals.testing.files``: a small CNN on 32×32 letterboxed
  PNGs, heat-map side outputs), scoring a folder of ``n`` generated images (``make_images``);
* ``ranking``: the ranking reference pipeline (``verticals.testing.ranking``: item embeddings, top-10 in
  the graph), scoring an event log of ``n`` interactions, 10 per user, the users interleaved over the
  whole file in time order (so the core must group it: ``n / 10`` users, one output row each);
* ``retail``: the retail plugin's ``movielens`` pipeline trained on the same generated log as
  ``ranking`` (300 users), scoring the same inputs;
* ``manufacturing``: the manufacturing plugin's ``failure_risk`` (trained on its 36-machine test fleet),
  scoring blocks of 500 machines of its own fleet generator (~270 readings each);
* ``windows``: the telemetry reference pipeline (``verticals.testing.windows``: a Conv1d over windows of
  16 readings), scoring ``n`` readings of ``n / 1000`` machines, 1,000 readings each, the machines
  interleaved in time order (one output row per reading after a machine's first 15).

The number of rows per group is fixed and the number of groups grows with the input, so anything the
core keeps per group (or per row) shows up as growth. Models are trained briefly by the engine (their
weights do not change memory); inputs are generated vectorised in row groups, so the parent process never
holds a whole input. Nothing here is committed data: everything is written under ``--out``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from verticals.hookspecs import hookimpl

READINGS_PER_MACHINE = 1000
INTERACTIONS_PER_USER = 10
CHUNK_ROWS = 131_072


@dataclass(frozen=True)
class Shape:
    """One shape of the memory benchmark: its plugin, its pipeline, how to train it and make inputs."""

    name: str
    pipeline: str
    plugin: Callable[[Path], tuple[str, Any]]
    """``plugin(out)`` → (plugin name, plugin object) as ``use_plugins`` takes them."""
    make_input: Callable[[Path, int, Any], Path]
    """``make_input(out, n, version)`` → the input to score (a file or a folder), written once."""
    unit: str
    sizes: str


def _log(msg: str) -> None:
    import sys

    print(msg, file=sys.stderr, flush=True)


# -- models ----------------------------------------------------------------------------------------------------
def train(shape: Shape, out: Path, home: Path) -> Any:
    """The model version the benchmark scores with: trained once by the engine into ``home``."""
    from verticals.engine import train as engine_train
    from verticals.store import ModelStore
    from verticals.testing import use_plugins

    store = ModelStore(home)
    if shape.pipeline in store.pipelines() and store.versions(shape.pipeline):
        return store.versions(shape.pipeline)[-1]
    name, plugin = shape.plugin(out)
    t0 = time.perf_counter()
    with use_plugins({name: plugin}):
        engine_train(shape.pipeline, home=home, epochs=1, progress=False, variants=())
    _log(f"trained {shape.pipeline} (1 epoch) in {time.perf_counter() - t0:.0f} s")
    return store.versions(shape.pipeline)[-1]


def _files_plugin(out: Path) -> tuple[str, Any]:
    from verticals.testing.files import FilesPlugin

    return "files", FilesPlugin(root=out / "files-train", images=300, seed=0)


def _ranking_plugin(out: Path) -> tuple[str, Any]:
    from verticals.testing.ranking import RankingPlugin

    return "ranking", RankingPlugin(users=400, seed=0)


def _retail_plugin(out: Path) -> tuple[str, Any]:
    """The retail plugin (a real one: EASE / item-kNN / popularity baselines, known histories, catalogue
    titles) on the reference interaction log of 300 users, as its own tests train it."""
    from verticals.testing.ranking import make_interactions
    from verticals_retail.plugin import RetailPlugin

    frame = make_interactions(300, seed=0)
    return "retail", RetailPlugin(lambda: frame.lazy(), description="generated interactions", source="bench",
                                  top_k=30, ease_lambdas=(10.0, 100.0))


class _ManufacturingPlugin:
    """The manufacturing plugin with its generated datasets at test size (a 36-machine fleet)."""

    @hookimpl
    def register_datasets(self, register: Any) -> None:
        from verticals_manufacturing import datasets

        register(datasets.ai4i_dataset(3000, seed=0))
        register(datasets.fleet_dataset(36, seed=0))

    @hookimpl
    def register_models(self, register: Any) -> None:
        import verticals_manufacturing.plugin as plugin

        plugin.register_models(register)

    @hookimpl
    def register_pipelines(self, register: Any) -> None:
        import verticals_manufacturing.plugin as plugin

        plugin.register_pipelines(register)


def _manufacturing_plugin(out: Path) -> tuple[str, Any]:
    return "manufacturing", _ManufacturingPlugin()


def _fleet_input(out: Path, n: int, version: Any) -> Path:
    """About ``n`` readings of the manufacturing fleet generator (``generate_fleet``, ~270 cycles per
    machine), 500 machines per row group, machines interleaved by cycle within it; labels dropped."""
    import polars as pl
    from verticals_manufacturing.fleet import generate_fleet

    per = generate_fleet(500, seed=0).height
    blocks = max(1, round(n / per))

    def chunks() -> Any:
        for b in range(blocks):
            fleet = generate_fleet(500, seed=1000 + b).drop("failure", "failure_mode")
            yield fleet.with_columns(pl.format("B{}-{}", pl.lit(b), pl.col("machine_id")).alias("machine_id")) \
                .sort("cycle", "machine_id")

    return _write_chunks(out / f"fleet-{n}.parquet", chunks())


def _windows_plugin(out: Path) -> tuple[str, Any]:
    from verticals.testing.windows import WindowsPlugin

    return "windows", WindowsPlugin(machines=24, readings=240, seed=0)


# -- inputs ----------------------------------------------------------------------------------------------------
def _write_chunks(path: Path, chunks: Any) -> Path:
    """Write the frames of ``chunks`` into one Parquet file (a row group each), atomically."""
    import pyarrow.parquet as pq

    if path.exists():
        return path
    t0 = time.perf_counter()
    tmp = path.with_suffix(".tmp")
    writer = None
    rows = 0
    try:
        for frame in chunks:
            table = frame.to_arrow()
            writer = writer or pq.ParquetWriter(tmp, table.schema, compression="snappy")
            writer.write_table(table, row_group_size=table.num_rows)
            rows += table.num_rows
    finally:
        if writer is not None:
            writer.close()
    tmp.rename(path)
    _log(f"wrote {path.name}: {rows:,} rows, {path.stat().st_size / 1e6:.0f} MB in {time.perf_counter() - t0:.0f} s")
    return path


def _files_input(out: Path, n: int, version: Any) -> Path:
    from verticals.testing.files import make_images

    folder = out / f"images-{n}"
    if not (folder / ".done").exists():
        t0 = time.perf_counter()
        make_images(folder, n, seed=1)
        (folder / ".done").write_text("")
        _log(f"generated {n:,} images into {folder} in {time.perf_counter() - t0:.0f} s")
    return folder


def _ranking_input(out: Path, n: int, version: Any) -> Path:
    """``n`` interactions of ``n / 10`` users: interaction ``j`` of every user happens in hour ``j``
    (users in turn within it), so the file is in time order and every user spans all of it."""
    import numpy as np
    import polars as pl

    state = version.manifest["preprocessor"]
    if "items" in state:
        items = np.asarray(state["items"], dtype=object)
    else:  # another preprocessor's state: the reference catalogue, which it was trained on
        from verticals.testing.ranking import make_interactions

        items = np.asarray(sorted(set(make_interactions(300, seed=0)["item"].to_list())), dtype=object)
    users = max(1, n // INTERACTIONS_PER_USER)
    origin = np.datetime64("2026-03-01T00:00:00", "us").astype(np.int64)
    hour = 3_600_000_000

    def chunks() -> Any:
        rng = np.random.default_rng(7)
        for step in range(INTERACTIONS_PER_USER):
            for start in range(0, users, CHUNK_ROWS):
                u = np.arange(start, min(users, start + CHUNK_ROWS))
                at = origin + step * hour + (u * (hour // users))
                yield pl.DataFrame({
                    "user": pl.Series(u).cast(pl.String).str.zfill(8).str.replace(r"^", "u"),
                    "timestamp": pl.Series(at, dtype=pl.Int64).cast(pl.Datetime("us")),
                    "item": pl.Series(items[rng.integers(0, len(items), u.size)].tolist(), dtype=pl.String)})

    return _write_chunks(out / f"interactions-{users * INTERACTIONS_PER_USER}.parquet", chunks())


def _windows_input(out: Path, n: int, version: Any) -> Path:
    """``n`` readings of ``n / 1000`` machines, one every 10 minutes each, in time order (machines in
    turn at each time): sensor levels per machine type plus noise, 0.5 % of vibration values missing."""
    import numpy as np
    import polars as pl
    from verticals.testing.windows import INTERVAL_S, MACHINE_TYPES, SENSORS, START

    machines = max(1, n // READINGS_PER_MACHINE)
    names = pl.Series([f"m{m:06d}" for m in range(machines)], dtype=pl.String)
    kinds = pl.Series([MACHINE_TYPES[m % len(MACHINE_TYPES)] for m in range(machines)], dtype=pl.String)
    level = np.asarray([[2.0, 60.0, 6.0, 12.0], [1.2, 45.0, 3.0, 8.0], [0.8, 35.0, 1.0, 4.0]])[
        np.arange(machines) % len(MACHINE_TYPES)]
    scale = np.asarray([0.15, 1.0, 0.2, 0.4])
    origin = int(np.datetime64(START, "us").astype(np.int64))
    per_chunk = max(1, CHUNK_ROWS // machines)

    def chunks() -> Any:
        rng = np.random.default_rng(11)
        for first in range(0, READINGS_PER_MACHINE, per_chunk):
            steps = np.arange(first, min(READINGS_PER_MACHINE, first + per_chunk))
            rows = steps.size * machines
            m = np.tile(np.arange(machines), steps.size)
            values = np.maximum(level[m] + scale * rng.standard_normal((rows, len(SENSORS))), 0.0)
            values[rng.random(rows) < 0.005, 0] = np.nan
            frame = pl.DataFrame({
                "machine": names.gather(m), "machine_type": kinds.gather(m),
                "time": pl.Series(origin + np.repeat(steps, machines) * INTERVAL_S * 1_000_000,
                                  dtype=pl.Int64).cast(pl.Datetime("us")),
                **{s: values[:, j] for j, s in enumerate(SENSORS)}})
            yield frame.with_columns(pl.col("vibration").fill_nan(None))

    return _write_chunks(out / f"telemetry-{machines * READINGS_PER_MACHINE}.parquet", chunks())


SHAPES: dict[str, Shape] = {
    "files": Shape("files", "files.shapes", _files_plugin, _files_input, "images", "5000,50000"),
    "ranking": Shape("ranking", "ranking.next_item", _ranking_plugin, _ranking_input, "interactions",
                     "1000000,10000000"),
    "manufacturing": Shape("manufacturing", "manufacturing.failure_risk", _manufacturing_plugin, _fleet_input,
                           "readings", "1000000,10000000"),
    "retail": Shape("retail", "retail.movielens", _retail_plugin, _ranking_input, "interactions",
                    "1000000,10000000"),
    "windows": Shape("windows", "windows.failure_windows", _windows_plugin, _windows_input, "readings",
                     "1000000,10000000"),
}
