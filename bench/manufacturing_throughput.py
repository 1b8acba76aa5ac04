"""Scoring throughput of manufacturing.failure_risk in windows per second, against the model alone.

In one process: trains the pipeline briefly on a small generated fleet, generates ``--machines``
machines of telemetry, then times, interleaved (``--repeat`` rounds after one warm-up):

* ``score``: ``verticals.scoring.score`` on the Parquet file (validation, grouping, windowing, ONNX
  Runtime, postprocess, Parquet output);
* ``model``: the exported ONNX graph alone (ORT, CPU) on the same windows, already built, in batches of
  ``--batch`` windows.

Prints windows/s for both (min-time and median). Name the CPU's flags (AVX2, AVX-512, VNNI) next to
the figures::

    python bench/manufacturing_throughput.py --machines 400 --repeat 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch", type=int, default=4096)
    args = parser.parse_args()

    import numpy as np
    import verticals_manufacturing.plugin as plugin
    from verticals.engine import train
    from verticals.ort import open_session
    from verticals.scoring import score
    from verticals.testing import use_plugins
    from verticals_manufacturing import datasets
    from verticals_manufacturing.fleet import generate_fleet
    from verticals_manufacturing.risk import WindowPreprocessor

    class Small:
        register_models = staticmethod(plugin.register_models)
        register_pipelines = staticmethod(plugin.register_pipelines)

        @staticmethod
        @plugin.hookimpl
        def register_datasets(register):
            register(datasets.ai4i_dataset(1000))
            register(datasets.fleet_dataset(30))

    with tempfile.TemporaryDirectory() as tmp, use_plugins({"manufacturing": Small}):
        home = Path(tmp) / "home"
        result = train("manufacturing.failure_risk", home=home, epochs=1, progress=False, variants=())
        frame = generate_fleet(args.machines, seed=1).drop("failure", "failure_mode")
        src = Path(tmp) / "telemetry.parquet"
        frame.write_parquet(src, row_group_size=65536)
        pre = WindowPreprocessor()
        pre.load_state(result.manifest["preprocessor"])
        windows = pre.transform(frame, with_target=False).inputs["window"]
        session = open_session(result.path / "model.onnx")
        name = session.get_inputs()[0].name

        def run_score(i: int) -> int:
            out = Path(tmp) / f"out-{i}"
            manifest = score("manufacturing.failure_risk", src, out, model=str(result.version), home=home,
                             progress=False, device="cpu")
            return int(manifest["rows_out"])

        def run_model(_: int) -> int:
            for start in range(0, len(windows), args.batch):
                session.run(None, {name: np.ascontiguousarray(windows[start:start + args.batch])})
            return len(windows)

        times: dict[str, list[float]] = {"score": [], "model": []}
        counts: dict[str, int] = {}
        for round_ in range(args.repeat + 1):
            for key, fn in (("score", run_score), ("model", run_model)):
                started = time.perf_counter()
                counts[key] = fn(round_)
                if round_:
                    times[key].append(time.perf_counter() - started)
        print(f"{frame.height} readings, {len(windows)} windows of {pre.window} x {windows.shape[2]}; "
              f"providers {session.get_providers()}")
        for key, values in times.items():
            print(f"{key}: {counts[key] / min(values):,.0f} windows/s (best), "
                  f"{counts[key] / statistics.median(values):,.0f} (median of {len(values)})")


if __name__ == "__main__":
    main()
