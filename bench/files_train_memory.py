"""Peak memory of training the files reference pipeline on N and 10×N images, each in a fresh process.

Training streams image files (``ImagePreprocessor.materialize = False``): every epoch decodes chunks of
``chunk_rows`` files in threads and drops them after use, so peak memory should not depend on how many
images the folder holds. This script measures it: for each size it generates a folder of PNG images
(``verticals.testing.files.make_images``), then trains ``files.shapes`` in a child process
(load → validate → split → fit → evaluate; ``--export`` adds export + parity) and reads the child's peak
resident set size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``).
``--materialize`` is the control: the same pipeline with ``materialize = True`` (every split's pixels
held at once), to show what the measurement sees when memory does grow.

    .venv/bin/python bench/files_train_memory.py --images 300,3000 --size 64
    .venv/bin/python bench/files_train_memory.py --images 300,3000 --size 64 --materialize

Prints one JSON line per size and writes ``bench/out/files-train-memory.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"


def child(args: argparse.Namespace) -> None:
    """Train once in this process and print ``{"peak_rss_mb", ...}`` as JSON."""
    import resource

    from verticals import engine
    from verticals.hookspecs import hookimpl
    from verticals.testing import use_plugins
    from verticals.testing.files import FilesPlugin, ImagePreprocessor, ShapesPipeline

    class Materialized(ImagePreprocessor):
        materialize = True

    class Pipe(ShapesPipeline):
        def preprocessor(self, dataset):
            pre = super().preprocessor(dataset)
            if args.materialize:
                pre.__class__ = Materialized
            return pre

    class MemoryPlugin(FilesPlugin):
        @hookimpl
        def register_pipelines(self, register):
            register(Pipe(size=self.size))

    started = time.perf_counter()
    plugin = MemoryPlugin(root=args.root, images=args.count, seed=args.seed, size=args.size)
    with use_plugins({"files": plugin}):
        name = "files.shapes"
        splits = engine.split_data(name, engine.validate_data(name, engine.load_data(name)), args.seed)
        fitted = engine.fit(name, splits, epochs=args.epochs, seed=args.seed, device="cpu", progress=False)
        evaluation = engine.evaluate(name, splits, fitted, workdir=Path(tempfile.mkdtemp()))
        if args.export:
            engine.export(name, fitted, evaluation, Path(tempfile.mkdtemp()), variants=())
    result = {"images": args.count, "size": args.size, "epochs": args.epochs, "materialize": args.materialize,
              "export": args.export, "seconds": round(time.perf_counter() - started, 2),
              "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
              "test_auc": evaluation.metrics["test"].get("auc")}
    print(json.dumps(result))


def measure(count: int, *, size: int = 32, epochs: int = 1, seed: int = 0, materialize: bool = False,
            export: bool = False, root: Path | None = None) -> dict:
    """Generate ``count`` images under ``root`` (or a temporary folder) and train on them in a fresh
    process; returns the child's JSON result."""
    from verticals.testing.files import make_images

    folder = Path(root or tempfile.mkdtemp(prefix="verticals-files-")) / f"images-{count}-{seed}"
    make_images(folder, count, seed=seed)
    cmd = [sys.executable, __file__, "child", "--root", str(folder), "--count", str(count), "--size", str(size),
           "--epochs", str(epochs), "--seed", str(seed)]
    cmd += ["--materialize"] * materialize + ["--export"] * export
    env = {**os.environ, "VERTICALS_TORCH_THREADS": os.environ.get("VERTICALS_TORCH_THREADS", "1")}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"training child failed ({out.returncode}): {out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode")
    kid = sub.add_parser("child")
    kid.add_argument("--root", type=Path, required=True)
    kid.add_argument("--count", type=int, required=True)
    for p in (parser, kid):
        p.add_argument("--size", type=int, default=32)
        p.add_argument("--epochs", type=int, default=1)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--materialize", action="store_true")
        p.add_argument("--export", action="store_true")
    parser.add_argument("--images", default="300,3000", help="comma-separated image counts")
    args = parser.parse_args(argv)
    if args.mode == "child":
        child(args)
        return
    results = []
    with tempfile.TemporaryDirectory(prefix="verticals-files-") as tmp:
        for count in (int(c) for c in args.images.split(",")):
            result = measure(count, size=args.size, epochs=args.epochs, seed=args.seed,
                             materialize=args.materialize, export=args.export,
                             root=Path(tmp))
            print(json.dumps(result), flush=True)
            results.append(result)
    OUT.mkdir(exist_ok=True)
    (OUT / "files-train-memory.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
