"""The Prefect score flow against ``verticals score`` (the same core call the CLI makes), interleaved in one
process, on the reference MLP of ``score_bench.py`` and a file of ``--rows`` rows (default 2M).

The flow runs on Prefect's temporary local API (started by Prefect on the first flow call of the
process; that start is timed and reported on its own, then every flow run is timed whole: flow and task
runs created, partitions scored, artifacts written). Both paths score the same partitions into a fresh
output folder each time, with the same model variant.

    .venv/bin/python bench/flow_bench.py --rows 2000000 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "flows" / "src"))

import score_bench as sb  # noqa: E402  (puts the checkout's core first on sys.path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=65536)
    ap.add_argument("--variant", default="auto")
    ap.add_argument("--out", default=str(HERE / "out"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="flow-bench-prefect-"))
    from verticals_flows.config import prefect_defaults

    prefect_defaults()  # as the verticals commands do: 120 s for the temporary API's first start
    home = out / "home"
    sb.build_model(home)
    path = sb.data_file(out, args.rows)

    from verticals.scoring import score
    from verticals.testing import use_plugins
    from verticals_flows.score import score_flow

    def cli() -> dict:
        return score(sb.PIPELINE, path, out / "flowbench-cli", device="cpu", batch_size=args.batch_size,
                     overwrite=True, home=home, progress=False, variant=args.variant)

    def flow() -> dict:
        return score_flow(pipeline=sb.PIPELINE, input=str(path), output=str(out / "flowbench-flow"), device="cpu",
                          batch_size=args.batch_size, overwrite=True, variant=args.variant, home=str(home))

    times: dict[str, list[float]] = {"cli": [], "flow": []}
    with use_plugins({"reference": sb.reference_plugin()}):
        t0 = time.perf_counter()
        first = flow()  # starts Prefect's temporary API: timed apart
        first_s = time.perf_counter() - t0
        sb.log(f"first flow run (with Prefect's temporary API start): {first_s:.1f} s")
        for i in range(args.repeat):
            for name, fn in (("cli", cli), ("flow", flow)):
                t0 = time.perf_counter()
                manifest = fn()
                dt = time.perf_counter() - t0
                assert manifest["rows_in"] == args.rows and manifest["parts_resumed"] == 0, manifest
                times[name].append(dt)
                sb.log(f"  rep {i + 1} {name}: {args.rows / dt:,.0f} rows/s ({dt:.1f} s, {manifest['variant']})")
    med = {k: args.rows / statistics.median(v) for k, v in times.items()}
    best = {k: args.rows / min(v) for k, v in times.items()}
    result = {"rows": args.rows, "partitions": len(first.get("parts", [])), "env": sb.environment(),
              "variant": first.get("variant"), "rows_per_s_median": med, "rows_per_s_best": best,
              "flow / cli (median; best)": (med["flow"] / med["cli"], best["flow"] / best["cli"]),
              "first flow run incl. temporary API start (s)": first_s, "seconds": times}
    (out / "results-flow.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "seconds"}, indent=2))


if __name__ == "__main__":
    main()
