"""The torch half of the manufacturing pipelines: in-graph feature modules and the networks.

Imports torch at module level: import it only inside functions (training, export). Classes are at
module level so they pickle with the model.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from verticals_manufacturing.physics import OSF_LIMIT_BY_INDEX, RPM_TO_RAD_S

__all__ = ["FleetGraph", "ProcessGraph", "ProcessNet", "SoftStumps", "WindowGRU", "WindowNet", "WindowWide",
           "window_summaries"]


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
    channels (where the layout has speed, torque and wear: index ``-1`` = absent) and the temperature
    difference (``temperatures`` = the indices of the first and second temperature, or ``None``),
    standardise every channel (the fleet's physics features, in the exported graph)."""

    def __init__(self, medians: Sequence[float], means: Sequence[float], stds: Sequence[float],
                 speed: int, torque: int, wear: int, temperatures: Sequence[int] | None = None) -> None:
        super().__init__()
        self.register_buffer("median", torch.tensor(list(medians), dtype=torch.float32))
        self.register_buffer("mean", torch.tensor(list(means), dtype=torch.float32))
        self.register_buffer("std", torch.tensor(list(stds), dtype=torch.float32))
        self.speed, self.torque, self.wear = int(speed), int(torque), int(wear)
        self.temperatures = tuple(int(i) for i in temperatures) if temperatures else None

    def forward(self, window: torch.Tensor) -> dict[str, torch.Tensor]:
        # window: [N, W, C] raw readings (NaN = dropout)
        x = torch.where(torch.isnan(window), self.median, window)
        parts = [x]
        if self.speed >= 0 and self.torque >= 0:
            parts.append((x[:, :, self.torque] * x[:, :, self.speed] * (RPM_TO_RAD_S / 1000.0)).unsqueeze(2))
        if self.wear >= 0 and self.torque >= 0:
            parts.append((x[:, :, self.wear] * x[:, :, self.torque] / 1000.0).unsqueeze(2))
        if self.temperatures is not None:
            first, second = self.temperatures
            parts.append((x[:, :, second] - x[:, :, first]).unsqueeze(2))
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
    and the last reading, then a failure-within-H logit and one logit per mode.

    * ``relative`` > 0: each step also carries every channel's change since the window began (the
      reading minus the mean of the window's first ``relative`` steps), so a drift is an input rather
      than something the recurrence has to difference out of absolute levels that vary between
      machines.
    * ``horizons`` > 0: an auxiliary head with one logit per horizon of the target's auxiliary columns
      (:mod:`verticals_manufacturing.evaluation`), returned as a third output **in training only**: the
      exported graph and every prediction have the two outputs above.
    """

    def __init__(self, channels: int, n_modes: int, width: int = 32, relative: int = 0, horizons: int = 0) -> None:
        super().__init__()
        self.relative = int(relative)
        inputs = 2 * channels if self.relative else channels
        self.gru = nn.GRU(inputs, width, batch_first=True)
        self.head = nn.Sequential(nn.Linear(width + inputs, width), nn.SiLU())
        self.failure = nn.Linear(width, 1)
        self.modes = nn.Linear(width, n_modes)
        self.horizons = nn.Linear(width, int(horizons)) if horizons else None

    def forward(self, window: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = window.transpose(1, 2)
        if self.relative:
            x = torch.cat([x, x - x[:, : self.relative].mean(dim=1, keepdim=True)], dim=2)
        h, _ = self.gru(x)
        z = self.head(torch.cat([h[:, -1], x[:, -1]], dim=1))
        if self.training and self.horizons is not None:
            return self.failure(z).squeeze(1), self.modes(z), self.horizons(z)
        return self.failure(z).squeeze(1), self.modes(z)


def window_summaries(window: torch.Tensor) -> torch.Tensor:
    """``[N, C, W]`` → ``[N, 5 C]``: per channel the last value, the window mean, minimum, maximum and
    slope (last − first) / W, in the order of the baselines' design
    (:func:`verticals_manufacturing.risk.window_design`)."""
    w = window.shape[2]
    last = window[:, :, -1]
    return torch.cat([last, window.mean(dim=2), window.amin(dim=2), window.amax(dim=2),
                      (last - window[:, :, 0]) / w], dim=1)


class WindowWide(nn.Module):
    """Wide and deep over a window of readings ``[N, C, W]``.

    * Deep: a GRU's last state and the last reading, with the standardised window summaries, through
      a small head.
    * Wide: the window summaries gradient boosting sees (:func:`window_summaries`: last, mean,
      minimum, maximum, slope per channel, the physics channels included) through a bank of learned
      soft thresholds (:class:`SoftStumps`), read by a linear layer whose output is *added* to the deep
      logits: an additive model of axis-aligned steps, like a forest of stumps.

    Why: trees split window summaries at thresholds ("the window's minimum temperature difference below
    x"), which a recurrent state reaches only by bending smoothly; the stumps give the network those
    splits directly, as they did for ``process_net``. A linear read-out of the steps, rather than a
    hidden layer over hundreds of them, keeps the wide part from memorising the few hundred training
    failures. The summaries are standardised with training statistics (``summary_means``,
    ``summary_stds``) and the thresholds start at training quantiles of the standardised summaries
    (``thresholds``, one row per summary).

    Measured on the built-in fleet (docs/manufacturing.md): level with ``window_gru`` on validation and
    below it on test, so it is not the default. Options: ``deep_summaries`` also feeds the standardised
    summaries to the deep head; ``learn_stumps=False`` fixes the thresholds and slopes; ``dropout``
    drops steps in training.
    """

    def __init__(self, channels: int, n_modes: int, summary_means: Sequence[float], summary_stds: Sequence[float],
                 thresholds: Sequence[Sequence[float]], width: int = 32, sharpness: float = 8.0,
                 deep_summaries: bool = False, learn_stumps: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        self.gru = nn.GRU(channels, width, batch_first=True)
        self.register_buffer("summary_mean", torch.tensor(list(summary_means), dtype=torch.float32))
        self.register_buffer("summary_std", torch.tensor(list(summary_stds), dtype=torch.float32))
        self.stumps = SoftStumps(thresholds, sharpness)
        if not learn_stumps:  # fixed soft bins at the training quantiles
            self.stumps.requires_grad_(False)
        n_summaries, n_stumps = len(summary_means), len(summary_means) * len(thresholds[0])
        self.deep_summaries = bool(deep_summaries)
        self.head = nn.Sequential(
            nn.Linear(width + channels + (n_summaries if deep_summaries else 0), width), nn.SiLU())
        self.failure = nn.Linear(width, 1)
        self.modes = nn.Linear(width, n_modes)
        self.drop = nn.Dropout(float(dropout))
        self.wide_failure = nn.Linear(n_stumps, 1)
        self.wide_modes = nn.Linear(n_stumps, n_modes)
        nn.init.zeros_(self.wide_failure.weight)
        nn.init.zeros_(self.wide_modes.weight)

    def forward(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = window.transpose(1, 2)
        h, _ = self.gru(x)
        s = (window_summaries(window) - self.summary_mean) / self.summary_std
        steps = self.drop(self.stumps(s))
        deep = [h[:, -1], x[:, -1], s] if self.deep_summaries else [h[:, -1], x[:, -1]]
        z = self.head(torch.cat(deep, dim=1))
        return (self.failure(z) + self.wide_failure(steps)).squeeze(1), self.modes(z) + self.wide_modes(steps)
