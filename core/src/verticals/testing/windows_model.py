"""The torch half of the windows reference pipeline (:mod:`verticals.testing.windows`); imports torch.

Kept apart so the pipeline module stays importable without torch (the scoring path), and so the
classes are defined at module level.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["WindowGraph", "WindowNet"]


class WindowGraph(nn.Module):
    """Standardise every sensor with the training split's mean and spread; a missing reading (NaN)
    becomes the training mean (0 after standardising).

    Buffers only, so it is exported into the ONNX graph and ONNX Runtime applies it when scoring.
    """

    def __init__(self, means: Sequence[float], stds: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(means), dtype=torch.float32))
        self.register_buffer("std", torch.tensor(list(stds), dtype=torch.float32))

    def forward(self, window: torch.Tensor, machine_type: torch.Tensor) -> dict[str, torch.Tensor]:
        scaled = (window - self.mean) / self.std
        return {"window": torch.where(torch.isnan(scaled), torch.zeros_like(scaled), scaled),
                "machine_type": machine_type}


class WindowNet(nn.Module):
    """A small dilated Conv1d over the window ``[N, T, F]`` plus a machine-type embedding → one logit.

    The convolutions see local shapes (a ramp, a spike); the head reads their mean over the window, the
    value at the last reading and the machine type, so a level that is normal for a press and abnormal
    for a fan can be told apart.
    """

    def __init__(self, sensors: int, types: int, channels: int = 32, embedding: int = 4) -> None:
        super().__init__()
        self.types = nn.Embedding(max(1, types), embedding)
        self.conv = nn.Sequential(
            nn.Conv1d(sensors, channels, kernel_size=3, padding=1), nn.ReLU(),
            nn.Conv1d(channels, channels, kernel_size=3, padding=2, dilation=2), nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Linear(2 * channels + embedding, channels), nn.ReLU(), nn.Linear(channels, 1))

    def forward(self, window: torch.Tensor, machine_type: torch.Tensor) -> torch.Tensor:
        h = self.conv(window.transpose(1, 2))
        features = torch.cat([h.mean(dim=2), h[:, :, -1], self.types(machine_type)], dim=1)
        return self.head(features).squeeze(1)
