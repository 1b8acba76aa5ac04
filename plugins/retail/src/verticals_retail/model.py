"""The learned recommenders (PyTorch) and the exported scoring graph (seen items masked, ``TopK`` inside).

Two architectures over the same inputs (``history``/``mask``: the user's last items, oldest first;
``seen``: every item the user has, multi-hot), both trained with a full softmax over the catalogue
against the next item:

* ``mean``: the user is a position-weighted mean of their recent items' embeddings (a learned weight
  per history slot, so recent items can count more), projected, dotted with every item's output
  embedding, plus an item bias;
* ``gru``: a GRU over the recent items (a sequential model: "what comes next"); its last state is the user.

``nn.Embedding`` plus masked sums, not ``nn.EmbeddingBag`` (which exports as a slow ONNX ``Loop``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["ARCHITECTURES", "MASKED", "recommender_factory", "top_k_scorer"]

ARCHITECTURES = ("mean", "gru")
#: The score of a seen item in the graph (finite, so parity and fp16 stay well defined); postprocess
#: drops every item at or below half of it.
MASKED = -1.0e9


def recommender_factory(info: Mapping[str, Any], *, arch: str = "mean", dim: int = 64,
                        dropout: float = 0.2) -> torch.nn.Module:
    """``forward(history, mask, seen) -> logits [batch, items]``; see the module docstring."""
    import math

    import torch
    from torch import nn

    if arch not in ARCHITECTURES:
        from verticals.errors import PluginError

        raise PluginError(f"retail model: unknown architecture {arch!r}",
                          hint=f"use one of {', '.join(ARCHITECTURES)}")
    items, length = int(info["items"]), int(info["max_history"])
    counts = torch.tensor([float(c) for c in info["counts"]], dtype=torch.float32)

    class Recommender(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.top_k = int(info["top_k"])
            self.arch = arch
            self.embed = nn.Embedding(items, dim)
            nn.init.normal_(self.embed.weight, std=1.0 / math.sqrt(dim))
            self.slot = nn.Parameter(torch.zeros(length))
            if arch == "gru":
                self.rnn = nn.GRU(dim, dim, batch_first=True)
            self.drop = nn.Dropout(dropout)
            self.project = nn.Linear(dim, dim)
            self.output = nn.Parameter(torch.randn(items, dim) * (1.0 / math.sqrt(dim)))
            self.bias = nn.Parameter(torch.log1p(counts) - torch.log1p(counts).mean())
            # Cold start (no known history): the graph ranks by training popularity.
            self.register_buffer("popularity", torch.log1p(counts))

        def forward(self, history: torch.Tensor, mask: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
            vectors = self.drop(self.embed(history)) * mask.unsqueeze(-1)
            if self.arch == "gru":
                state, _ = self.rnn(vectors)
                user = state[:, -1, :]
            else:
                weight = torch.exp(self.slot).unsqueeze(0) * mask
                user = (vectors * weight.unsqueeze(-1)).sum(dim=1) / weight.sum(dim=1, keepdim=True).clamp(min=1e-6)
            return self.project(self.drop(user)) @ self.output.t() + self.bias

    return Recommender()


def top_k_scorer(model: torch.nn.Module) -> torch.nn.Module:
    """The exported graph: logits (popularity for a user with no known item), seen items set to
    :data:`MASKED`, then ``TopK``. Returns ``(items int64 [batch, k], scores float32 [batch, k])``."""
    import torch
    from torch import nn

    class TopK(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.k = int(model.top_k)

        def forward(self, history: torch.Tensor, mask: torch.Tensor,
                    seen: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            logits = self.model(history=history, mask=mask, seen=seen)
            known = mask.sum(dim=1, keepdim=True) > 0
            logits = torch.where(known, logits, self.model.popularity.unsqueeze(0).expand_as(logits))
            logits = torch.where(seen > 0, torch.full_like(logits, MASKED), logits)
            scores, items = torch.topk(logits, self.k, dim=1)
            return items, scores

    return TopK()
