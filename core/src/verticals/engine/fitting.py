"""Stage fit: the preprocessor fitted on the training split, the model trained on batches."""

from __future__ import annotations

from typing import TYPE_CHECKING

from verticals.errors import PluginError, UserError

if TYPE_CHECKING:  # pragma: no cover

    from verticals.data.splits import Splits

from verticals.engine.common import _lookup, _notify, _stage, _state_ready
from verticals.engine.results import FitResult


def fit(pipeline: str, splits: Splits, *, epochs: int | None = None, seed: int | None = None,
        device: str | None = None, progress: bool = True, data: str | None = None) -> FitResult:
    """Fit the preprocessor on the training split, build the model and train it (``before_train`` first).

    Args:
        epochs, seed, device: override the pipeline's :class:`~verticals.spec.TrainingConfig`.
        data: the training data's source, passed to ``before_train``.
    """
    with _stage(pipeline, "fit"):
        from verticals import crossfit
        from verticals.data.examples import Examples, drop_context
        from verticals.training import cpu_threads, fit_model, seed_everything, select_device

        pipe, dataset, spec = _lookup(pipeline)
        config = pipe.training
        seed = config.seed if seed is None else int(seed)
        epochs = config.epochs if epochs is None else int(epochs)
        if epochs < 1:
            raise UserError(f"epochs must be at least 1, got {epochs}", hint="pass --epochs 1 or more")
        device = select_device(device)
        rows = splits.sizes()
        record = None
        members = 0
        if crossfit.applies(config, splits):  # small data: K-fold cross-fitting (verticals.crossfit)
            _notify("before_train", pipeline=pipe.qualified_name,
                    config={"epochs": epochs, "seed": seed, "device": device, "data": data, "rows": rows})
            pre, graph, out, info, options, record = crossfit.fit_crossfitted(
                pipe, dataset, spec, splits, epochs=epochs, seed=seed, device=device, progress=progress)
            members = record.models if record.final == "bag" else 0
        else:
            pre = pipe.preprocessor(dataset)
            pre.fit(drop_context(splits.train) if pre.rowwise else splits.train)
            chunk = pre.chunk_rows or config.batch_size
            train_batch = Examples(pre, splits.train, name="train", chunk_rows=chunk)
            valid_batch = Examples(pre, splits.valid, name="valid", chunk_rows=chunk)
            info = dict(pre.info())
            options = dict(pipe.model_options(dataset, info))
            size = int(getattr(config, "ensemble", 1))
            if size < 1:
                raise PluginError(f"pipeline '{pipe.qualified_name}': TrainingConfig.ensemble is {size}",
                                  hint="set it to 1 (one model) or more (the average of that many seeds)")
            graph = pre.graph_module()
            _notify("before_train", pipeline=pipe.qualified_name,
                    config={"epochs": epochs, "seed": seed, "device": device, "data": data, "rows": rows})
            fitted = []
            for member in range(size):  # the same split, seeds seed, seed + 1, ...
                seed_everything(seed + member)
                model = spec.factory(info, **options)
                with cpu_threads(model, device):
                    fitted.append(fit_model(pipe, model, graph, train_batch, valid_batch, epochs=epochs,
                                            batch_size=config.batch_size, lr=config.learning_rate,
                                            weight_decay=config.weight_decay, patience=config.patience,
                                            seed=seed + member, device=device,
                                            class_weighting=config.class_weighting, progress=progress,
                                            output_names=spec.outputs, model_spec=spec))
            out = fitted[0] if size == 1 else crossfit.averaged(fitted, count="members")
            members = size if size > 1 else 0
        trained = out.model.to("cpu").eval()
        weights = {k: v.detach().cpu().numpy().copy() for k, v in trained.state_dict().items()}
        result = FitResult(
            pipeline=pipe.qualified_name, preprocessor_state=_state_ready(pre.state(), pipe.qualified_name),
            info=info, model_options=options, weights=weights, history=[dict(h) for h in out.history],
            best_epoch=int(out.best_epoch), epochs=epochs, seed=seed, device=out.device,
            seconds=float(out.seconds), stopped_early=bool(out.stopped_early), rows=rows, crossfit=record,
            members=members)
        if graph is not None:
            graph.to("cpu").eval()
        result._cache["modules"] = (pre, graph, trained)
        return result
