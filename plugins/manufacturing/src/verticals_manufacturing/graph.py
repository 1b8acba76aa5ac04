"""The torch half of the manufacturing pipelines: in-graph feature modules and the networks.

Imports torch at module level: import it only inside functions (training, export). Classes are at
module level so they pickle with the model.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from verticals_manufacturing.physics import OSF_LIMIT_BY_INDEX, RPM_TO_RAD_S

__all__ = ["FleetGraph", "ProcessGraph", "ProcessNet", "SoftStumps", "WindowGRU", "WindowNet"]


class ProcessGraph(nn.Module):
    """Impute missing process values with the training medians, add the physics features
    (:mod:`verticals_manufacturing.physics`) and standardise them: runs in the exported graph."""

    def __init__(self, medians: Sequence[float], means: Sequence[float], stds: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("median", torch.tensor(list(medians), dtype=torch.float32))
        self.register_buffer("mean", torch.tensor(list(means), dtype=torch.float32))
        self.register_buffer("std", torch.tensor(list(stds), dtype=torch.float32))
        self.register_buffer("limits", torch.tensor(OSF_LIMIT_BY_INDEX, dtype=torch.float32))

    def forward(self, x: torch.Tensor, product_type: torch.Tensor) -> dict[str, torch.Tensor]:
        x = torch.where(torch.isnan(x), self.median, x)
        air, process, speed, torque, wear = x[:, 0], x[:, 1], x[:, 2], x[:, 3], x[:, 4]
        limit = self.limits[product_type.clamp(0, 2)]
        features = torch.stack([air, process, speed, torque, wear, process - air,
                                torque * speed * (RPM_TO_RAD_S / 1000.0), wear * torque / 1000.0,
                                wear * torque / limit], dim=1)
        return {"features": (features - self.mean) / self.std, "product_type": product_type}


class SoftStumps(nn.Module):
    """Learned soft thresholds: per feature ``j`` and threshold ``k``, ``sigmoid(s_jk · (x_j − b_jk))``.

    Failure rules of machines are mostly limits on one quantity (a temperature difference below a
    value, a power outside a band, a strain above a limit). An MLP on the raw features can only bend
    smoothly towards such a step and blurs the ranking near it; a bank of sharp, learnable steps lets
    the layers after it combine limits with AND and OR, as trees do, while staying one small
    differentiable graph. The thresholds start at training quantiles of each feature, the slopes at
    ``sharpness`` (in standard deviations), and both are trained.
    """

    def __init__(self, thresholds: Sequence[Sequence[float]], sharpness: float = 8.0) -> None:
        super().__init__()
        init = torch.tensor([list(t) for t in thresholds], dtype=torch.float32)  # [features, stumps]
        self.threshold = nn.Parameter(init)
        self.log_slope = nn.Parameter(torch.full_like(init, float(torch.log(torch.tensor(sharpness)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps = torch.sigmoid(self.log_slope.exp() * (x.unsqueeze(2) - self.threshold))
        return steps.flatten(1)


class ProcessNet(nn.Module):
    """An MLP over the standardised physics features, their learned soft thresholds
    (:class:`SoftStumps`, when ``thresholds`` are given) and a product-type embedding, with two heads:
    the failure logit and one logit per failure mode (multi-label, trained on failures only)."""

    def __init__(self, n_features: int, n_types: int, n_modes: int, hidden: Sequence[int] = (64, 64),
                 embedding_dim: int = 3, thresholds: Sequence[Sequence[float]] | None = None,
                 sharpness: float = 8.0) -> None:
        super().__init__()
        self.embedding = nn.Embedding(n_types, embedding_dim)
        self.stumps = SoftStumps(thresholds, sharpness) if thresholds else None
        layers: list[nn.Module] = []
        width = n_features + embedding_dim + (n_features * len(thresholds[0]) if thresholds else 0)
        for h in hidden:
            layers += [nn.Linear(width, h), nn.SiLU()]
            width = h
        self.body = nn.Sequential(*layers)
        self.failure = nn.Linear(width, 1)
        self.modes = nn.Linear(width, n_modes)

    def forward(self, features: torch.Tensor, product_type: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [features, self.embedding(product_type)]
        if self.stumps is not None:
            parts.append(self.stumps(features))
        h = self.body(torch.cat(parts, dim=1))
        return self.failure(h).squeeze(1), self.modes(h)


class FleetGraph(nn.Module):
    """Per window: impute missing readings with the training medians, add the power and wear × torque
    channels (where the layout has speed, torque and wear: index ``-1`` = absent), standardise every
    channel (the fleet's physics features, in the exported graph)."""

    def __init__(self, medians: Sequence[float], means: Sequence[float], stds: Sequence[float],
                 speed: int, torque: int, wear: int) -> None:
        super().__init__()
        self.register_buffer("median", torch.tensor(list(medians), dtype=torch.float32))
        self.register_buffer("mean", torch.tensor(list(means), dtype=torch.float32))
        self.register_buffer("std", torch.tensor(list(stds), dtype=torch.float32))
        self.speed, self.torque, self.wear = int(speed), int(torque), int(wear)

    def forward(self, window: torch.Tensor) -> dict[str, torch.Tensor]:
        # window: [N, W, C] raw readings (NaN = dropout)
        x = torch.where(torch.isnan(window), self.median, window)
        parts = [x]
        if self.speed >= 0 and self.torque >= 0:
            parts.append((x[:, :, self.torque] * x[:, :, self.speed] * (RPM_TO_RAD_S / 1000.0)).unsqueeze(2))
        if self.wear >= 0 and self.torque >= 0:
            parts.append((x[:, :, self.wear] * x[:, :, self.torque] / 1000.0).unsqueeze(2))
        full = torch.cat(parts, dim=2) if len(parts) > 1 else x
        return {"window": ((full - self.mean) / self.std).transpose(1, 2)}


class WindowNet(nn.Module):
    """A small 1-D CNN over a window of readings ``[N, C, W]``: two dilated convolutions, the last
    step's features and a global average, then a failure-within-H logit and one logit per mode."""

    def __init__(self, channels: int, n_modes: int, width: int = 32) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv1d(channels, width, kernel_size=5, padding=2), nn.SiLU(),
            nn.Conv1d(width, width, kernel_size=5, padding=4, dilation=2), nn.SiLU())
        self.head = nn.Sequential(nn.Linear(2 * width + channels, width), nn.SiLU())
        self.failure = nn.Linear(width, 1)
        self.modes = nn.Linear(width, n_modes)

    def forward(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.conv(window)
        pooled = torch.cat([h[:, :, -1], h.mean(dim=2), window[:, :, -1]], dim=1)
        z = self.head(pooled)
        return self.failure(z).squeeze(1), self.modes(z)


class WindowGRU(nn.Module):
    """A one-layer GRU over a window of readings ``[N, C, W]`` (read oldest to newest): its last state
    and the last reading, then a failure-within-H logit and one logit per mode."""

    def __init__(self, channels: int, n_modes: int, width: int = 32) -> None:
        super().__init__()
        self.gru = nn.GRU(channels, width, batch_first=True)
        self.head = nn.Sequential(nn.Linear(width + channels, width), nn.SiLU())
        self.failure = nn.Linear(width, 1)
        self.modes = nn.Linear(width, n_modes)

    def forward(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = window.transpose(1, 2)
        h, _ = self.gru(x)
        z = self.head(torch.cat([h[:, -1], x[:, -1]], dim=1))
        return self.failure(z).squeeze(1), self.modes(z)
