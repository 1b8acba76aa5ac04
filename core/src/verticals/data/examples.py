"""A split as a stream of :class:`~verticals.spec.Batch` es: what training, evaluation and parity consume.

Two ways, chosen by the preprocessor (:attr:`~verticals.spec.Preprocessor.materialize`):

* **materialized** (tabular rows): the split is transformed once and held as one batch; training slices
  mini-batches out of it. Cheap and exact, and what small tables want.
* **streamed** (image files, windows, users): the frame is cut into chunks of rows, each chunk is
  transformed when it is needed, in a pool of threads that runs a few chunks ahead, and dropped after
  use. Memory grows with the chunk size and the read-ahead, not with the number of examples.

Chunks respect the preprocessor's grouping (:attr:`~verticals.spec.Preprocessor.group_by`): a group is
never cut unless it alone is larger than a chunk, and then each piece carries the group's preceding
``context_rows`` rows as :data:`~verticals.spec.CONTEXT` rows. Shuffling is seeded by ``(seed, epoch)``
and permutes rows (row-wise preprocessors) or whole groups, then the examples within each transformed
chunk; augmentation is applied to training batches
only, with a generator seeded by ``(seed, epoch, chunk)``.
"""

from __future__ import annotations

import itertools
import os
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from verticals.errors import PluginError, VerticalsError
from verticals.spec import CONTEXT, Batch

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import polars as pl

    from verticals.spec import Preprocessor

__all__ = ["Examples", "chunk_frame", "drop_context", "transform_checked"]

MAX_WORKERS = 8


def drop_context(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` without its context rows and without the :data:`CONTEXT` column."""
    import polars as pl

    if CONTEXT not in frame.columns:
        return frame
    return frame.filter(~pl.col(CONTEXT).fill_null(False)).drop(CONTEXT)


def transform_checked(pre: Preprocessor, frame: pl.DataFrame, *, with_target: bool, what: str) -> Batch:
    """``pre.transform`` with the core's guarantees: row-wise preprocessors never see context rows,
    a failing transform becomes a :class:`PluginError` naming ``what``, and the result is checked."""
    if pre.rowwise:
        frame = drop_context(frame)
    try:
        batch = pre.transform(frame, with_target=with_target)
    except VerticalsError:
        raise
    except Exception as exc:
        raise PluginError(f"{what}: preprocessor.transform failed: {type(exc).__name__}: {exc}",
                          hint="fix the pipeline's preprocessor (an unreadable row belongs in Batch.rejects)") \
            from exc
    if not isinstance(batch, Batch):
        raise PluginError(f"{what}: preprocessor.transform returned {type(batch).__name__}, not a Batch",
                          hint="return verticals.spec.Batch")
    for name, array in batch.inputs.items():
        if array.shape[0] != len(batch):
            raise PluginError(f"{what}: input '{name}' has {array.shape[0]} rows for {len(batch)} examples",
                              hint="return one row of every input per example")
    return batch


def _group_bounds(frame: pl.DataFrame, group: str) -> list[tuple[int, int]]:
    """``[(start, stop)]`` of each run of equal ``group`` values in a frame sorted by group."""
    import numpy as np

    if frame.height == 0:
        return []
    codes = frame.get_column(group).rle_id().to_numpy()
    starts = np.flatnonzero(np.diff(codes)) + 1
    edges = [0, *starts.tolist(), frame.height]
    return list(itertools.pairwise(edges))


def chunk_frame(frame: pl.DataFrame, pre: Preprocessor, rows: int, *, order: np.ndarray | None = None
                ) -> Iterator[pl.DataFrame]:
    """Cut ``frame`` into chunks of about ``rows`` rows that keep the preprocessor's groups whole.

    ``frame`` is sorted by group and order already (see :meth:`Examples.__init__`). ``order``
    permutes rows (no grouping) or groups. A group larger than ``rows`` is cut into consecutive
    pieces, each preceded by up to ``context_rows`` earlier rows of the group marked as context.
    """
    import numpy as np
    import polars as pl

    rows = max(1, int(rows))
    group = pre.group_by
    if group is None:
        n = frame.height
        idx = np.arange(n) if order is None else order
        for start in range(0, n, rows):
            sel = idx[start:start + rows]
            yield frame.slice(int(sel[0]), len(sel)) if order is None else frame[pl.Series(sel)]
        return
    bounds = _group_bounds(frame, group)
    if order is not None:
        bounds = [bounds[i] for i in order]
    pending: list[tuple[int, int]] = []
    size = 0
    context = pre.context_rows

    def flush() -> pl.DataFrame:
        parts = [frame.slice(a, b - a) for a, b in pending]
        return parts[0] if len(parts) == 1 else pl.concat(parts)

    for start, stop in bounds:
        length = stop - start
        if length > rows:
            if pending:
                yield flush()
                pending, size = [], 0
            has_context = CONTEXT in frame.columns
            for piece in range(start, stop, rows):
                lead = piece - start if context is None else min(context, piece - start)
                part = frame.slice(piece - lead, lead + min(rows, stop - piece))
                if lead:
                    mark = pl.Series(CONTEXT, np.arange(part.height) < lead)
                    part = part.with_columns((mark | pl.col(CONTEXT).fill_null(False)).alias(CONTEXT)
                                             if has_context else mark)
                yield part
            continue
        if size + length > rows and pending:
            yield flush()
            pending, size = [], 0
        pending.append((start, stop))
        size += length
    if pending:
        yield flush()


class Examples:
    """One split of validated rows, ready to be iterated as batches (see the module's docstring).

    Args:
        pre: the fitted preprocessor.
        frame: the split's rows (may carry :data:`CONTEXT` rows).
        with_target: encode the target (training and evaluation) or not (scoring).
        name: the split's name, for messages.
        chunk_rows: rows per transform call when streaming (default ``pre.chunk_rows`` or 256).
        workers: transform threads when streaming (default ``pre.workers``; 0 = cores, at most 8).
    """

    def __init__(self, pre: Preprocessor, frame: pl.DataFrame, *, with_target: bool = True, name: str = "",
                 chunk_rows: int | None = None, workers: int | None = None) -> None:
        self.pre = pre
        self.name = name
        self.with_target = with_target
        if pre.group_by is not None and pre.group_by in frame.columns:
            keys = [pre.group_by] + ([pre.order_by] if pre.order_by and pre.order_by in frame.columns else [])
            frame = frame.sort(keys, maintain_order=True)
        self.frame = frame
        self.chunk_rows = int(chunk_rows or pre.chunk_rows or 256)
        wanted = pre.workers if workers is None else workers
        self.workers = max(1, min(MAX_WORKERS, int(wanted) or (os.cpu_count() or 1)))
        self._batch: Batch | None = None
        self.rejects: pl.DataFrame | None = None
        self.skipped: dict[str, int] = {}

    @property
    def materialized(self) -> bool:
        return bool(self.pre.materialize)

    @property
    def rows(self) -> int:
        """Rows of the split that can become examples (context rows excluded)."""
        import polars as pl

        if CONTEXT not in self.frame.columns:
            return self.frame.height
        return int(self.frame.select((~pl.col(CONTEXT).fill_null(False)).sum()).item())

    def batch(self) -> Batch:
        """The whole split as one batch (materialized preprocessors; a streamed split is concatenated,
        which holds every example's inputs: use :meth:`batches` for large splits)."""
        if self._batch is None:
            if self.materialized:
                self._batch = transform_checked(self.pre, self.frame, with_target=self.with_target,
                                                what=f"{self.name} split")
                self._note(self._batch)
            else:
                return Batch.concat(list(self.batches(self.chunk_rows)))
        return self._batch

    def _note(self, batch: Batch) -> None:
        import polars as pl

        if batch.rejects is not None and batch.rejects.height:
            self.rejects = batch.rejects if self.rejects is None else pl.concat([self.rejects, batch.rejects],
                                                                               how="vertical_relaxed")
        for reason, count in batch.skipped.items():
            self.skipped[reason] = self.skipped.get(reason, 0) + int(count)

    def batches(self, batch_size: int, *, shuffle: bool = False, seed: int = 0, epoch: int = 0,
                augment: bool = False) -> Iterator[Batch]:
        """Mini-batches of at most ``batch_size`` examples, in order or seeded-shuffled.

        Rejects and skipped counts of the preprocessor are collected on the first unshuffled pass (or
        the first pass of all) into :attr:`rejects` and :attr:`skipped`.
        """
        import numpy as np

        batch_size = max(1, int(batch_size))
        if self.materialized:
            whole = self.batch()
            n = len(whole)
            order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else None
            for start in range(0, n, batch_size):
                part = whole.take(slice(start, start + batch_size) if order is None else order[start:start + batch_size])
                yield self.pre.augment(part, np.random.default_rng([seed, epoch, start])) if augment else part
            return
        note = not getattr(self, "_noted", False)
        self._noted = True
        if note:
            self.rejects, self.skipped = None, {}
        yield from self._stream(batch_size, shuffle=shuffle, seed=seed, epoch=epoch, augment=augment, note=note)

    def _units(self) -> int:
        if self.pre.group_by is None:
            return self.frame.height
        return len(_group_bounds(self.frame, self.pre.group_by))

    def _stream(self, batch_size: int, *, shuffle: bool, seed: int, epoch: int, augment: bool,
                note: bool) -> Iterator[Batch]:
        from concurrent.futures import ThreadPoolExecutor

        import numpy as np

        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(self._units()) if shuffle else None
        chunks = chunk_frame(self.frame, self.pre, self.chunk_rows, order=order)
        what = f"{self.name} split" if self.name else "split"

        def work(item: tuple[int, pl.DataFrame]) -> Batch:
            index, chunk = item
            batch = transform_checked(self.pre, chunk, with_target=self.with_target, what=what)
            if shuffle and len(batch) > 1:
                # A chunk's examples come in group order (consecutive windows of one machine, one user's
                # sessions): shuffle them too, or each mini-batch would be one group's story.
                mixed = batch.take(np.random.default_rng([seed, epoch, index, 1]).permutation(len(batch)))
                mixed.rejects, mixed.skipped = batch.rejects, batch.skipped
                batch = mixed
            if augment:
                batch = self.pre.augment(batch, np.random.default_rng([seed, epoch, index]))
            return batch

        def emit(batch: Batch) -> Iterator[Batch]:
            if note:
                self._note(batch)
            n = len(batch)
            if n <= batch_size:
                if n:
                    yield batch
                return
            for start in range(0, n, batch_size):
                yield batch.take(slice(start, start + batch_size))

        if self.workers <= 1:
            for item in enumerate(chunks):
                yield from emit(work(item))
            return
        ahead = 2 * self.workers
        with ThreadPoolExecutor(self.workers, thread_name_prefix="verticals-decode") as pool:
            pending: deque[Any] = deque()
            try:
                for item in enumerate(chunks):
                    pending.append(pool.submit(work, item))
                    if len(pending) >= ahead:
                        yield from emit(pending.popleft().result())
                while pending:
                    yield from emit(pending.popleft().result())
            finally:
                for future in pending:
                    future.cancel()
