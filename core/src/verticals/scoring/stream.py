"""Score a run's partitions in the background, reading ahead across them, and hand out each result.

An orchestrator that tracks partitions one by one (the Prefect score flow maps one task per partition)
would otherwise start readers, a queue and a postprocess pool per partition, and nothing would read the
next partition while the last batches of one are in the model. A :class:`PartitionStream` runs
:func:`~verticals.scoring.score_partitions` over all of them once, with one reader pool for the run;
each task then only waits for its partition's committed result.

Guarantees are those of ``score_partitions``: a partition's part file, rejects and marker are committed
atomically, so a process killed at any point leaves whole parts or none, and a rerun skips committed
ones. If the stream fails or is cancelled, :meth:`PartitionStream.result` answers ``None`` for every
partition it did not commit, and the caller scores that partition itself (the error of a bad partition
then surfaces there, for that partition).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from verticals.scoring.output import PartResult
    from verticals.scoring.partitions import Partition
    from verticals.scoring.session import ScoringSession

__all__ = ["PartitionStream"]


class PartitionStream:
    """Background scoring of ``partitions`` into ``staging`` with ``session`` (see the module docstring).

    Use as a context manager, or call :meth:`start` and :meth:`close`.
    """

    def __init__(self, session: ScoringSession, partitions: Sequence[Partition], staging: Path | str) -> None:
        self.session = session
        self.partitions = list(partitions)
        self.staging = Path(staging)
        self.error: BaseException | None = None
        self._results: dict[int, PartResult] = {}
        self._finished = False
        self._cond = threading.Condition()
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True, name="verticals-stream")

    def start(self) -> PartitionStream:
        self._thread.start()
        return self

    def _deliver(self, result: PartResult) -> None:
        with self._cond:
            self._results[result.index] = result
            self._cond.notify_all()

    def _main(self) -> None:
        from verticals.scoring.run import score_partitions

        try:
            score_partitions(self.session, self.partitions, self.staging, on_result=self._deliver,
                             cancel=self._cancel)
        except BaseException as exc:  # handed to callers as "score it yourself"; kept for the record
            self.error = exc
        finally:
            with self._cond:
                self._finished = True
                self._cond.notify_all()

    def result(self, partition: Partition, timeout: float | None = None) -> PartResult | None:
        """``partition``'s committed result, waiting for it; ``None`` if the stream ended without it
        (failed, cancelled, or the partition is not part of it): score it directly then."""
        with self._cond:
            ok = self._cond.wait_for(lambda: partition.index in self._results or self._finished, timeout)
            if not ok:
                raise TimeoutError(f"{partition.describe()}: not scored within {timeout} s")
            return self._results.get(partition.index)

    @property
    def finished(self) -> bool:
        with self._cond:
            return self._finished

    def close(self) -> None:
        """Stop (abandoning partitions not yet committed) and wait for the background thread."""
        self._cancel.set()
        if self._thread.is_alive():
            self._thread.join()

    def __enter__(self) -> PartitionStream:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()
