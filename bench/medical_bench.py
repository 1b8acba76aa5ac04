"""medical.imaging scoring throughput on a DICOM folder against the decode-only floor, in one run.

    .venv/bin/python bench/medical_bench.py [--images 800] [--pixels 512] [--input FOLDER] [--gpu]

1. A DICOM folder: ``--input`` (any folder of DICOM/PNG files), else synthetic CT series
   (``--images`` slices of ``--pixels``² int16, :mod:`verticals_medical.synthetic`) generated once into
   ``bench/out/medical``.
2. A model: ``medical.imaging`` trained briefly (1 epoch on 24 patients; throughput does not depend on
   what it learned) into a temporary model store.
3. **Decode floor**: every file read and turned into model pixels (``MedicalPreprocessor.transform``,
   pydicom + rescale + window + resize) in as many threads as scoring's readers use, no model: the
   fastest scoring could go on this CPU.
4. **Platform**: ``verticals score medical.imaging --input FOLDER`` (ONNX Runtime, per-image rows,
   per-study rows, saliency PNGs for flagged images), images/s over the whole run.

The decode cache is off for the whole run (``VERTICALS_MEDICAL_CACHE_MB=0``), so both passes decode
every file. With ``--gpu`` (a CUDA machine with onnxruntime-gpu and a CUDA torch): the platform on
``--device cuda`` against torch fp16 channels-last on the same trained module and the same images
(decoded once, timed on the model only, and end to end with decoding). The GPU path has not been run
on a GPU yet.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def _cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))
    return ", ".join(f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni") if f in flags) or "none of avx2/avx512"


def _decode_floor(folder: Path, pre, threads: int) -> tuple[float, int, int]:
    """Seconds to turn every file under ``folder`` into model pixels in ``threads`` threads."""
    import polars as pl

    files = sorted(str(p) for p in folder.rglob("*") if p.is_file() and not p.name.startswith(("_", ".")))
    chunks = [files[i:i + 64] for i in range(0, len(files), 64)]

    def run(chunk: list[str]) -> tuple[int, int]:
        batch = pre.transform(pl.DataFrame({"path": chunk}), with_target=False)
        return len(batch), 0 if batch.rejects is None else batch.rejects.height

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        counts = list(pool.map(run, chunks))
    return time.perf_counter() - t0, sum(c[0] for c in counts), sum(c[1] for c in counts)


def _torch_fp16(fitted, folder: Path, pre, threads: int, repeats: int = 3) -> dict[str, float]:
    """torch fp16 channels-last on CUDA: images/s on the model alone (pixels decoded once, on the device)
    and end to end (decode in threads + copy + model). Unverified: written without a GPU at hand."""
    import numpy as np
    import polars as pl
    import torch

    _, graph, model = fitted.modules()
    device = torch.device("cuda")
    model = model.to(device).half().to(memory_format=torch.channels_last).eval()
    graph = graph.to(device).eval()
    files = sorted(str(p) for p in folder.rglob("*") if p.is_file() and not p.name.startswith(("_", ".")))
    t0 = time.perf_counter()
    batch = pre.transform(pl.DataFrame({"path": files}), with_target=False)
    decode_s = time.perf_counter() - t0
    pixels = torch.from_numpy(np.ascontiguousarray(batch.inputs["image"])).to(device)
    size = 512
    with torch.inference_mode():
        x = graph(image=pixels[:size])["image"].half().contiguous(memory_format=torch.channels_last)
        model(x)  # warm-up (cuDNN autotuning)
        torch.cuda.synchronize()
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            for start in range(0, pixels.shape[0], size):
                x = graph(image=pixels[start:start + size])["image"].half().contiguous(memory_format=torch.channels_last)
                model(x)
            torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t0)
    n = int(pixels.shape[0])
    return {"images": n, "model_only_images_per_s": round(n / best, 1),
            "end_to_end_images_per_s": round(n / (best + decode_s), 1), "decode_s": round(decode_s, 2),
            "device": torch.cuda.get_device_name(0)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=800, help="synthetic slices (4 per patient)")
    parser.add_argument("--pixels", type=int, default=512)
    parser.add_argument("--input", type=Path, default=None, help="score this folder instead of synthetic slices")
    parser.add_argument("--batch-size", type=int, default=65536, help="scoring batch size (rows per model batch)")
    parser.add_argument("--gpu", action="store_true", help="also compare with torch fp16 channels-last on CUDA")
    args = parser.parse_args()
    os.environ["VERTICALS_MEDICAL_CACHE_MB"] = "0"
    os.environ.setdefault("VERTICALS_PSEUDONYM_KEY", "bench-only-key-not-secret-0123456789")
    home = Path(tempfile.mkdtemp(prefix="medical-bench-"))
    os.environ["VERTICALS_HOME"] = str(home)

    from verticals import engine, hookimpl
    from verticals.scoring import score
    from verticals.store import ModelStore
    from verticals.testing import use_plugins
    from verticals_medical.datasets import ct_dataset
    from verticals_medical.pipeline import ImagingPipeline
    from verticals_medical.synthetic import make_series

    out = Path(__file__).resolve().parent / "out" / "medical"
    folder = args.input
    if folder is None:
        folder = out / f"ct-{args.images}-{args.pixels}"
        t0 = time.perf_counter()
        make_series(folder, max(2, args.images // 4), slices=4, pixels=args.pixels, seed=11)
        print(f"generated {folder} in {time.perf_counter() - t0:.1f} s")

    class Bench:
        @hookimpl
        def register_datasets(self, register):
            register(ct_dataset(24, slices=2, pixels=64, seed=5, root=out / "train-24"))

        @hookimpl
        def register_models(self, register):
            from verticals_medical.plugin import register_models

            register_models(register)

        @hookimpl
        def register_pipelines(self, register):
            register(ImagingPipeline(epochs=1, root=out / "train-24"))

    name = "medical.imaging"
    with use_plugins({"medical": Bench()}):
        loaded = engine.load_data(name)
        validated = engine.validate_data(name, loaded)
        splits = engine.split_data(name, validated, seed=1)
        fitted = engine.fit(name, splits, epochs=1, progress=False)
        staging = ModelStore(home).staging(name)
        evaluation = engine.evaluate(name, splits, fitted, workdir=staging)
        exported = engine.export(name, fitted, evaluation, staging, variants=())
        engine.register(name, validated, splits, fitted, evaluation, exported, home=home)
        pre = fitted.modules()[0]
        threads = min(8, os.cpu_count() or 1)
        floor_s, decoded, floor_rejected = _decode_floor(folder, pre, threads)
        t0 = time.perf_counter()
        manifest = score(name, folder, out / "scored", home=home, progress=False, overwrite=True,
                         batch_size=args.batch_size)
        platform_s = time.perf_counter() - t0
        result = {
            "input": str(folder), "files": manifest["rows_in"], "scored": manifest["rows_scored"],
            "rejected": manifest["rows_rejected"],
            "decode_floor_images_per_s": round(decoded / floor_s, 1), "decode_floor_threads": threads,
            "decode_floor_rejected": floor_rejected,
            "platform_images_per_s": round(manifest["rows_scored"] / platform_s, 1),
            "platform_vs_floor": round((manifest["rows_scored"] / platform_s) / (decoded / floor_s), 3),
            "platform_provider": manifest["provider"], "batch_size": args.batch_size, "stages_s": manifest["stages"],
            "cpu": platform.processor() or platform.machine(), "cpu_flags": _cpu_flags(), "cores": os.cpu_count(),
        }
        if args.gpu:
            gpu_manifest_t0 = time.perf_counter()
            gpu = score(name, folder, out / "scored-gpu", home=home, device="cuda", progress=False, overwrite=True)
            gpu_s = time.perf_counter() - gpu_manifest_t0
            result["gpu_platform_images_per_s"] = round(gpu["rows_scored"] / gpu_s, 1)
            result["gpu_platform_provider"] = gpu["provider"]  # check: CUDAExecutionProvider, not a CPU fallback
            result["gpu_torch_fp16_channels_last"] = _torch_fp16(fitted, folder, pre, threads)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
