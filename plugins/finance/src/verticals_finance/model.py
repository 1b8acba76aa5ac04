"""The probability-of-default network: an additive model with monotone, exactly attributable terms.

    logit = bias + sum_j f_j(x_num_j) + sum_k g_k(x_cat_k)

* ``f_j`` is a piecewise-linear function of numeric feature ``j`` with knots at training quantiles
  (``CreditPreprocessor``): ``f_j(x) = sum_b w_jb * clamp((x - knot_b) / width_b, 0, 1)``. It is flat
  outside the training range, so an extreme value cannot push the logit further than the most extreme
  applicant seen in training did.
* A feature declared ``monotonic = +1`` uses ``|w_jb|`` (every segment slopes up): the logit, hence the
  PD, never decreases as the feature grows, whatever the weights are. ``-1`` mirrors the encoding
  (``1 - clamp(...)``), so the PD never increases. No other term sees that feature, so the constraint
  holds **by construction**, for every applicant, not just on average or on the training data.
* On small data the curves are smoothed while training: a P-spline-style penalty on the change of
  slope between adjacent segments (:meth:`CreditRiskNet.penalty`) pulls each ``f_j`` towards a straight
  line over its training range, the one free parameter per feature a logistic regression has, and
  lets the data bend it where the evidence is strong. The penalty is part of the training loss only:
  the forward pass, the monotone construction and the contributions are untouched.
* ``g_k`` is a one-dimensional embedding: one learned log-odds value per category of feature ``k``.
  Index 0 (a category unseen in training, or missing) takes the background average, i.e. it is
  treated as neutral and contributes exactly 0.

Second output, ``contributions`` [N, F + C] (numeric features first, then categorical, in the
preprocessor's order): ``term_j(x) - mean_b term_j(b)`` over a background sample ``b`` of training
applicants. Because the model is additive these are the exact (interventional) Shapley values of the
logit with respect to that background: they sum to ``logit - E_b[logit(b)]`` exactly, and setting
feature ``j`` to each background value in turn lowers the logit by exactly ``contribution_j`` on
average. The background is a uniform reservoir sample of up to 512 training rows, collected in the
training forward passes and stored as buffers, so the exported ONNX graph computes the contributions
itself (scoring needs no torch).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["BACKGROUND_ROWS", "CreditRiskNet", "build_credit_model"]

BACKGROUND_ROWS = 512
_FAR = 1e9  # knot position of padding segments (masked out by ``active``)


class CreditRiskNet(nn.Module):
    """Additive, monotone-where-declared model of the log-odds of default (see the module docstring).

    Args:
        knots: per numeric feature, increasing knot positions in the model's input space (after
            imputation and standardisation). Features with one knot get a constant (zero) term.
        cardinalities: per categorical feature, vocabulary size including index 0 (unknown).
        monotonic: per numeric feature, ``+1``, ``-1`` or ``0``.
        background_rows: size of the background sample for contributions.
        smoothness: strength of the penalty on bends of the numeric terms over the whole training
            objective (``Σ_i loss_i + smoothness · roughness``); 0 (the default) trains without it.
    """

    def __init__(self, knots: Sequence[Sequence[float]], cardinalities: Sequence[int],
                 monotonic: Sequence[int], background_rows: int = BACKGROUND_ROWS, *,
                 smoothness: float = 0.0) -> None:
        super().__init__()
        if not smoothness >= 0:
            raise ValueError(f"smoothness must be 0 or more, got {smoothness}")
        self.smoothness = float(smoothness)
        n_num, n_cat = len(knots), len(cardinalities)
        if len(monotonic) != n_num:
            raise ValueError(f"monotonic has {len(monotonic)} entries for {n_num} numeric features")
        if any(int(m) not in (-1, 0, 1) for m in monotonic):
            raise ValueError(f"monotonic directions must be -1, 0 or +1, got {list(monotonic)}")
        segments = max([len(k) - 1 for k in knots] + [1])
        lo = torch.full((n_num, segments), _FAR)
        width = torch.ones(n_num, segments)
        active = torch.zeros(n_num, segments)
        for j, ks in enumerate(knots):
            ks = sorted(float(k) for k in ks)
            for b in range(len(ks) - 1):
                lo[j, b] = ks[b]
                width[j, b] = max(ks[b + 1] - ks[b], 1e-6)
                active[j, b] = 1.0
        direction = torch.tensor([int(m) for m in monotonic], dtype=torch.float32)
        self.n_num, self.n_cat = n_num, n_cat
        self.register_buffer("lo", lo)
        self.register_buffer("width", width)
        self.register_buffer("active", active)
        self.register_buffer("direction", direction)
        self.register_buffer("constrained", (direction != 0).unsqueeze(1))
        self.register_buffer("decreasing", (direction < 0).unsqueeze(1))
        # Constrained weights start small and positive (|w| has no gradient at exactly 0).
        init = torch.where(self.constrained, torch.full((n_num, segments), 0.01), torch.zeros(n_num, segments))
        self.weight = nn.Parameter(init)
        offsets = [0]
        for c in list(cardinalities)[:-1]:
            offsets.append(offsets[-1] + int(c))
        self.register_buffer("offsets", torch.tensor(offsets, dtype=torch.long))
        self.embedding = nn.Embedding(max(int(sum(cardinalities)), 1), 1)
        nn.init.zeros_(self.embedding.weight)
        self.bias = nn.Parameter(torch.zeros(1))
        self.background_rows = int(background_rows)
        self.register_buffer("bg_num", torch.zeros(self.background_rows, n_num))
        self.register_buffer("bg_cat", torch.zeros(self.background_rows, n_cat, dtype=torch.long))
        self.register_buffer("bg_seen", torch.zeros((), dtype=torch.long))

    # -- terms ---------------------------------------------------------------------------------------
    def slopes(self) -> torch.Tensor:
        """Segment weights as used: ``|w|`` on constrained features, ``w`` elsewhere."""
        return torch.where(self.constrained, self.weight.abs(), self.weight)

    def numeric_terms(self, x_num: torch.Tensor) -> torch.Tensor:
        """``f_j(x_j)`` for every row and numeric feature: [N, F]."""
        enc = ((x_num.unsqueeze(-1) - self.lo) / self.width).clamp(0.0, 1.0)
        enc = torch.where(self.decreasing, 1.0 - enc, enc)
        return (enc * self.active * self.slopes()).sum(-1)

    def _raw_categorical(self, x_cat: torch.Tensor) -> torch.Tensor:
        return self.embedding(x_cat + self.offsets).squeeze(-1)

    def _categorical_reference(self) -> torch.Tensor:
        """Mean embedding value of each categorical feature over the background's known categories."""
        known = (self.bg_cat != 0).to(self.embedding.weight.dtype)
        values = self._raw_categorical(self.bg_cat) * known
        return values.sum(0) / known.sum(0).clamp(min=1.0)

    def categorical_terms(self, x_cat: torch.Tensor) -> torch.Tensor:
        """``g_k(x_k)`` for every row and categorical feature: [N, C]; unknown (0) is the reference."""
        return torch.where(x_cat == 0, self._categorical_reference(), self._raw_categorical(x_cat))

    def segment_slopes(self) -> torch.Tensor:
        """Slope of ``f_j`` on each segment, in logits per standard deviation of the feature: [F, S]
        (0 on padding segments). Negative throughout for a ``-1`` feature."""
        sign = torch.where(self.decreasing, -torch.ones_like(self.width), torch.ones_like(self.width))
        return sign * self.slopes() * self.active / self.width

    def roughness(self) -> torch.Tensor:
        """``Σ_j Σ_b (slope_j,b+1 − slope_j,b)²``: how far the numeric terms are from straight lines.

        Zero exactly when every ``f_j`` is linear over its training range (one slope on every segment),
        so a penalty on it shrinks each curve towards a straight line, the shape a logistic regression
        gives every feature, and never towards flat: the strength of an effect is not penalised, only
        its bends. It reads the slopes as used (``|w|`` where constrained), so it cannot touch the
        monotone construction.
        """
        if not self.n_num or self.weight.shape[1] < 2:
            return self.bias.new_zeros(())
        slope = self.segment_slopes()
        pairs = self.active[:, 1:] * self.active[:, :-1]
        return (((slope[:, 1:] - slope[:, :-1]) * pairs) ** 2).sum()

    def penalty(self, rows: int) -> torch.Tensor:
        """``smoothness · roughness / rows``, added to each training step's mean loss by the engine
        (:func:`verticals.training.fit_model`): the objective is ``Σ_i loss_i + smoothness · roughness``
        over the ``rows`` training rows, so the penalty weighs less as data grows and does not depend on
        the batch size or the steps per epoch."""
        if self.smoothness <= 0:
            return self.bias.new_zeros(())
        return self.smoothness * self.roughness() / max(int(rows), 1)

    # -- background sample ---------------------------------------------------------------------------
    @torch.no_grad()
    def _observe(self, x_num: torch.Tensor | None, x_cat: torch.Tensor | None) -> None:
        """Reservoir-sample training rows into the background (algorithm R, vectorised)."""
        first = x_num if x_num is not None else x_cat
        if first is None:
            return
        n, size, seen = first.shape[0], self.background_rows, int(self.bg_seen)
        slots = torch.full((n,), -1, dtype=torch.long, device=first.device)
        fill = max(0, min(size - seen, n))
        if fill:
            slots[:fill] = torch.arange(seen, seen + fill, device=first.device)
        if n > fill:
            t = torch.arange(seen + fill, seen + n, device=first.device, dtype=torch.float64)
            pick = (torch.rand(n - fill, device=first.device, dtype=torch.float64) * (t + 1)).long()
            slots[fill:] = torch.where(pick < size, pick, torch.full_like(pick, -1))
        keep = slots >= 0
        if x_num is not None and self.n_num:
            self.bg_num[slots[keep]] = x_num[keep].to(self.bg_num.dtype)
        if x_cat is not None and self.n_cat:
            self.bg_cat[slots[keep]] = x_cat[keep].to(torch.long)
        self.bg_seen += n

    def _background_size(self) -> int:
        return min(int(self.bg_seen), self.background_rows)

    # -- forward -------------------------------------------------------------------------------------
    def forward(self, x_num: torch.Tensor | None = None,
                x_cat: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(logits [N], contributions [N, F + C])``."""
        if self.training:
            self._observe(x_num, x_cat)
        parts, refs = [], []
        if self.n_num:
            assert x_num is not None, "x_num is required"
            parts.append(self.numeric_terms(x_num))
            refs.append(self.numeric_terms(self.bg_num).mean(0))
        if self.n_cat:
            assert x_cat is not None, "x_cat is required"
            parts.append(self.categorical_terms(x_cat))
            refs.append(self._categorical_reference())
        terms = torch.cat(parts, dim=1)
        logits = self.bias + terms.sum(1)
        contributions = terms - torch.cat(refs).unsqueeze(0)
        return logits, contributions


def build_credit_model(info: Mapping[str, Any], *, knots: Sequence[Sequence[float]] | None = None,
                       monotonic: Sequence[int] | None = None,
                       background_rows: int = BACKGROUND_ROWS, smoothness: float = 0.0,
                       **_: Any) -> CreditRiskNet:
    """Model factory: ``info`` from the fitted preprocessor; options from ``Pipeline.model_options``.

    Knots default to ``info["knots"]`` (:class:`~verticals_finance.preprocessing.CreditPreprocessor`),
    else to 17 points of the standard normal's quantile range; monotonic directions to
    ``info["monotonic"]`` (the schema's ``Column.monotonic``).
    """
    numeric = list(info.get("numeric", []))
    chosen = knots if knots is not None else info.get("knots")
    if chosen is None or len(chosen) != len(numeric):
        grid = [-2.5 + 5.0 * b / 16 for b in range(17)]
        chosen = [grid for _ in numeric]
    directions = monotonic if monotonic is not None else info.get("monotonic") or [0] * len(numeric)
    return CreditRiskNet(chosen, list(info.get("cardinalities", [])), list(directions),
                         background_rows=background_rows, smoothness=smoothness)
