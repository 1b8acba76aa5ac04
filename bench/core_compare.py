"""Two checkouts of the core, interleaved: platform Parquet → Parquet and ORT model-only rows/s of each.

For "before vs after" figures on a shared, noisy machine: each round runs one child process per
checkout (A B A B ...), each child imports the core of its own checkout (``<root>/core/src`` first on
``sys.path``), opens the reference MLP of ``score_bench.py`` from its own model store, warms up, then
times the platform path and the model alone alternately. Medians over rounds are reported.

    .venv/bin/python bench/core_compare.py --root before=/path/to/old/checkout --root after=. --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = r"""
import json, os, sys, time
root, out, rows, bs, variant = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
sys.path.insert(0, os.path.join(root, "bench"))
import score_bench as sb  # puts <root>/core/src first on sys.path
import verticals
assert verticals.__file__.startswith(os.path.join(root, "core")), verticals.__file__
from pathlib import Path
out = Path(out)
home = out / ("home-" + root.strip("/").replace("/", "_"))
path = sb.data_file(out, rows)
if not (home / "done").exists():
    sb.build_model(home)
    (home / "done").write_text("")
from verticals.scoring import score
from verticals.scoring.session import ScoringSession
from verticals.testing import use_plugins
x, _ = sb.features(path)
kw = {} if variant == "default" else {"variant": variant}
res = {"e2e": [], "model": []}
with use_plugins({"reference": sb.reference_plugin()}):
    session = ScoringSession.open(sb.PIPELINE, None, "cpu", bs, home, **({"variant": variant} if variant != "default" else {}))
    model = sb.ort_model_only(session.runtime, x, bs)
    def e2e():
        m = score(sb.PIPELINE, path, out / ("scores-" + str(os.getpid())), device="cpu", batch_size=bs,
                  overwrite=True, home=home, progress=False, **kw)
        res["variant"] = m.get("variant")
        return m["rows_in"]
    for i in range(3):
        for name, fn in (("e2e", e2e), ("model", model)):
            t0 = time.perf_counter(); n = fn(); dt = time.perf_counter() - t0
            if i:
                res[name].append(n / dt)
    session.close()
print(json.dumps(res))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", action="append", required=True, help="NAME=PATH of a checkout (twice or more)")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--batch-size", type=int, default=65536)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--variant", default="default", help="variant passed to score() (default: the core's default)")
    ap.add_argument("--out", default=str(HERE / "out"))
    args = ap.parse_args()
    roots = dict(r.split("=", 1) for r in args.root)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    runs: dict[str, dict[str, list[float]]] = {k: {"e2e": [], "model": []} for k in roots}
    variants: dict[str, str] = {}
    for rnd in range(args.rounds):
        for name, root in roots.items():
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-c", CHILD, str(Path(root).resolve()), args.out, str(args.rows),
                                   str(args.batch_size), args.variant], capture_output=True, text=True, check=False)
            if proc.returncode:
                raise SystemExit(f"{name}: child failed:\n{proc.stderr[-3000:]}")
            got = json.loads(proc.stdout.strip().splitlines()[-1])
            variants[name] = got.get("variant")
            for k in ("e2e", "model"):
                runs[name][k].extend(got[k])
            print(f"round {rnd + 1} {name}: e2e {[f'{v:,.0f}' for v in got['e2e']]} model "
                  f"{[f'{v:,.0f}' for v in got['model']]} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    table = {}
    for name, r in runs.items():
        e2e, model = statistics.median(r["e2e"]), statistics.median(r["model"])
        table[name] = {"variant": variants[name], "e2e_median": e2e, "e2e_best": max(r["e2e"]), "model_median": model,
                       "model_best": max(r["model"]), "e2e/model (medians)": e2e / model, "runs": r}
    sys.path.insert(0, str(HERE))
    from score_bench import environment

    result = {"rows": args.rows, "batch_size": args.batch_size, "env": environment(), "cores": table}
    (Path(args.out) / "results-core-compare.json").write_text(json.dumps(result, indent=2))
    print(f"{'checkout':10s} {'variant':8s} {'e2e median':>12s} {'e2e best':>12s} {'model median':>13s} {'e2e/model':>9s}")
    for name, t in table.items():
        print(f"{name:10s} {t['variant']!s:8s} {t['e2e_median']:>12,.0f} {t['e2e_best']:>12,.0f} "
              f"{t['model_median']:>13,.0f} {t['e2e/model (medians)']:>9.2f}")


if __name__ == "__main__":
    main()
