"""The fleet network on a CUDA device: trains ``window_gru`` (relative channels, auxiliary horizon head)
with the core's training loop on a generated fleet, on the device asked for (mixed precision on CUDA),
and checks that its predictions on the device match the CPU's. No ONNX export and no plugin
installation: it runs from source (``PYTHONPATH=core/src:plugins/manufacturing/src``) where torch, numpy,
polars and scikit-learn are installed::

    python bench/device_manufacturing.py --device cuda --machines 200 --epochs 3

Prints the fit time, the validation PR-AUC and the largest CUDA − CPU probability difference.
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--machines", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import numpy as np
    import torch
    from verticals.data.examples import Examples
    from verticals.postprocess import sigmoid
    from verticals.training import fit_model, predict_outputs, seed_everything
    from verticals_manufacturing.datasets import fleet_dataset
    from verticals_manufacturing.fleet import generate_fleet
    from verticals_manufacturing.risk import FailureRiskPipeline, window_gru

    pipe = FailureRiskPipeline()
    frame = generate_fleet(args.machines, args.seed)
    splits = pipe.split(frame, fleet_dataset(args.machines, args.seed), args.seed)
    pre = pipe.preprocessor(fleet_dataset(args.machines, args.seed))
    pre.fit(splits.train)
    train = Examples(pre, splits.train, name="train", chunk_rows=8192)
    valid = Examples(pre, splits.valid, name="valid", chunk_rows=8192)
    seed_everything(args.seed)
    model = window_gru(pre.info())
    graph = pre.graph_module()
    config = pipe.training
    started = time.perf_counter()
    out = fit_model(pipe, model, graph, train, valid, epochs=args.epochs, batch_size=config.batch_size,
                    lr=config.learning_rate, weight_decay=config.weight_decay, patience=config.patience,
                    seed=args.seed, device=args.device, progress=False, output_names=("logits", "mode_logits"))
    seconds = time.perf_counter() - started
    batch = next(b for b in Examples(pre, splits.test, name="test").batches(1 << 20) if len(b))
    names = ("logits", "mode_logits")
    on_cpu = predict_outputs(out.model, graph, batch, "cpu", 4096, names)
    on_device = predict_outputs(out.model, graph, batch, args.device, 4096, names)
    gap = float(np.max(np.abs(sigmoid(on_device["logits"]) - sigmoid(on_cpu["logits"]))))
    best = max(row.get("valid_pr_auc", float("nan")) for row in out.history)
    print(f"device {out.device} ({torch.cuda.get_device_name() if out.device == 'cuda' else 'cpu'}): "
          f"{args.machines} machines, {out.best_epoch}/{len(out.history)} epochs in {seconds:.1f} s, "
          f"best valid PR-AUC {best:.4f}; {len(batch)} test windows, max |p(device) - p(cpu)| {gap:.2e}")
    assert gap < 1e-3, f"device and CPU predictions differ by {gap}"


if __name__ == "__main__":
    main()
