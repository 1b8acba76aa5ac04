"""Scoring throughput of manufacturing.failure_risk in windows per second: end to end against the model
alone, for each exported variant (fp32, and int8 where the export's gate kept it).

In one process: trains the pipeline briefly on a small generated fleet with the default variants (as
``verticals train`` does), generates ``--machines`` machines of telemetry, then times, interleaved
(``--repeat`` rounds after one warm-up, A B C D A B C D ...), per variant:

* ``e2e``: ``verticals.scoring.score`` on the Parquet file with that variant (validation, grouping,
  windowing, ONNX Runtime, postprocess, Parquet output);
* ``model only``: the same variant's ONNX graph on the same windows, already built and laid out as
  the scorer lays them out, through the platform's own ORT runner and session options
  (:class:`verticals.scoring.session.ScoringSession`, as ``score`` opens it), in batches of the
  session's batch size (what the scorer hands the runner), pipelined over the runner's lanes like
  ``bench/score_bench.py``.

Prints windows/s (median and best) per path, the ratio end to end / model alone per variant, and the
CPU's flags (AVX2, AVX-512, VNNI); ``--out FILE`` writes them as JSON::

    python bench/manufacturing_throughput.py --machines 300 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default=None, help="write the results as JSON to this file")
    args = parser.parse_args()

    import verticals_manufacturing.plugin as plugin
    from score_bench import environment, interleave
    from verticals.data.validation import validate
    from verticals.engine import train
    from verticals.scoring import score
    from verticals.scoring.session import ScoringSession
    from verticals.testing import use_plugins
    from verticals_manufacturing import datasets
    from verticals_manufacturing.fleet import generate_fleet

    class Small:
        register_models = staticmethod(plugin.register_models)
        register_pipelines = staticmethod(plugin.register_pipelines)

        @staticmethod
        @plugin.hookimpl
        def register_datasets(register):
            register(datasets.ai4i_dataset(1000))
            register(datasets.fleet_dataset(30))

    name = "manufacturing.failure_risk"
    with tempfile.TemporaryDirectory() as tmp, use_plugins({"manufacturing": Small}):
        home = Path(tmp) / "home"
        result = train(name, home=home, epochs=2, progress=False)  # default variants, as verticals train
        built = result.manifest.get("variants") or {}
        variants = ["fp32"] + [v for v in ("int8",) if v in built]
        frame = generate_fleet(args.machines, seed=1).drop("failure", "failure_mode")
        src = Path(tmp) / "telemetry.parquet"
        frame.write_parquet(src, row_group_size=65536)

        sessions = {v: ScoringSession.open(name, result.version, "cpu", home=home, variant=v) for v in variants}
        first = sessions["fp32"]
        valid = validate(frame, first.schema, stage="score", vocabularies=first.vocabularies).valid
        batch = first.preprocessor.transform(valid, with_target=False)
        inputs = first.model_inputs(batch.inputs)
        n = len(batch)

        def model_only(session: ScoringSession):
            size = session.batch_size

            def run() -> int:
                runner = session.runtime.runner
                pending = []
                for start in range(0, n, size):
                    pending.append(runner.submit({k: v[start:start + size] for k, v in inputs.items()}))
                    if len(pending) > runner.depth:
                        pending.pop(0).result()
                for future in pending:
                    future.result()
                return n

            return run

        def e2e(variant: str):
            counter = iter(range(1_000_000))

            def run() -> int:
                manifest = score(name, src, Path(tmp) / f"out-{variant}-{next(counter)}", model=str(result.version),
                                 home=home, progress=False, device="cpu", variant=variant)
                assert manifest["variant"] == variant, manifest.get("variant_reason")
                return int(manifest["rows_out"])

            return run

        paths = {}
        for v in variants:
            paths[f"{v} e2e (verticals score)"] = e2e(v)
            paths[f"{v} model only (platform runner)"] = model_only(sessions[v])
        timed = interleave(paths, args.repeat)
        report = {"env": environment(), "readings": frame.height, "windows": n,
                  "window": list(inputs[next(iter(inputs))].shape[1:]), "model": result.manifest.get("model"),
                  "batch_size": first.batch_size, "runner": first.describe(),
                  "variants_built": {k: v for k, v in built.items()}, "paths": timed, "ratios": {}}
        for session in sessions.values():
            session.close()
    env = report["env"]
    print(f"{report['readings']:,} readings, {n:,} windows of {' x '.join(map(str, report['window']))}; "
          f"model {report['model']}; CPU {env['cpu']} ({', '.join(env['cpu_flags'])}), {env['cores']} cores; "
          f"scoring batch {report['batch_size']:,} windows")
    if "int8" not in variants:
        print(f"no int8 variant: the export's gate did not keep it ({built.get('int8')})")
    for key, value in timed.items():
        print(f"{key}: {value['rows_per_s_median']:,.0f} windows/s (median of {len(value['seconds'])}), "
              f"best {value['rows_per_s_best']:,.0f}")
    for v in variants:
        e, m = timed[f"{v} e2e (verticals score)"], timed[f"{v} model only (platform runner)"]
        ratio = e["rows_per_s_median"] / m["rows_per_s_median"]
        report["ratios"][v] = ratio
        print(f"{v}: end to end / model alone = {ratio:.2f} (medians)")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
