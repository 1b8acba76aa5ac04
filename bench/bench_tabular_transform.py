"""Throughput of TabularPreprocessor.transform on scoring-sized batches (rows/s), one process.

    POLARS_MAX_THREADS=1 taskset -c 0 .venv/bin/python bench/bench_tabular_transform.py [--rows 65536]

Data: the reference dataset (64 float columns, optionally categoricals), validated first so columns
have the dtypes scoring hands to ``transform`` (Float64, strings). Compared in the same process with
polars' own ``to_numpy`` of the same columns (Float64, no dtype change) and with a row-major float32
build (``order="C"``). Reports min and median over repetitions after a warm-up.
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    import numpy as np
    from verticals.data.tabular import TabularPreprocessor
    from verticals.data.validation import validate
    from verticals.testing.reference import make_frame, reference_schema

    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=65536)
    parser.add_argument("--numeric", type=int, default=64)
    parser.add_argument("--categorical", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()

    schema = reference_schema(args.numeric, args.categorical)
    frame = validate(make_frame(args.rows, n_numeric=args.numeric, n_categorical=args.categorical),
                     schema.without_target(), stage="score").valid
    pre = TabularPreprocessor(schema)
    pre.fit(validate(make_frame(20_000, n_numeric=args.numeric, n_categorical=args.categorical),
                     schema, stage="train").valid)
    names = [c.name for c in schema.features if c.dtype == "float"]

    def timed(fn) -> tuple[float, float]:
        fn()
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return args.rows / min(times), args.rows / statistics.median(times)

    c_order = TabularPreprocessor(schema, order="C")
    c_order.load_state(pre.state())
    cases = {
        "transform (x_num float32, column-major)": lambda: pre.transform(frame, with_target=False),
        "transform, order='C' (row-major)": lambda: c_order.transform(frame, with_target=False),
        "polars select(...).to_numpy() (float64)": lambda: frame.select(names).to_numpy(),
    }
    print(f"rows/batch={args.rows} numeric={args.numeric} categorical={args.categorical} "
          f"numpy={np.__version__}")
    for label, fn in cases.items():
        best, median = timed(fn)
        print(f"{label:42s} best {best / 1e6:6.2f} M rows/s   median {median / 1e6:6.2f} M rows/s")


if __name__ == "__main__":
    main()
