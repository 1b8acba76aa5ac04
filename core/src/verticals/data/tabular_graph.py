"""The in-graph half of :class:`verticals.data.tabular.TabularPreprocessor` (imports torch).

Kept in its own module so ``tabular`` stays importable without torch (the scoring path), and so the
class is defined at module level and pickles with the model.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["TabularGraph"]


class TabularGraph(nn.Module):
    """Impute missing numeric values with the training medians, then standardise; categories pass.

    Everything is a buffer (no trainable parameters), so it moves with ``.to(device)``, is saved in the
    state dict, and is exported into the ONNX graph where ONNX Runtime applies it at scoring time.
    """

    def __init__(self, medians: Sequence[float], means: Sequence[float], stds: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("median", torch.tensor(list(medians), dtype=torch.float32))
        self.register_buffer("mean", torch.tensor(list(means), dtype=torch.float32))
        self.register_buffer("std", torch.tensor(list(stds), dtype=torch.float32))

    def forward(self, x_num: torch.Tensor | None = None,
                x_cat: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        if x_num is not None:
            filled = torch.where(torch.isnan(x_num), self.median, x_num)
            out["x_num"] = (filled - self.mean) / self.std
        if x_cat is not None:
            out["x_cat"] = x_cat
        return out
