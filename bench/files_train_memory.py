"""Peak memory of training the files reference pipeline on N and 10×N images.

Training streams image files (``ImagePreprocessor.materialize = False``): every epoch decodes chunks of
``chunk_rows`` files in threads and drops them after use, so peak memory should not depend on how many
images the folder holds. This script measures it: it generates folders of PNG images
(``verticals.testing.files.make_images``), then trains ``files.shapes`` on each (load → validate → split
→ fit → evaluate; ``--export`` adds export + parity) and reads the peak resident set size
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``). By default every size trains in a fresh process;
``--one-process`` trains the sizes one after the other in a single child (the peak after the larger run
then includes everything the smaller one needed: it grows only if the larger run needs more; this is what
``tests/core/test_files_memory.py`` runs, as it saves a start-up). ``--materialize`` is the control: the
same pipeline with ``materialize = True`` (each split transformed and held at once), to show what the
measurement sees when memory does grow.

    .venv/bin/python bench/files_train_memory.py --images 300,3000
    .venv/bin/python bench/files_train_memory.py --images 300,3000 --materialize

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
    """Train on each folder of ``--roots`` in turn in this process; one JSON line after each."""
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

    for root, count in zip(args.roots.split(","), (int(c) for c in args.counts.split(",")), strict=True):
        started = time.perf_counter()
        plugin = MemoryPlugin(root=root, images=count, seed=args.seed, size=args.size)
        with use_plugins({"files": plugin}):
            name = "files.shapes"
            splits = engine.split_data(name, engine.validate_data(name, engine.load_data(name)), args.seed)
            fitted = engine.fit(name, splits, epochs=args.epochs, seed=args.seed, device="cpu", progress=False)
            evaluation = engine.evaluate(name, splits, fitted, workdir=Path(tempfile.mkdtemp()))
            if args.export:
                engine.export(name, fitted, evaluation, Path(tempfile.mkdtemp()), variants=())
        print(json.dumps({
            "images": count, "size": args.size, "epochs": args.epochs, "materialize": args.materialize,
            "export": args.export, "seconds": round(time.perf_counter() - started, 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "test_auc": evaluation.metrics["test"].get("auc")}), flush=True)


def measure(counts: list[int], *, size: int = 32, epochs: int = 1, seed: int = 0, materialize: bool = False,
            export: bool = False, one_process: bool = False, root: Path | None = None) -> list[dict]:
    """Generate a folder of images per count under ``root`` (default: a temporary folder, removed after)
    and train on each in a child process (one per count, or one for all); returns the JSON results."""
    from verticals.testing.files import make_images

    with tempfile.TemporaryDirectory(prefix="verticals-files-", dir=root) as tmp:
        folders = []
        for count in counts:
            folder = Path(tmp) / f"images-{count}-{seed}"
            make_images(folder, count, seed=seed)
            folders.append(str(folder))
        runs = [(folders, counts)] if one_process else [([f], [c]) for f, c in zip(folders, counts, strict=True)]
        env = {**os.environ, "VERTICALS_TORCH_THREADS": os.environ.get("VERTICALS_TORCH_THREADS", "1")}
        results = []
        for roots, sizes in runs:
            cmd = [sys.executable, str(Path(__file__).resolve()), "child", "--roots", ",".join(roots),
                   "--counts", ",".join(map(str, sizes)), "--size", str(size), "--epochs", str(epochs),
                   "--seed", str(seed)] + ["--materialize"] * materialize + ["--export"] * export
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            if out.returncode != 0:
                raise RuntimeError(f"training child failed ({out.returncode}): {out.stderr.strip()[-3000:]}")
            results += [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
        return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode")
    kid = sub.add_parser("child")
    kid.add_argument("--roots", required=True)
    kid.add_argument("--counts", required=True)
    for p in (parser, kid):
        p.add_argument("--size", type=int, default=32)
        p.add_argument("--epochs", type=int, default=1)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--materialize", action="store_true")
        p.add_argument("--export", action="store_true")
    parser.add_argument("--images", default="300,3000", help="comma-separated image counts")
    parser.add_argument("--one-process", action="store_true", help="train every size in one child process")
    args = parser.parse_args(argv)
    if args.mode == "child":
        child(args)
        return
    results = measure([int(c) for c in args.images.split(",")], size=args.size, epochs=args.epochs, seed=args.seed,
                      materialize=args.materialize, export=args.export, one_process=args.one_process)
    for result in results:
        print(json.dumps(result))
    OUT.mkdir(exist_ok=True)
    name = "files-train-memory" + ("-materialized" if args.materialize else "") + ".json"
    (OUT / name).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
