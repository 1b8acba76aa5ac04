"""User histories as model inputs: the recent items (ordered), every seen item (multi-hot), the next item.

Fitted state: the item vocabulary of the training split (sorted ids; index ``i`` is the model's item
``i``) and each item's training count (popularity), in the manifest; and the histories of the users it
saw, so that a *users file* (ids only) can be scored with the history the model knows. Those grow with
the number of users, so they are a polars DataFrame (``user`` String, ``items`` List[Int32] of item
indices, oldest first) that the core stores as ``preprocessor/known.parquet`` in the model version, not
as manifest JSON.

Examples:

* with targets (training, validation, test): every non-context row with at least one earlier known
  item in its user's frame; target = its item's index; input = the up to ``max_history`` known items
  before it (``history`` int64, ``mask`` float32, left-padded, oldest first) and ``seen`` (float32
  multi-hot of *every* earlier known item, so masking is exact however long the history). A repeat of
  an item the user already has is no example (it is in the history already), nor is an unknown item.
* without targets (scoring): one example per user. From an interactions file the history is the user's
  rows; from a users file (no ``item`` column) the training history of that user. Flags:
  ``history:empty`` (no known item: the graph returns popularity), ``user:unknown`` (a users-file id
  the model never saw), ``unknown_items:N`` (items not in the catalogue, ignored),
  ``duplicates:N`` (repeated user–item rows, counted once).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from verticals.errors import PluginError
from verticals.spec import CONTEXT, Batch, Preprocessor, TensorSpec

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import polars as pl

__all__ = ["MAX_HISTORY", "TOP_K", "HistoryPreprocessor"]

MAX_HISTORY = 50
TOP_K = 100
_STATE_FORMAT = 2  # 1: known histories as a JSON object in the manifest (still read)
FIRST = "first interaction of a user (no earlier item to learn from)"
UNKNOWN_TARGET = "item not in the training catalogue"
REPEAT = "repeat of an item already in the user's history"


class HistoryPreprocessor(Preprocessor):
    """See the module docstring."""

    rowwise: ClassVar[bool] = False
    materialize: ClassVar[bool] = False
    group_by: ClassVar[str | None] = "user"
    order_by: ClassVar[str | None] = "timestamp"
    context_rows: ClassVar[int | None] = None
    chunk_rows: ClassVar[int | None] = 4096

    def __init__(self, *, user: str = "user", time: str = "timestamp", item: str = "item",
                 max_history: int = MAX_HISTORY, top_k: int = TOP_K) -> None:
        self.user, self.time, self.item = user, time, item
        self.max_history, self.top_k = int(max_history), int(top_k)
        self.items: list[str] = []
        self.counts: list[int] = []
        self.histories: pl.DataFrame | None = None  # user (String), items (List[Int32]); one row per user
        self._index: dict[str, int] = {}

    # -- fitting ------------------------------------------------------------------------------------
    def fit(self, frame: pl.DataFrame) -> None:
        import polars as pl

        rows = frame.filter(~pl.col(CONTEXT).fill_null(False)) if CONTEXT in frame.columns else frame
        rows = rows.filter(pl.col(self.item).is_not_null()).unique([self.user, self.item], keep="first",
                                                                    maintain_order=True)
        counts = rows.get_column(self.item).value_counts(name="n").sort(self.item)
        if counts.height < 2:
            raise PluginError(f"retail preprocessor: the training split has {counts.height} distinct item(s)",
                              hint="train on interactions with at least two distinct items")
        self._set(counts.get_column(self.item).to_list(), counts.get_column("n").to_list())
        self.histories = self._histories(rows.sort([self.user, self.time], maintain_order=True))

    def _histories(self, ordered: pl.DataFrame, before: pl.DataFrame | None = None) -> pl.DataFrame:
        """Per user, the catalogue items of ``ordered`` (sorted by user and time) after those of
        ``before`` (a histories frame), each item once, in order; users in order of first appearance."""
        import polars as pl

        codes = (ordered.get_column(self.item).cast(pl.String)
                 .replace_strict(self._index, default=None, return_dtype=pl.Int32))
        rows = pl.DataFrame({"user": ordered.get_column(self.user).cast(pl.String), "items": codes})
        if before is not None:
            rows = pl.concat([before.explode("items"), rows])
        return (rows.drop_nulls("items").unique(["user", "items"], keep="first", maintain_order=True)
                .group_by("user", maintain_order=True).agg(pl.col("items")))

    def remember(self, frame: pl.DataFrame) -> None:
        """Add ``frame``'s interactions (not its context rows) to the histories the model knows, after
        the ones already known: after training, a users file's history is the user's whole log, held-out
        items included (they are seen items too). Items outside the catalogue are skipped."""
        import polars as pl

        self._require_fitted("remember")
        rows = frame.filter(~pl.col(CONTEXT).fill_null(False)) if CONTEXT in frame.columns else frame
        rows = rows.filter(pl.col(self.item).is_not_null()).sort([self.user, self.time], maintain_order=True)
        self.histories = self._histories(rows, self.histories)

    @property
    def known(self) -> dict[str, list[int]]:
        """The known histories as ``{user: [item index, ...]}`` (built on each call: use :meth:`history`
        for a few users)."""
        self._require_fitted("known")
        frame = self.histories
        return dict(zip(frame.get_column("user").to_list(), frame.get_column("items").to_list(), strict=True))

    def history(self, user: str) -> list[int] | None:
        """The item indices the model knows for ``user``, oldest first; None for a user it never saw."""
        import polars as pl

        self._require_fitted("history")
        hit = self.histories.filter(pl.col("user") == str(user))
        return hit.get_column("items")[0].to_list() if hit.height else None

    def _set(self, items: Sequence[str], counts: Sequence[int]) -> None:
        self.items = [str(i) for i in items]
        self.counts = [int(c) for c in counts]
        self._index = {name: i for i, name in enumerate(self.items)}

    @property
    def k(self) -> int:
        """Items per exported list: ``top_k``, or the whole catalogue when it is smaller."""
        return max(1, min(self.top_k, len(self.items)))

    def _require_fitted(self, what: str) -> None:
        if not self.items:
            raise PluginError(f"retail preprocessor: {what} called before fit/load_state",
                              hint="fit the preprocessor on the training split first")

    # -- examples ------------------------------------------------------------------------------------
    def transform(self, frame: pl.DataFrame, *, with_target: bool) -> Batch:
        import numpy as np
        import polars as pl

        self._require_fitted("transform")
        if self.user not in frame.columns:
            raise PluginError(f"retail preprocessor: the frame lacks the user column '{self.user}'",
                              hint=f"add a '{self.user}' column with each interaction's user id")
        if self.item not in frame.columns or (frame.height and frame.get_column(self.item).null_count() == frame.height):
            # A users file (validation adds the absent optional column as nulls; a present item column
            # never reaches here with nulls: those rows are rejected).
            if with_target:
                raise PluginError(f"retail preprocessor: the frame lacks the item column '{self.item}'",
                                  hint="train on interactions with user, timestamp and item columns")
            return self._users(frame)
        sort = [self.user, self.time] if self.time in frame.columns else [self.user]
        rows = frame.sort(sort, maintain_order=True)
        n = rows.height
        user = rows.get_column(self.user).cast(pl.String)
        item = rows.get_column(self.item).cast(pl.String)
        codes = item.replace_strict(self._index, default=-1, return_dtype=pl.Int64).to_numpy()
        repeat = (~pl.DataFrame({"u": user, "i": item}).select(pl.struct("u", "i").is_first_distinct())
                  .to_series()).to_numpy() if n else np.zeros(0, dtype=bool)
        context = (rows.get_column(CONTEXT).fill_null(False).to_numpy() if CONTEXT in rows.columns
                   else np.zeros(n, dtype=bool))
        usable = (codes >= 0) & ~repeat  # rows that enter a history
        group = user.rle_id().to_numpy() if n else np.zeros(0, dtype=np.int64)
        starts = np.flatnonzero(np.r_[True, np.diff(group) != 0]) if n else np.zeros(0, dtype=np.int64)
        ends = np.r_[starts[1:], n].astype(np.int64) if n else np.zeros(0, dtype=np.int64)
        # known items before each row (exclusive), within its user
        before = np.cumsum(usable) - usable
        before = before - (before[starts][group] if n else 0)
        skipped: dict[str, int] = {}
        if with_target:
            candidates = np.flatnonzero(~context)
            # Validation and test (frames with context rows) keep a held-out item the catalogue lacks as
            # an example with target -1: a miss for every recommender, as in the protocol's denominator
            # (all eligible users). Training cannot learn it, so there it is skipped.
            held_out = CONTEXT in rows.columns
            unknown = (codes[candidates] < 0) & (before[candidates] > 0 if held_out else True)
            reasons = {FIRST: (before[candidates] == 0) & ((codes[candidates] >= 0) | held_out) & ~repeat[candidates],
                       UNKNOWN_TARGET: unknown & (not held_out),
                       REPEAT: (codes[candidates] >= 0) & repeat[candidates]}
            for reason, hit in reasons.items():
                if hit.any():
                    skipped[reason] = int(hit.sum())
            at = candidates[(usable[candidates] | (unknown & held_out)) & (before[candidates] > 0)]
            target = codes[at].astype(np.int64)
            begin = starts[group[at]] if at.size else np.zeros(0, dtype=np.int64)
            where = at
        else:
            has_rows = (np.add.reduceat((~context).astype(np.int64), starts) > 0) if n else np.zeros(0, dtype=bool)
            at, begin, where, target = ends[has_rows], starts[has_rows], starts[has_rows], None
        history, mask, seen = self._inputs(codes, usable, at, begin)
        ids = pl.DataFrame({self.user: user.gather(pl.Series(where, dtype=pl.Int64))})
        flags = None
        if not with_target:
            unknown = self._per_user(np.add.reduceat(((codes < 0) & item.is_not_null().to_numpy()).astype(np.int64),
                                                     starts) if n else np.zeros(0, dtype=np.int64), has_rows)
            dups = self._per_user(np.add.reduceat(((codes >= 0) & repeat).astype(np.int64), starts)
                                  if n else np.zeros(0, dtype=np.int64), has_rows)
            flags = self._flags(mask, unknown, dups, np.zeros(len(at), dtype=bool))
        return Batch(ids=ids, inputs={"history": history, "mask": mask, "seen": seen}, target=target, flags=flags,
                     skipped=skipped)

    @staticmethod
    def _per_user(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
        return values[keep] if values.size else values

    def _users(self, frame: pl.DataFrame) -> Batch:
        """A users file: each distinct user once, with the training history the model knows."""
        import numpy as np
        import polars as pl

        users = frame.get_column(self.user).cast(pl.String).unique(maintain_order=True)
        found = pl.DataFrame({"user": users}).join(self.histories, on="user", how="left", maintain_order="left")
        lists = found.get_column("items")
        unknown_user = lists.is_null().to_numpy()
        lengths = lists.list.len().fill_null(0).to_numpy().astype(np.int64)
        codes = lists.explode().drop_nulls().to_numpy().astype(np.int64)
        begin = np.r_[0, np.cumsum(lengths)[:-1]].astype(np.int64) if lengths.size else lengths
        at = begin + lengths
        history, mask, seen = self._inputs(codes, np.ones(codes.size, dtype=bool), at, begin)
        zeros = np.zeros(users.len(), dtype=np.int64)
        flags = self._flags(mask, zeros, zeros, unknown_user)
        return Batch(ids=pl.DataFrame({self.user: users}), inputs={"history": history, "mask": mask, "seen": seen},
                     flags=flags)

    @staticmethod
    def _flags(mask: np.ndarray, unknown: np.ndarray, dups: np.ndarray, unknown_user: np.ndarray) -> pl.Series:
        import polars as pl

        out = []
        for empty, u, d, uu in zip(mask.sum(axis=1) == 0, unknown, dups, unknown_user, strict=True):
            parts = (["user:unknown"] if uu else []) + (["history:empty"] if empty else []) \
                + ([f"unknown_items:{int(u)}"] if u else []) + ([f"duplicates:{int(d)}"] if d else [])
            out.append(",".join(parts))
        return pl.Series("flags", out, dtype=pl.String)

    def _inputs(self, codes: np.ndarray, usable: np.ndarray, at: np.ndarray,
                begin: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per example, the usable rows in ``[begin, at)``: the last ``max_history`` as ``history``/``mask``
        (left-padded) and all of them as the ``seen`` multi-hot."""
        import numpy as np

        length, items, count = self.max_history, len(self.items), at.size
        history = np.zeros((count, length), dtype=np.int64)
        mask = np.zeros((count, length), dtype=np.float32)
        seen = np.zeros((count, items), dtype=np.float32)
        if not count:
            return history, mask, seen
        position = np.flatnonzero(usable)
        good = codes[position]
        lo = np.searchsorted(position, begin, side="left")
        hi = np.searchsorted(position, at, side="left")
        sizes = hi - lo
        total = int(sizes.sum())
        if total:
            example = np.repeat(np.arange(count), sizes)
            offset = np.arange(total) - np.repeat(np.cumsum(sizes) - sizes, sizes)
            picked = good[np.repeat(lo, sizes) + offset]
            seen[example, picked] = 1.0
            slot = length - (np.repeat(sizes, sizes) - offset)  # most recent in the last slot
            recent = slot >= 0
            history[example[recent], slot[recent]] = picked[recent]
            mask[example[recent], slot[recent]] = 1.0
        return history, mask, seen

    # -- contract ------------------------------------------------------------------------------------
    def signature(self) -> dict[str, TensorSpec]:
        return {"history": TensorSpec("int64", (-1, self.max_history)),
                "mask": TensorSpec("float32", (-1, self.max_history)),
                "seen": TensorSpec("float32", (-1, len(self.items)))}

    def info(self) -> dict[str, Any]:
        self._require_fitted("info")
        return {"items": len(self.items), "max_history": self.max_history, "top_k": self.k,
                "counts": list(self.counts)}

    def state(self) -> dict[str, Any]:
        self._require_fitted("state")
        return {"format": _STATE_FORMAT, "columns": {"user": self.user, "time": self.time, "item": self.item},
                "max_history": self.max_history, "top_k": self.top_k, "items": list(self.items),
                "counts": list(self.counts), "known": self.histories}

    def load_state(self, state: Mapping[str, Any]) -> None:
        import polars as pl

        if state.get("format") not in (1, _STATE_FORMAT):
            raise PluginError(f"retail preprocessor state has format {state.get('format')!r}, expected "
                              f"{_STATE_FORMAT}", hint="retrain the model with this version of verticals-retail")
        columns = state.get("columns") or {}
        self.user = str(columns.get("user", self.user))
        self.time = str(columns.get("time", self.time))
        self.item = str(columns.get("item", self.item))
        self.max_history, self.top_k = int(state["max_history"]), int(state["top_k"])
        self._set(state["items"], state["counts"])
        known = state.get("known")
        if isinstance(known, pl.DataFrame):
            self.histories = known.select(pl.col("user").cast(pl.String), pl.col("items").cast(pl.List(pl.Int32)))
        else:  # format 1: {user: [item index, ...]} in the manifest
            known = known or {}
            self.histories = pl.DataFrame({"user": [str(u) for u in known],
                                           "items": [[int(c) for c in h] for h in known.values()]},
                                          schema={"user": pl.String, "items": pl.List(pl.Int32)})

    def vocabularies(self) -> dict[str, list[str]]:
        return {self.item: list(self.items)}
